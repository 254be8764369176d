//! Exact latency-constrained least-weight path (resource-constrained shortest path).
//!
//! **Problem.** Among simple paths src→dst whose links are up, have residual bandwidth
//! ≥ `min_bandwidth_mbps` and avoid the excluded nodes and links, and whose total latency
//! is ≤ `max_latency_ms`, find one of least total `weight`; among those, least latency,
//! then fewest hops. The problem is weakly NP-hard, so any exact method is exponential in
//! the worst case; we want one that is fast on real backbones.
//!
//! **Choice: bounded bi-criteria label setting, best-first in order of a Lagrangian lower
//! bound.**
//! 1. If the least-weight path src→dst (bidirectional Dijkstra) meets the bound it is
//!    optimal: done (the common case on backbones).
//! 2. A reverse Dijkstra from dst on latency, cut off at the bound, gives `lb_lat(x)`; only
//!    nodes it reaches can be on a feasible path. If it does not reach src there is no
//!    feasible path. Otherwise the least-latency path is feasible and its weight is the
//!    first upper bound `best`. A forward Dijkstra on latency from src, pruned by
//!    `latency + lb_lat(x) > bound`, narrows the region to the nodes on some path within
//!    the bound (on a geographic graph an ellipse around src and dst instead of a disc
//!    around dst). A reverse Dijkstra on `weight` inside that region, cut at `best`, gives
//!    `lb_w(x)`; if the least-weight path in the region is feasible, done.
//! 3. LARAC (Jüttner et al. 2001) inside the region finds the Lagrange multiplier λ of the
//!    latency constraint (a few A* searches on `weight + λ·latency`) and a feasible path of
//!    nearly least weight (the new `best`); one reverse Dijkstra gives `d(x)`, the least
//!    `weight + λ·latency` from x to dst. No completion within the bound of a label
//!    `(x, w, lat)` weighs less than `w + λ·lat + d(x) − λ·bound` (its latency is at most
//!    `bound − lat`), nor less than `w + lb_w(x)`.
//! 4. Labels `(weight, latency, hops)` with parent pointers live in an arena. They are
//!    expanded best-first by the Lagrangian bound of step 3 (A* on `weight + λ·latency` with
//!    the consistent heuristic `d`). A new label is dropped when `latency + lb_lat(node) >
//!    bound` (it cannot be completed), when either lower bound exceeds `best` (it cannot
//!    win), or when a label at the same node dominates it: no worse in weight and latency
//!    and better in one, or equal in both and no more hops (hops only break ties, so they
//!    never keep a label that is worse in weight or latency); labels it dominates are
//!    retired. Each node's labels form a Pareto front sorted by weight (latency strictly
//!    decreasing), so a dominance check is one binary search and the retired labels one run.
//!    Labels reaching dst update `best`; the search stops when the least bound in the heap
//!    exceeds `best`.
//!
//! Why the Lagrangian order: on road-like graphs (weight = distance, latency = travel time,
//! strongly correlated) the Pareto fronts are long and the plain bound `w + lb_w` leaves
//! millions of labels below the optimum (queries of a minute on 250k nodes); the Lagrangian
//! bound's gap to the optimum is small there, so only labels within that gap are expanded
//! (tens of thousands; `benchmarks/bench_roads.py`). This is the bound that Pulse-type
//! algorithms (BiPulse, Cabrera et al. 2020) and Lagrangian enumeration (Carlyle, Royset and
//! Wood 2008) prune by, used here in a best-first label search.
//!
//! Exactness: pruning by lower bounds and dominance never removes the only optimal
//! completion (a completion of a dominated label is at least as good from its dominator,
//! after removing any cycle, which cannot increase a non-negative resource), and the
//! best-first order by an admissible bound means no unexpanded label can beat `best` once
//! the heap's least bound exceeds it (bounds are compared with a relative slack of 1e-9, so
//! rounding never prunes). Returned paths are simple: a label that revisits a node has
//! strictly more hops and no less weight and latency than its ancestor there, so it is
//! dominated. Cost: up to four Dijkstras and the LARAC steps, O(k (n + m) log n), plus the
//! label search, O(L·(d + log |front|) + L log L) for L labels created — worst case
//! exponential, in practice small.
//!
//! The latency bound is applied with a relative slack of 1e-9 so that a path whose latency
//! equals the bound, summed in another order, is still feasible.
//!
//! ```
//! use pathcore::graph::{Filter, Graph, Weight};
//! use pathcore::constrained::constrained_path;
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b", "c"]).unwrap();
//! g.add_link(0, 2, 10.0, 100.0, 1.0, true).unwrap(); // cheap but slow
//! g.add_link(0, 1, 1.0, 100.0, 5.0, true).unwrap();
//! g.add_link(1, 2, 1.0, 100.0, 5.0, true).unwrap();
//! let p = constrained_path(&g, 0, 2, 5.0, Weight::Cost, &Filter::new()).unwrap();
//! assert_eq!(p.nodes, vec![0, 1, 2]);
//! assert!(constrained_path(&g, 0, 2, 1.0, Weight::Cost, &Filter::new()).is_none());
//! ```

