//! The graph: dense node ids, directed link records, adjacency vectors, paths and filters.
//!
//! Nodes are named by strings and numbered densely from 0 in insertion order; a
//! `HashMap` maps names to ids. Links are *directed* records numbered densely from 0;
//! a bidirectional link is two records (u→v gets the id returned by [`Graph::add_link`],
//! v→u the next id) that point at each other through [`Link::reverse`]. Each node keeps
//! its outgoing and incoming links as [`Arc`]s (the link id, the other end and a copy of
//! the fields searches read, contiguous in memory), so forward and reverse searches need
//! no rebuild: adding is O(1) amortised, a setter O(deg(u) + deg(v)) (it refreshes the
//! two arc copies). Nodes and links are never removed (node removal is not supported); a
//! link is taken out of service with [`Graph::set_link_up`].
//!
//! ```
//! use pathcore::graph::Graph;
//! let mut g = Graph::new();
//! let a = g.add_node("a").unwrap();
//! let b = g.add_node("b").unwrap();
//! let ab = g.add_link(a, b, 1.5, 100.0, 1.0, true).unwrap();
//! assert_eq!(g.link_count(), 2);
//! assert_eq!(g.reverse_link(ab).unwrap(), Some(ab + 1));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash (the rustc hasher): much faster than SipHash on short names. Node names come
/// from the operator's topology, so hash-flooding resistance is not needed.
#[derive(Debug, Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline(always)]
    fn add(&mut self, w: u64) {
        self.hash = (self.hash.rotate_left(5) ^ w).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().unwrap()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxBuild = BuildHasherDefault<FxHasher>;

/// Dense node id (insertion order).
pub type NodeId = u32;
/// Dense directed-link id (insertion order).
pub type LinkId = u32;
/// Marker for "no link" in predecessor arrays.
pub const NO_LINK: LinkId = u32::MAX;

/// Errors of the engine; the bindings map them to Python exceptions.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// A node name that is not in the graph (Python: `KeyError`).
    UnknownNode(String),
    /// A link id that is not in the graph (Python: `KeyError`).
    UnknownLink(i64),
    /// A node name that is already in the graph (Python: `ValueError`).
    DuplicateNode(String),
    /// A negative, NaN or infinite quantity, or another bad argument (Python: `ValueError`).
    InvalidValue(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::UnknownNode(n) => write!(f, "unknown node {n:?}"),
            Error::UnknownLink(l) => write!(f, "unknown link id {l}"),
            Error::DuplicateNode(n) => write!(f, "duplicate node {n:?}"),
            Error::InvalidValue(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// Which additive link metric a search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Weight {
    /// `latency_ms` of each link.
    Latency,
    /// `cost` of each link.
    Cost,
    /// 1 per link.
    Hops,
}

impl Weight {
    /// The value of this metric on one link.
    #[inline(always)]
    pub fn of(self, l: &Link) -> f64 {
        match self {
            Weight::Latency => l.latency_ms,
            Weight::Cost => l.cost,
            Weight::Hops => 1.0,
        }
    }

    /// The value of this metric on one adjacency arc.
    #[inline(always)]
    pub fn of_arc(self, a: &Arc) -> f64 {
        match self {
            Weight::Latency => a.latency_ms,
            Weight::Cost => a.cost,
            Weight::Hops => 1.0,
        }
    }

    /// Parse `"latency" | "cost" | "hops"`.
    pub fn parse(s: &str) -> Result<Weight, Error> {
        match s {
            "latency" => Ok(Weight::Latency),
            "cost" => Ok(Weight::Cost),
            "hops" => Ok(Weight::Hops),
            _ => Err(Error::InvalidValue(format!(
                "weight must be 'latency', 'cost' or 'hops', got {s:?}"
            ))),
        }
    }
}

/// One directed link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    /// Tail node.
    pub u: NodeId,
    /// Head node.
    pub v: NodeId,
    /// One-way latency in milliseconds.
    pub latency_ms: f64,
    /// Capacity in Mbit/s.
    pub bandwidth_mbps: f64,
    /// Capacity left for new reservations in Mbit/s.
    pub residual_mbps: f64,
    /// Administrative cost.
    pub cost: f64,
    /// Down links are never used by any search.
    pub up: bool,
    /// The other direction of a bidirectional link (one physical link), if any.
    pub reverse: Option<LinkId>,
}

/// A link as seen from one of its end nodes in the adjacency lists: a copy of the fields
/// searches read, kept next to each other so a node's links are one contiguous read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arc {
    /// The link id.
    pub lid: LinkId,
    /// The other end (head for out-arcs, tail for in-arcs).
    pub other: NodeId,
    pub latency_ms: f64,
    pub cost: f64,
    /// Residual bandwidth if the link is up, `-inf` if it is down (so one comparison
    /// against a non-negative minimum checks both).
    pub avail_mbps: f64,
}