use std::cell::RefCell;
use std::collections::BinaryHeap;

use crate::graph::{slack, Filter, Graph, LinkId, NodeId, Path, Weight, NO_LINK};
use crate::min_scored::{Dist, MinScored};
use crate::search::{walk_back, Direction, Tree, FWD, REV_A, REV_B};
use crate::shortest_path::{bounded_shortest_path, shortest_path};

#[derive(Debug, Clone, Copy)]
struct Label {
    node: NodeId,
    parent: u32,
    link: LinkId,
    w: f64,
    lat: f64,
    hops: u32,
    /// Dominated by a later label at its node: skipped when it leaves the heap.
    dead: bool,
}

/// Heap entry of a label: `(key, latency, hops)` then the label's index in the arena.
type Entry = MinScored<(Dist, Dist, u32), u32>;

#[inline(always)]
fn entry(key: f64, lat: f64, hops: u32, idx: u32) -> Entry {
    MinScored((Dist::new(key), Dist::new(lat), hops), idx)
}

/// One label of a node's Pareto front: its weight, its latency and its index in the arena.
#[derive(Debug, Clone, Copy)]
struct FrontEntry {
    w: f64,
    lat: f64,
    idx: u32,
}

/// Scratch of the label search, reused between queries: the label arena, the heap and each
/// node's Pareto front.
///
/// A front holds the node's labels that no other label there dominates, sorted by weight
/// (strictly increasing) and so by latency (strictly decreasing). A label dominates another
/// when it is no worse in weight and latency and better in one of them, or equal in both and
/// no longer in hops: hops separate only labels equal in weight and latency (the documented
/// tie-break), so a label with fewer hops but more weight or latency is dominated. Checking a
/// new label is one binary search (the last entry no heavier than it is the one with the
/// least latency among those), and the entries it dominates are one run after that point.
#[derive(Debug, Default)]
pub(crate) struct Labels {
    arena: Vec<Label>,
    fronts: Vec<Vec<FrontEntry>>,
    stamp: Vec<u32>,
    gen: u32,
    heap: BinaryHeap<Entry>,
}

impl Labels {
    fn reset(&mut self, n: usize) {
        self.arena.clear();
        self.heap.clear();
        if self.fronts.len() < n {
            self.fronts.resize_with(n, Vec::new);
            self.stamp.resize(n, 0);
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.gen = 1;
        }
    }

    /// Add label `(w, lat, hops)` at `v` as arena index `idx` unless a label of v's front
    /// dominates it (then false); labels it dominates are removed and marked dead.
    fn admit(&mut self, v: NodeId, w: f64, lat: f64, hops: u32, idx: u32) -> bool {
        let i = v as usize;
        let front = &mut self.fronts[i];
        if self.stamp[i] != self.gen {
            self.stamp[i] = self.gen;
            front.clear();
        }
        let arena = &mut self.arena;
        let p = front.partition_point(|e| e.w <= w);
        if p > 0 {
            let e = front[p - 1];
            if e.lat < lat || (e.lat == lat && (e.w < w || arena[e.idx as usize].hops <= hops)) {
                return false;
            }
        }
        // Not dominated: the entries no lighter and no faster are dominated by it (one equal
        // in both has more hops, or it would have dominated). They form one run.
        let q = front.partition_point(|e| e.w < w);
        let mut r = q;
        while r < front.len() && front[r].lat >= lat {
            arena[front[r].idx as usize].dead = true;
            r += 1;
        }
        front.splice(q..r, [FrontEntry { w, lat, idx }]);
        true
    }
}

thread_local! {
    pub(crate) static LABELS: RefCell<Labels> = RefCell::new(Labels::default());
}

/// One latency-constrained query: a least-`weight` path src→dst over the links `filter`
/// allows whose total latency is at most `bound` (the slack already added).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'a> {
    pub(crate) g: &'a Graph,
    pub(crate) src: NodeId,
    pub(crate) dst: NodeId,
    pub(crate) bound: f64,
    pub(crate) weight: Weight,
    pub(crate) filter: &'a Filter,
}

/// Exact least-`weight` path src→dst with total latency ≤ `max_latency_ms` (relative slack
/// 1e-9; `+inf` = unbounded) over links allowed by `filter`. `None` if no path is feasible.
/// See the module documentation for the method and its complexity.
pub fn constrained_path(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    max_latency_ms: f64,
    weight: Weight,
    filter: &Filter,
) -> Option<Path> {
    constrained_path_budget(g, src, dst, max_latency_ms, weight, filter, PLAIN_LABELS)
}

/// [`constrained_path`] whose plain label search (step 3) may create `plain_labels` labels
/// before the Lagrangian steps take over (the tests run both ways on small graphs).
fn constrained_path_budget(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    max_latency_ms: f64,
    weight: Weight,
    filter: &Filter,
    plain_labels: usize,
) -> Option<Path> {
    let bound = slack(max_latency_ms);
    if !filter.node_ok(src) || !filter.node_ok(dst) || bound.is_nan() || bound < 0.0 {
        return None;
    }
    if src == dst {
        return Some(Path::trivial(src));
    }
    if weight == Weight::Latency {
        return bounded_shortest_path(g, src, dst, Weight::Latency, filter, bound);
    }
    // The least-weight path: optimal if it meets the bound (the common case; one search
    // that stops at dst).
    let p_w = shortest_path(g, src, dst, weight, filter)?;
    if p_w.latency_ms <= bound {
        return Some(p_w);
    }
    let q = Query {
        g,
        src,
        dst,
        bound,
        weight,
        filter,
    };
    FWD.with(|fw| {
        REV_A.with(|ra| {
            REV_B.with(|rb| {
                LABELS.with(|lb| {
                    search(
                        q,
                        &mut fw.borrow_mut(),
                        &mut ra.borrow_mut(),
                        &mut rb.borrow_mut(),
                        &mut lb.borrow_mut(),
                        plain_labels,
                    )
                })
            })
        })
    })
}