impl Arc {
    fn of(lid: LinkId, other: NodeId, l: &Link) -> Arc {
        Arc {
            lid,
            other,
            latency_ms: l.latency_ms,
            cost: l.cost,
            avail_mbps: if l.up {
                l.residual_mbps
            } else {
                f64::NEG_INFINITY
            },
        }
    }
}

/// A link to add in bulk: `(u, v, latency_ms, bandwidth_mbps, cost)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    pub u: NodeId,
    pub v: NodeId,
    pub latency_ms: f64,
    pub bandwidth_mbps: f64,
    pub cost: f64,
}

/// A path: nodes, the directed links between them, and its totals.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub nodes: Vec<NodeId>,
    pub links: Vec<LinkId>,
    /// Sum of link latencies (summed from the source).
    pub latency_ms: f64,
    /// Sum of link costs.
    pub cost: f64,
    /// Number of links.
    pub hops: usize,
    /// Least residual bandwidth along the path (`+inf` for a single-node path).
    pub bottleneck_mbps: f64,
}

impl Path {
    /// The path of one node and no links.
    pub fn trivial(n: NodeId) -> Path {
        Path {
            nodes: vec![n],
            links: Vec::new(),
            latency_ms: 0.0,
            cost: 0.0,
            hops: 0,
            bottleneck_mbps: f64::INFINITY,
        }
    }

    /// Build a path from `src` and a chain of link ids (each link must start where the
    /// previous one ended; checked in debug builds).
    pub fn from_links(g: &Graph, src: NodeId, links: Vec<LinkId>) -> Path {
        let mut nodes = Vec::with_capacity(links.len() + 1);
        nodes.push(src);
        let (mut lat, mut cost, mut bn) = (0.0, 0.0, f64::INFINITY);
        for &lid in &links {
            let l = &g.links[lid as usize];
            debug_assert_eq!(l.u, *nodes.last().unwrap());
            nodes.push(l.v);
            lat += l.latency_ms;
            cost += l.cost;
            bn = f64::min(bn, l.residual_mbps);
        }
        Path {
            hops: links.len(),
            nodes,
            links,
            latency_ms: lat,
            cost,
            bottleneck_mbps: bn,
        }
    }

    /// Total of `w` along the path (summed from the source).
    pub fn weight(&self, w: Weight) -> f64 {
        match w {
            Weight::Latency => self.latency_ms,
            Weight::Cost => self.cost,
            Weight::Hops => self.hops as f64,
        }
    }

    /// Deterministic order: weight, then latency, then hops, then link ids.
    pub fn order_key_cmp(&self, other: &Path, w: Weight) -> std::cmp::Ordering {
        self.weight(w)
            .total_cmp(&other.weight(w))
            .then(self.latency_ms.total_cmp(&other.latency_ms))
            .then(self.hops.cmp(&other.hops))
            .then_with(|| self.links.cmp(&other.links))
    }
}