/// Steps 2 to 5 of the module documentation, for a query whose least-weight path is
/// infeasible.
fn search(
    q: Query<'_>,
    fwd: &mut Tree,
    rev_w: &mut Tree,
    rev_lat: &mut Tree,
    labels: &mut Labels,
    plain_labels: usize,
) -> Option<Path> {
    // 0. (done by the caller) the least-weight path is infeasible.
    // 1. Least latency to dst, cut at the bound: lb_lat, and the nodes that can be on a
    //    feasible path at all. The least-latency path is the first incumbent.
    rev_lat.run(
        q.g,
        q.dst,
        Direction::Reverse,
        Weight::Latency,
        q.weight,
        q.filter,
        q.bound,
        |_, _| true,
        |_| false,
    );
    let p_lat = rev_lat.path_to_root(q.g, q.dst, q.src)?;
    // Narrow the region to the nodes that are on some path within the bound: forward
    // latency from src, pruned by `fwd + lb_lat > bound` (an ellipse rather than a disc on
    // a geographic graph). Shortest paths to such nodes stay inside it, so it is exact.
    fwd.run(
        q.g,
        q.src,
        Direction::Forward,
        Weight::Latency,
        Weight::Latency,
        q.filter,
        q.bound,
        |n, d| d + rev_lat.st.get(n).a <= q.bound,
        |_| false,
    );
    let best_w = p_lat.weight(q.weight);
    // 2. Least weight to dst inside that region, cut at the incumbent (a node farther
    //    than that cannot be on a better path): lb_w. If the least-weight path inside the
    //    region meets the bound it is optimal.
    let cut = best_w + best_w.abs() * 1e-9 + 1e-12;
    rev_w.run(
        q.g,
        q.dst,
        Direction::Reverse,
        q.weight,
        Weight::Latency,
        q.filter,
        cut,
        |n, _| fwd.reached(n),
        |_| false,
    );
    let Some(p_w) = rev_w.path_to_root(q.g, q.dst, q.src) else {
        return Some(p_lat);
    };
    if p_w.latency_ms <= q.bound {
        return Some(p_w);
    }
    // 3. Plain best-first label setting (A* on the weight), given a budget of labels: on
    //    backbones and small graphs it ends well within it, and the Lagrangian bounds of
    //    step 4 would cost more than they save (measured 15 % slower on 10,000 queries on
    //    1,000 nodes).
    let lb_w = |v: NodeId| rev_w.st.get(v).a;
    let lb_lat = |v: NodeId| rev_lat.st.get(v).a;
    let incumbent = Some(p_lat.clone());
    if let Some(found) = label_search_lagrangian(
        q,
        &lb_w,
        &lb_lat,
        0.0,
        &lb_w,
        incumbent,
        labels,
        plain_labels,
    ) {
        return found;
    }
    // 4. Lagrangian bounds inside the region (nodes with a finite lb_w): a near-optimal
    //    feasible incumbent and, for every label, a lower bound on its best completion.
    //    The bounds are copied into one compact array first: the searches below read them
    //    for every node they touch.
    let lb: Vec<(f64, f64)> = (0..q.g.node_count() as NodeId)
        .map(|v| (lb_w(v), lb_lat(v)))
        .collect();
    let lag = lagrangian(q, &lb, p_w, p_lat);
    // 5. Best-first label setting in order of the Lagrangian bound.
    label_search_lagrangian(
        q,
        &|v| lb[v as usize].0,
        &|v| lb[v as usize].1,
        lag.lambda,
        &|v| lag.dist[v as usize],
        Some(lag.incumbent),
        labels,
        usize::MAX,
    )
    .flatten()
}

/// Labels the plain label search of step 3 may create before the Lagrangian bounds of step 4
/// are computed (a few milliseconds of work).
const PLAIN_LABELS: usize = 20_000;

/// What [`lagrangian`] finds: the multiplier, the best feasible path met, and the least
/// Lagrangian weight from every node to dst.
struct Lagrangian {
    lambda: f64,
    incumbent: Path,
    /// `dist[v]`: least `weight + lambda * latency` from v to dst inside the region (`inf`
    /// outside it, and where it exceeds the incumbent's weight + `lambda * bound`: no label
    /// there can lead to a better path).
    dist: Vec<f64>,
}