/// A growable bit set over dense ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub fn insert(&mut self, i: u32) {
        let w = (i >> 6) as usize;
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1u64 << (i & 63);
    }

    #[inline(always)]
    pub fn contains(&self, i: u32) -> bool {
        match self.words.get((i >> 6) as usize) {
            Some(w) => w & (1u64 << (i & 63)) != 0,
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

/// Which links a search may use besides being up: a least residual bandwidth and
/// excluded nodes and links.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub min_bandwidth_mbps: f64,
    pub excluded_nodes: Bitset,
    pub excluded_links: Bitset,
}

impl Filter {
    /// Only up links, no other condition.
    pub fn new() -> Filter {
        Filter::default()
    }

    pub fn with_min_bandwidth(mut self, mbps: f64) -> Filter {
        self.min_bandwidth_mbps = mbps;
        self
    }

    pub fn exclude_node(&mut self, n: NodeId) {
        self.excluded_nodes.insert(n);
    }

    pub fn exclude_link(&mut self, l: LinkId) {
        self.excluded_links.insert(l);
    }

    #[inline(always)]
    pub fn node_ok(&self, n: NodeId) -> bool {
        !self.excluded_nodes.contains(n)
    }

    /// Whether an arc may be used to reach `a.other` (the node it starts from is assumed
    /// allowed): up, enough residual bandwidth, neither it nor `a.other` excluded.
    #[inline(always)]
    pub fn arc_ok(&self, a: &Arc) -> bool {
        a.avail_mbps >= self.min_bandwidth_mbps
            && !self.excluded_links.contains(a.lid)
            && !self.excluded_nodes.contains(a.other)
    }

    /// Whether link `id` may be used: up, enough residual bandwidth, neither it nor its
    /// end nodes excluded.
    #[inline(always)]
    pub fn link_ok(&self, id: LinkId, l: &Link) -> bool {
        l.up && l.residual_mbps >= self.min_bandwidth_mbps
            && !self.excluded_links.contains(id)
            && !self.excluded_nodes.contains(l.u)
            && !self.excluded_nodes.contains(l.v)
    }
}

/// Check that a quantity is finite and non-negative.
pub fn check_quantity(what: &str, x: f64) -> Result<f64, Error> {
    if x.is_finite() && x >= 0.0 {
        // + 0.0 turns -0.0 into 0.0, so stored values order like their bit patterns.
        Ok(x + 0.0)
    } else {
        Err(Error::InvalidValue(format!(
            "{what} must be a finite non-negative number, got {x}"
        )))
    }
}

/// Check a latency bound: non-negative, not NaN; `+inf` means unbounded.
pub fn check_bound(what: &str, x: f64) -> Result<f64, Error> {
    if x >= 0.0 {
        Ok(x + 0.0)
    } else {
        Err(Error::InvalidValue(format!(
            "{what} must be a non-negative number, got {x}"
        )))
    }
}

/// Relative slack on latency bounds, so a path whose latency equals the bound (up to
/// floating-point summation order) is feasible.
pub const LATENCY_EPS: f64 = 1e-9;

/// The effective bound used in comparisons: `bound * (1 + 1e-9)`.
#[inline]
pub fn slack(bound: f64) -> f64 {
    bound + bound.abs() * LATENCY_EPS
}

/// The network graph. See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    names: Vec<String>,
    index: HashMap<Box<str>, NodeId, FxBuild>,
    pub(crate) links: Vec<Link>,
    pub(crate) out_adj: Vec<Vec<Arc>>,
    pub(crate) in_adj: Vec<Vec<Arc>>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn node_count(&self) -> usize {
        self.names.len()
    }

    /// Number of directed links (a bidirectional link counts twice).
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Id of a node name. O(1).
    pub fn node_id(&self, name: &str) -> Result<NodeId, Error> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| Error::UnknownNode(name.to_string()))
    }

    pub fn has_node(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Name of a node id (panics on an id not from this graph).
    pub fn name(&self, n: NodeId) -> &str {
        &self.names[n as usize]
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn links(&self) -> &[Link] {
        &self.links
    }

    /// Link record of an id. O(1).
    pub fn link(&self, id: LinkId) -> Result<&Link, Error> {
        self.links
            .get(id as usize)
            .ok_or(Error::UnknownLink(id as i64))
    }

    /// Validate a link id given as a signed integer (from Python).
    pub fn check_link_id(&self, id: i64) -> Result<LinkId, Error> {
        if id >= 0 && (id as u64) < self.links.len() as u64 {
            Ok(id as LinkId)
        } else {
            Err(Error::UnknownLink(id))
        }
    }

    pub fn check_node(&self, n: NodeId) -> Result<(), Error> {
        if (n as usize) < self.names.len() {
            Ok(())
        } else {
            Err(Error::UnknownNode(format!("#{n}")))
        }
    }

    /// Outgoing arcs of `n`, in link-id order.
    pub fn out_arcs(&self, n: NodeId) -> &[Arc] {
        &self.out_adj[n as usize]
    }

    /// Incoming arcs of `n` (`other` is the tail), in link-id order.
    pub fn in_arcs(&self, n: NodeId) -> &[Arc] {
        &self.in_adj[n as usize]
    }

    /// Outgoing link ids of `n`, ascending.
    pub fn out_links(&self, n: NodeId) -> impl Iterator<Item = LinkId> + '_ {
        self.out_adj[n as usize].iter().map(|a| a.lid)
    }

    /// Ids of the directed links u→v (parallel links included), ascending.
    pub fn links_between(&self, u: NodeId, v: NodeId) -> Vec<LinkId> {
        self.out_adj[u as usize]
            .iter()
            .filter(|a| a.other == v)
            .map(|a| a.lid)
            .collect()
    }

    /// Add a node. Duplicate name → [`Error::DuplicateNode`]. O(1).
    pub fn add_node(&mut self, name: &str) -> Result<NodeId, Error> {
        if self.index.contains_key(name) {
            return Err(Error::DuplicateNode(name.to_string()));
        }
        Ok(self.push_node(name.to_string()))
    }

    fn push_node(&mut self, name: String) -> NodeId {
        let id = self.names.len() as NodeId;
        self.index.insert(name.clone().into_boxed_str(), id);
        self.names.push(name);
        self.out_adj.push(Vec::new());
        self.in_adj.push(Vec::new());
        id
    }

    /// Add many nodes; all names are checked first (against the graph and each other),
    /// so on error nothing is added. O(len).
    pub fn add_nodes<S: AsRef<str>>(&mut self, names: &[S]) -> Result<Vec<NodeId>, Error> {
        let mut fresh: std::collections::HashSet<&str, FxBuild> =
            std::collections::HashSet::with_capacity_and_hasher(names.len(), FxBuild::default());
        for n in names {
            let n = n.as_ref();
            if self.index.contains_key(n) || !fresh.insert(n) {
                return Err(Error::DuplicateNode(n.to_string()));
            }
        }
        self.names.reserve(names.len());
        self.index.reserve(names.len());
        self.out_adj.reserve(names.len());
        self.in_adj.reserve(names.len());
        Ok(names
            .iter()
            .map(|n| self.push_node(n.as_ref().to_string()))
            .collect())
    }

    fn check_spec(&self, s: &LinkSpec) -> Result<LinkSpec, Error> {
        self.check_node(s.u)?;
        self.check_node(s.v)?;
        Ok(LinkSpec {
            u: s.u,
            v: s.v,
            latency_ms: check_quantity("latency_ms", s.latency_ms)?,
            bandwidth_mbps: check_quantity("bandwidth_mbps", s.bandwidth_mbps)?,
            cost: check_quantity("cost", s.cost)?,
        })
    }

    fn push_link(&mut self, s: &LinkSpec, bidirectional: bool) -> LinkId {
        let id = self.links.len() as LinkId;
        let rec = |u, v, reverse| Link {
            u,
            v,
            latency_ms: s.latency_ms,
            bandwidth_mbps: s.bandwidth_mbps,
            residual_mbps: s.bandwidth_mbps,
            cost: s.cost,
            up: true,
            reverse,
        };
        let fwd = rec(s.u, s.v, bidirectional.then_some(id + 1));
        self.out_adj[s.u as usize].push(Arc::of(id, s.v, &fwd));
        self.in_adj[s.v as usize].push(Arc::of(id, s.u, &fwd));
        self.links.push(fwd);
        if bidirectional {
            let back = rec(s.v, s.u, Some(id));
            self.out_adj[s.v as usize].push(Arc::of(id + 1, s.u, &back));
            self.in_adj[s.u as usize].push(Arc::of(id + 1, s.v, &back));
            self.links.push(back);
        }
        id
    }

    /// Add a link u→v (and v→u with the next id if `bidirectional`), residual =
    /// bandwidth, up. Returns the id of u→v. Parallel links and self-loops are allowed
    /// (a self-loop is never on a path). O(1) amortised.
    pub fn add_link(
        &mut self,
        u: NodeId,
        v: NodeId,
        latency_ms: f64,
        bandwidth_mbps: f64,
        cost: f64,
        bidirectional: bool,
    ) -> Result<LinkId, Error> {
        let s = LinkSpec {
            u,
            v,
            latency_ms,
            bandwidth_mbps,
            cost,
        };
        let s = self.check_spec(&s)?;
        Ok(self.push_link(&s, bidirectional))
    }

    /// Add many links; every spec is checked first (the error names its index), so on
    /// error nothing is added. O(len).
    pub fn add_links(
        &mut self,
        specs: &[LinkSpec],
        bidirectional: bool,
    ) -> Result<Vec<LinkId>, Error> {
        let specs = specs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                self.check_spec(s).map_err(|e| match e {
                    Error::InvalidValue(m) => Error::InvalidValue(format!("link {i}: {m}")),
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.links
            .reserve(specs.len() * if bidirectional { 2 } else { 1 });
        // Reserve each node's adjacency once instead of growing it link by link.
        let mut out_deg = vec![0u32; self.names.len()];
        let mut in_deg = vec![0u32; self.names.len()];
        for s in &specs {
            out_deg[s.u as usize] += 1;
            in_deg[s.v as usize] += 1;
            if bidirectional {
                out_deg[s.v as usize] += 1;
                in_deg[s.u as usize] += 1;
            }
        }
        for (adj, deg) in [(&mut self.out_adj, &out_deg), (&mut self.in_adj, &in_deg)] {
            for (a, &d) in adj.iter_mut().zip(deg.iter()) {
                if d > 0 {
                    a.reserve_exact(d as usize);
                }
            }
        }
        Ok(specs
            .iter()
            .map(|s| self.push_link(s, bidirectional))
            .collect())
    }

    /// The other direction of a bidirectional link, if any.
    pub fn reverse_link(&self, id: LinkId) -> Result<Option<LinkId>, Error> {
        Ok(self.link(id)?.reverse)
    }

    fn targets(&self, id: LinkId, both: bool) -> Result<[Option<LinkId>; 2], Error> {
        let l = self.link(id)?;
        Ok([Some(id), if both { l.reverse } else { None }])
    }

    /// Apply `f` to link `id` (and its reverse with `both`) and refresh the arc copies.
    /// O(deg(u) + deg(v)).
    fn update(&mut self, id: LinkId, both: bool, f: impl Fn(&mut Link)) -> Result<(), Error> {
        for t in self.targets(id, both)?.into_iter().flatten() {
            let l = &mut self.links[t as usize];
            f(l);
            let (u, v) = (l.u, l.v);
            let l = &self.links[t as usize];
            for a in self.out_adj[u as usize].iter_mut().filter(|a| a.lid == t) {
                *a = Arc::of(t, v, l);
            }
            for a in self.in_adj[v as usize].iter_mut().filter(|a| a.lid == t) {
                *a = Arc::of(t, u, l);
            }
        }
        Ok(())
    }

    /// Set a link up or down (with `both`, its reverse too). O(deg(u) + deg(v)).
    pub fn set_link_up(&mut self, id: LinkId, up: bool, both: bool) -> Result<(), Error> {
        self.update(id, both, |l| l.up = up)
    }

    /// Set the residual bandwidth (not checked against the capacity). O(deg(u) + deg(v)).
    pub fn set_residual_bandwidth(
        &mut self,
        id: LinkId,
        mbps: f64,
        both: bool,
    ) -> Result<(), Error> {
        let mbps = check_quantity("residual_mbps", mbps)?;
        self.update(id, both, |l| l.residual_mbps = mbps)
    }

    /// Set the capacity; the residual is left as is. O(deg(u) + deg(v)).
    pub fn set_link_bandwidth(&mut self, id: LinkId, mbps: f64, both: bool) -> Result<(), Error> {
        let mbps = check_quantity("bandwidth_mbps", mbps)?;
        self.update(id, both, |l| l.bandwidth_mbps = mbps)
    }

    /// Set the latency. O(deg(u) + deg(v)).
    pub fn set_link_latency(&mut self, id: LinkId, ms: f64, both: bool) -> Result<(), Error> {
        let ms = check_quantity("latency_ms", ms)?;
        self.update(id, both, |l| l.latency_ms = ms)
    }

    /// Set the cost. O(deg(u) + deg(v)).
    pub fn set_link_cost(&mut self, id: LinkId, cost: f64, both: bool) -> Result<(), Error> {
        let cost = check_quantity("cost", cost)?;
        self.update(id, both, |l| l.cost = cost)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Tiny deterministic PRNG for tests (xorshift64*).
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545F4914F6CDD1D)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A random multigraph with small integer-ish weights, some down links.
    pub(crate) fn random_graph(rng: &mut Rng, n: u32, m: u32) -> Graph {
        let mut g = Graph::new();
        for i in 0..n {
            g.add_node(&format!("n{i}")).unwrap();
        }
        for _ in 0..m {
            let u = rng.below(n as u64) as u32;
            let v = rng.below(n as u64) as u32;
            let lat = (rng.below(10) + 1) as f64 * 0.5;
            let cost = rng.below(5) as f64;
            let bw = (rng.below(4) * 10) as f64;
            let bid = rng.below(2) == 0;
            let id = g.add_link(u, v, lat, bw, cost, bid).unwrap();
            if rng.below(10) == 0 {
                g.set_link_up(id, false, false).unwrap();
            }
        }
        g
    }

    /// All simple paths src→dst over links passing `ok` (brute force, small graphs).
    pub(crate) fn all_simple_paths(
        g: &Graph,
        src: NodeId,
        dst: NodeId,
        ok: &dyn Fn(LinkId) -> bool,
    ) -> Vec<Path> {
        #[allow(clippy::too_many_arguments)]
        fn rec(
            g: &Graph,
            cur: NodeId,
            dst: NodeId,
            ok: &dyn Fn(LinkId) -> bool,
            on: &mut Vec<bool>,
            links: &mut Vec<LinkId>,
            src: NodeId,
            out: &mut Vec<Path>,
        ) {
            if cur == dst {
                out.push(Path::from_links(g, src, links.clone()));
                return;
            }
            for l in g.out_links(cur) {
                let v = g.links[l as usize].v;
                if on[v as usize] || !ok(l) {
                    continue;
                }
                on[v as usize] = true;
                links.push(l);
                rec(g, v, dst, ok, on, links, src, out);
                links.pop();
                on[v as usize] = false;
            }
        }
        let mut on = vec![false; g.node_count()];
        on[src as usize] = true;
        let mut out = Vec::new();
        rec(g, src, dst, ok, &mut on, &mut Vec::new(), src, &mut out);
        out
    }

    #[test]
    fn build_and_update() {
        let mut g = Graph::new();
        let a = g.add_node("a").unwrap();
        let b = g.add_node("b").unwrap();
        assert_eq!(g.add_node("a"), Err(Error::DuplicateNode("a".into())));
        let l = g.add_link(a, b, 1.0, 10.0, 2.0, true).unwrap();
        let p = g.add_link(a, b, 2.0, 10.0, 2.0, false).unwrap();
        assert_eq!(g.links_between(a, b), vec![l, p]);
        assert_eq!(g.links_between(b, a), vec![l + 1]);
        assert_eq!(g.reverse_link(p).unwrap(), None);
        assert!(g.add_link(a, b, -1.0, 1.0, 1.0, true).is_err());
        assert!(g.add_link(a, b, 1.0, f64::NAN, 1.0, true).is_err());
        assert!(g.add_link(a, b, 1.0, 1.0, f64::INFINITY, true).is_err());
        assert_eq!(g.link_count(), 3);
        g.set_link_up(l, false, true).unwrap();
        assert!(!g.link(l).unwrap().up && !g.link(l + 1).unwrap().up);
        g.set_residual_bandwidth(l, 3.0, false).unwrap();
        assert_eq!(g.link(l).unwrap().residual_mbps, 3.0);
        assert_eq!(g.link(l + 1).unwrap().residual_mbps, 10.0);
        assert!(g.set_link_cost(99, 1.0, false).is_err());
        // The adjacency copies follow every update.
        g.set_link_latency(l, 7.0, true).unwrap();
        g.set_link_cost(l, 0.5, false).unwrap();
        g.set_link_up(l, true, false).unwrap();
        let out: Vec<&Arc> = g.out_arcs(a).iter().filter(|x| x.lid == l).collect();
        let inn: Vec<&Arc> = g.in_arcs(b).iter().filter(|x| x.lid == l).collect();
        for x in out.iter().chain(inn.iter()) {
            assert_eq!((x.latency_ms, x.cost, x.avail_mbps), (7.0, 0.5, 3.0));
        }
        let rev = g.in_arcs(a).iter().find(|x| x.lid == l + 1).unwrap();
        assert_eq!((rev.other, rev.latency_ms, rev.cost), (b, 7.0, 2.0));
        assert_eq!(rev.avail_mbps, f64::NEG_INFINITY); // reverse still down
        g.set_link_latency(l, -0.0, false).unwrap();
        assert!(g.link(l).unwrap().latency_ms.is_sign_positive());
        assert!(g.check_link_id(-1).is_err());
    }

    #[test]
    fn bulk_is_all_or_nothing() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c"]).unwrap();
        assert!(g.add_nodes(&["d", "d"]).is_err());
        assert!(g.add_nodes(&["d", "a"]).is_err());
        assert_eq!(g.node_count(), 3);
        let ok = LinkSpec {
            u: 0,
            v: 1,
            latency_ms: 1.0,
            bandwidth_mbps: 1.0,
            cost: 1.0,
        };
        let bad = LinkSpec { cost: -1.0, ..ok };
        let e = g.add_links(&[ok, bad], true).unwrap_err();
        assert!(e.to_string().starts_with("link 1:"));
        assert_eq!(g.link_count(), 0);
        assert_eq!(g.add_links(&[ok, ok], true).unwrap(), vec![0, 2]);
        assert_eq!(g.link(3).unwrap().reverse, Some(2));
    }

    #[test]
    fn latency_bounds_accept_infinity_and_reject_nan() {
        assert_eq!(check_bound("b", f64::INFINITY), Ok(f64::INFINITY));
        assert_eq!(slack(f64::INFINITY), f64::INFINITY);
        assert_eq!(check_bound("b", -0.0).unwrap().to_bits(), 0.0f64.to_bits());
        assert!(check_bound("b", f64::NAN).is_err());
        assert!(check_bound("b", -1.0).is_err());
        // Quantities stored on links must be finite.
        assert!(check_quantity("q", f64::INFINITY).is_err());
        assert_eq!(check_quantity("q", 2.5), Ok(2.5));
    }

    #[test]
    fn filters_see_down_links_bandwidth_and_exclusions() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c"]).unwrap();
        let ab = g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
        let bc = g.add_link(1, 2, 1.0, 50.0, 1.0, false).unwrap();
        let link = |id| g.link(id).unwrap().clone();
        assert!(Filter::new().link_ok(ab, &link(ab)));
        assert!(!Filter::new()
            .with_min_bandwidth(20.0)
            .link_ok(ab, &link(ab)));
        assert!(Filter::new()
            .with_min_bandwidth(20.0)
            .link_ok(bc, &link(bc)));
        let mut f = Filter::new();
        f.exclude_node(2);
        assert!(f.link_ok(ab, &link(ab)) && !f.link_ok(bc, &link(bc)));
        f.exclude_link(ab + 1);
        assert!(f.link_ok(ab, &link(ab)) && !f.link_ok(ab + 1, &link(ab + 1)));
        g.set_link_up(ab, false, false).unwrap();
        assert!(!Filter::new().link_ok(ab, &g.link(ab).unwrap().clone()));
        assert!(Filter::new().arc_ok(&g.out_arcs(1)[0]), "b→a is still up");
        assert!(!Filter::new().arc_ok(&g.out_arcs(0)[0]), "a→b is down");
    }
}