/// LARAC (Jüttner et al., 2001) inside the region where `lb[v].0` (lb_w) is finite: from the
/// cheapest path `p_c` (infeasible) and the fastest `p_d` (feasible), repeatedly take the
/// least path by `weight + lambda * latency` with `lambda` the slope between them, replacing
/// `p_d` by it if it is feasible and `p_c` otherwise, until the slope no longer moves:
/// `lambda` is then the optimal Lagrange multiplier and `p_d` a feasible path of nearly least
/// weight. With `d(v)` the least Lagrangian weight v→dst, a label (v, w, lat) cannot complete
/// within the bound to a weight below `w + lambda * lat + d(v) - lambda * bound` (any
/// completion's latency is at most `bound - lat`), which is what the label search is ordered
/// and pruned by; the nearer `lambda` is to optimal, the fewer labels it leaves (on road
/// graphs a multiplier two steps short of it measured 100 times more labels, one 1.5 % off
/// 1.5 times more). Each step is an A* search guided by `lb_w + lambda * lb_lat`
/// (consistent); the steps stop when the multiplier moves by less than 0.1 %, or after 64,
/// then one reverse Dijkstra gives `d`. Any `lambda` >= 0 gives valid bounds: the steps only
/// make them tighter.
fn lagrangian(q: Query<'_>, lb: &[(f64, f64)], mut p_c: Path, mut p_d: Path) -> Lagrangian {
    let n = q.g.node_count();
    let mut dist = vec![f64::INFINITY; n];
    let mut pred = vec![NO_LINK; n];
    let mut lambda = 0.0;
    for _ in 0..64 {
        let (wc, lc) = (p_c.weight(q.weight), p_c.latency_ms);
        let (wd, ld) = (p_d.weight(q.weight), p_d.latency_ms);
        if !(ld < lc && wc < wd) {
            break;
        }
        let slope = (wd - wc) / (lc - ld);
        if (slope - lambda).abs() <= slope * 1e-3 {
            // The multiplier has settled (to 0.1 %): another step would move the bound by
            // less than that, at the cost of a search.
            lambda = slope;
            break;
        }
        lambda = slope;
        let h = |v: NodeId| lb[v as usize].0 + lambda * lb[v as usize].1;
        lagrangian_search(
            q,
            lambda,
            Direction::Forward,
            h,
            lb,
            f64::INFINITY,
            &mut dist,
            &mut pred,
        );
        if !dist[q.dst as usize].is_finite() {
            break; // cannot happen: p_c and p_d lie in the region
        }
        let mut links = walk_back(q.dst, |v| {
            let lid = pred[v as usize];
            (lid != NO_LINK).then(|| (lid, q.g.links[lid as usize].u))
        });
        links.reverse();
        let r = Path::from_links(q.g, q.src, links);
        let (wr, lr) = (r.weight(q.weight), r.latency_ms);
        let c = |w: f64, l: f64| w + lambda * l;
        if c(wr, lr) >= c(wc, lc) * (1.0 - 1e-12) - 1e-12 {
            break; // no path below the line through p_c and p_d: lambda is optimal
        }
        if lr <= q.bound {
            p_d = r;
        } else {
            p_c = r;
        }
    }
    let cut = p_d.weight(q.weight) + lambda * q.bound;
    let cut = cut + cut.abs() * 1e-9 + 1e-12;
    lagrangian_search(
        q,
        lambda,
        Direction::Reverse,
        |_| 0.0,
        lb,
        cut,
        &mut dist,
        &mut pred,
    );
    Lagrangian {
        lambda,
        incumbent: p_d,
        dist,
    }
}

/// A* by `weight + lambda * latency` with heuristic `h` (consistent; 0 for Dijkstra) over the
/// links `q.filter` allows between nodes where `lb[v].0` is finite, cut at `cut`: Forward
/// from src, stopped when dst settles, or Reverse from dst to every node. Fills `dist` (the
/// Lagrangian weight from the root, `inf` where not reached) and `pred` (the link by which
/// each node was reached).
#[allow(clippy::too_many_arguments)]
fn lagrangian_search(
    q: Query<'_>,
    lambda: f64,
    dir: Direction,
    h: impl Fn(NodeId) -> f64,
    lb: &[(f64, f64)],
    cut: f64,
    dist: &mut [f64],
    pred: &mut [LinkId],
) {
    dist.iter_mut().for_each(|d| *d = f64::INFINITY);
    pred.iter_mut().for_each(|p| *p = NO_LINK);
    let (root, stop, adj) = match dir {
        Direction::Forward => (q.src, q.dst, &q.g.out_adj),
        Direction::Reverse => (q.dst, NodeId::MAX, &q.g.in_adj),
    };
    let mut heap: BinaryHeap<MinScored<Dist, NodeId>> = BinaryHeap::new();
    dist[root as usize] = 0.0;
    heap.push(MinScored(Dist::new(h(root)), root));
    while let Some(MinScored(f, u)) = heap.pop() {
        let du = dist[u as usize];
        if f.get() > du + h(u) {
            continue; // stale
        }
        if u == stop {
            break;
        }
        for a in &adj[u as usize] {
            let v = a.other;
            if !q.filter.arc_ok(a) || !lb[v as usize].0.is_finite() {
                continue;
            }
            let dv = du + q.weight.of_arc(a) + lambda * a.latency_ms;
            if dv < dist[v as usize] && dv <= cut {
                dist[v as usize] = dv;
                pred[v as usize] = a.lid;
                heap.push(MinScored(Dist::new(dv + h(v)), v));
            }
        }
    }
}

/// Best-first label setting for `q`, guided by lower bounds `lb_w(x)` and `lb_lat(x)` on
/// the weight and latency from x to dst (`inf` where dst is out of reach). Returns the
/// lex-least (weight, latency, hops) feasible path, or `incumbent` if none beats it.
pub(crate) fn label_search<W: Fn(NodeId) -> f64, L: Fn(NodeId) -> f64>(
    q: Query<'_>,
    lb_w: W,
    lb_lat: L,
    incumbent: Option<Path>,
    labels: &mut Labels,
) -> Option<Path> {
    label_search_lagrangian(q, &lb_w, &lb_lat, 0.0, &lb_w, incumbent, labels, usize::MAX).flatten()
}

/// [`label_search`] in order of the Lagrangian lower bound: a label `(v, w, lat)` is keyed
/// `w + lambda * lat + d(v)` with `d(v)` a lower bound on `weight + lambda * latency` from v
/// to dst (consistent, so keys never decrease along a path), and no completion of it within
/// the bound weighs less than `key - lambda * bound` (nor less than `w + lb_w(v)`). Labels
/// leave the heap in order of that bound; the search stops when the least one exceeds the
/// best weight found. With `lambda` = 0 and `d` = `lb_w` this is A* on the weight. `None` if
/// the search would hold more than `max_labels` labels (it gives up), else the answer as
/// [`label_search`] gives it.
#[allow(clippy::too_many_arguments)]
fn label_search_lagrangian<W: Fn(NodeId) -> f64, L: Fn(NodeId) -> f64, D: Fn(NodeId) -> f64>(
    q: Query<'_>,
    lb_w: &W,
    lb_lat: &L,
    lambda: f64,
    d: &D,
    incumbent: Option<Path>,
    labels: &mut Labels,
    max_labels: usize,
) -> Option<Option<Path>> {
    if !q.filter.node_ok(q.src) || !q.filter.node_ok(q.dst) || !lb_w(q.src).is_finite() {
        return Some(incumbent);
    }
    let (mut best_w, mut best_lat, mut best_hops) = match &incumbent {
        Some(p) => (p.weight(q.weight), p.latency_ms, p.hops as u32),
        None => (f64::INFINITY, f64::INFINITY, u32::MAX),
    };
    // Lower bounds are sums in another order than the weights they bound: a bound above
    // the best weight by less than this may be rounding, so it prunes nothing.
    let offset = lambda * q.bound;
    let above = |lb: f64, best: f64| lb > best + (best.abs() + offset) * 1e-9 + 1e-12;
    let mut best_label: Option<u32> = None;
    labels.reset(q.g.node_count());
    labels.arena.push(Label {
        node: q.src,
        parent: u32::MAX,
        link: NO_LINK,
        w: 0.0,
        lat: 0.0,
        hops: 0,
        dead: false,
    });
    labels.admit(q.src, 0.0, 0.0, 0, 0);
    labels.heap.push(entry(d(q.src), 0.0, 0, 0));
    while let Some(MinScored((key, _, _), cur)) = labels.heap.pop() {
        if above(key.get() - offset, best_w) {
            break;
        }
        let lab = labels.arena[cur as usize];
        if lab.dead || above(lab.w + lb_w(lab.node), best_w) {
            continue;
        }
        for a in q.g.out_arcs(lab.node) {
            if !q.filter.arc_ok(a) {
                continue;
            }
            let v = a.other;
            let lb_lat = lb_lat(v);
            let nlat = lab.lat + a.latency_ms;
            // Unreached nodes have lb_lat = inf and fail here.
            if nlat + lb_lat > q.bound {
                continue;
            }
            let nw = lab.w + q.weight.of_arc(a);
            let f = nw + lb_w(v);
            let key = nw + lambda * nlat + d(v);
            if !f.is_finite() || !key.is_finite() || above(f, best_w) || above(key - offset, best_w)
            {
                continue;
            }
            let nh = lab.hops + 1;
            let new = Label {
                node: v,
                parent: cur,
                link: a.lid,
                w: nw,
                lat: nlat,
                hops: nh,
                dead: false,
            };
            if v == q.dst {
                let better = nw < best_w
                    || (nw == best_w && (nlat < best_lat || (nlat == best_lat && nh < best_hops)));
                if better {
                    labels.arena.push(new);
                    best_label = Some(labels.arena.len() as u32 - 1);
                    (best_w, best_lat, best_hops) = (nw, nlat, nh);
                }
                continue;
            }
            let idx = labels.arena.len() as u32;
            if labels.arena.len() >= max_labels {
                return None;
            }
            if labels.admit(v, nw, nlat, nh, idx) {
                labels.arena.push(new);
                labels.heap.push(entry(key, nlat, nh, idx));
            }
        }
    }
    Some(match best_label {
        None => incumbent,
        Some(i) => {
            let mut links = walk_back(i, |j| {
                let lab = &labels.arena[j as usize];
                (lab.link != NO_LINK).then_some((lab.link, lab.parent))
            });
            links.reverse();
            Some(Path::from_links(q.g, q.src, links))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{all_simple_paths, random_graph, Rng};

    fn is_simple(p: &Path) -> bool {
        let mut n = p.nodes.clone();
        n.sort_unstable();
        n.dedup();
        n.len() == p.nodes.len()
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = Rng(3);
        for _ in 0..1500 {
            let n = 2 + rng.below(8) as u32;
            let m = rng.below(24) as u32;
            let g = random_graph(&mut rng, n, m);
            let (s, d) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
            let max_lat = rng.below(12) as f64 * 0.75;
            let min_bw = (rng.below(3) * 10) as f64;
            let mut f = Filter::new().with_min_bandwidth(min_bw);
            let ex = rng.below(n as u64) as u32;
            if rng.below(3) == 0 {
                f.exclude_node(ex);
            }
            if g.link_count() > 0 && rng.below(3) == 0 {
                f.exclude_link(rng.below(g.link_count() as u64) as u32);
            }
            for (w, budget) in [Weight::Latency, Weight::Cost, Weight::Hops]
                .into_iter()
                .flat_map(|w| [(w, PLAIN_LABELS), (w, 0)])
            {
                // Budget 0: straight to the Lagrangian steps.
                let got = constrained_path_budget(&g, s, d, max_lat, w, &f, budget);
                let all: Vec<Path> = if f.node_ok(s) && f.node_ok(d) {
                    all_simple_paths(&g, s, d, &|l| f.link_ok(l, &g.links[l as usize]))
                } else {
                    vec![]
                };
                let feas: Vec<&Path> = all
                    .iter()
                    .filter(|p| p.latency_ms <= max_lat + 1e-9)
                    .collect();
                match got {
                    None => assert!(feas.is_empty(), "missed a path"),
                    Some(p) => {
                        let best = feas
                            .iter()
                            .map(|p| p.weight(w))
                            .fold(f64::INFINITY, f64::min);
                        assert!((p.weight(w) - best).abs() < 1e-9, "not optimal");
                        assert!(p.latency_ms <= max_lat + 1e-9);
                        assert!(is_simple(&p));
                        assert_eq!((p.nodes[0], *p.nodes.last().unwrap()), (s, d));
                        for &l in &p.links {
                            assert!(f.link_ok(l, &g.links[l as usize]));
                        }
                        // Tie-break: the lexicographic (weight, latency, hops) least
                        // (the values are dyadic: sums are exact).
                        let key = |q: &Path| (q.weight(w), q.latency_ms, q.hops);
                        let lex = feas
                            .iter()
                            .map(|q| key(q))
                            .min_by(|a, b| a.partial_cmp(b).unwrap())
                            .unwrap();
                        assert_eq!(key(&p), lex, "not the lexicographic optimum");
                    }
                }
            }
        }
    }

    #[test]
    fn bound_equal_to_latency_is_feasible() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c"]).unwrap();
        g.add_link(0, 1, 0.1, 1.0, 5.0, true).unwrap();
        g.add_link(1, 2, 0.2, 1.0, 5.0, true).unwrap();
        g.add_link(0, 2, 1.0, 1.0, 1.0, true).unwrap();
        let p = constrained_path(&g, 0, 2, 0.1 + 0.2, Weight::Cost, &Filter::new()).unwrap();
        assert_eq!(p.nodes, vec![0, 1, 2]);
    }

    /// Three routes a→d: over b (cost 1, 10 ms), over c (cost 4, 4 ms, 10 Mbit/s),
    /// direct (cost 9, 1 ms).
    fn three_routes() -> (Graph, [LinkId; 5]) {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c", "d"]).unwrap();
        let ab = g.add_link(0, 1, 5.0, 100.0, 0.5, true).unwrap();
        let bd = g.add_link(1, 3, 5.0, 100.0, 0.5, true).unwrap();
        let ac = g.add_link(0, 2, 2.0, 10.0, 2.0, true).unwrap();
        let cd = g.add_link(2, 3, 2.0, 100.0, 2.0, true).unwrap();
        let ad = g.add_link(0, 3, 1.0, 100.0, 9.0, true).unwrap();
        (g, [ab, bd, ac, cd, ad])
    }

    #[test]
    fn the_bound_picks_the_cheapest_route_that_meets_it() {
        let (g, [ab, bd, ac, cd, ad]) = three_routes();
        let f = Filter::new();
        let route = |bound: f64, f: &Filter| {
            constrained_path(&g, 0, 3, bound, Weight::Cost, f).map(|p| (p.links, p.cost))
        };
        assert_eq!(route(f64::INFINITY, &f), Some((vec![ab, bd], 1.0)));
        assert_eq!(route(10.0, &f), Some((vec![ab, bd], 1.0)));
        assert_eq!(route(9.99, &f), Some((vec![ac, cd], 4.0)));
        assert_eq!(route(3.0, &f), Some((vec![ad], 9.0)));
        assert_eq!(route(0.5, &f), None);
        // 20 Mbit/s does not fit a→c (10 Mbit/s): the direct link is next.
        assert_eq!(
            route(9.0, &f.clone().with_min_bandwidth(20.0)),
            Some((vec![ad], 9.0))
        );
        let mut ex = Filter::new();
        ex.exclude_node(2);
        assert_eq!(route(9.0, &ex), Some((vec![ad], 9.0)));
        ex.exclude_link(ad);
        assert_eq!(route(9.0, &ex), None);
        assert_eq!(route(f64::INFINITY, &ex), Some((vec![ab, bd], 1.0)));
    }
}
