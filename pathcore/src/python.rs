//! PyO3 bindings: convert Python arguments to engine types, map errors, release the GIL.
//! No algorithm lives here.
//!
//! Conventions: unknown node name or link id → `KeyError`; negative / NaN / infinite
//! quantity, negative / NaN latency bound, bad weight name, `k < 1` → `ValueError`; no
//! (feasible) path → `None`. A latency bound of `inf` means unbounded.

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::batch::{self, Request};
use crate::graph::{
    check_bound, check_quantity, Error, Filter, Graph, LinkId, LinkSpec, NodeId, Path, Weight,
};
use crate::trees::ReverseTrees;
use crate::{circles, constrained, disjoint, k_shortest, ofwire, shortest_path};

/// The Python exception for an engine error, with message `m`: unknown node or link →
/// `KeyError`, anything else → `ValueError`.
fn exception(e: &Error, m: String) -> PyErr {
    match e {
        Error::UnknownNode(_) | Error::UnknownLink(_) => PyKeyError::new_err(m),
        _ => PyValueError::new_err(m),
    }
}

fn to_py(e: Error) -> PyErr {
    exception(&e, e.to_string())
}

/// One item of a bulk argument (`add_links`, `batch_constrained_paths`): a tuple whose
/// errors name the item, `"{what} {i}: ..."`, keeping the exception type.
struct Record<'py> {
    t: Bound<'py, PyTuple>,
    what: &'static str,
    i: usize,
}

impl<'py> Record<'py> {
    /// Item `i` (`what`: "link", "request"), which must be a tuple of `required` items and
    /// optionally one more, laid out as `form` (for the messages); otherwise ValueError.
    fn new(
        item: Bound<'py, PyAny>,
        what: &'static str,
        i: usize,
        form: &str,
        required: usize,
    ) -> PyResult<Record<'py>> {
        let t = item
            .cast_into::<PyTuple>()
            .map_err(|_| PyValueError::new_err(format!("{what} {i}: expected a tuple {form}")))?;
        let n = t.len();
        if n != required && n != required + 1 {
            return Err(PyValueError::new_err(format!(
                "{what} {i}: expected {required} or {} items {form}, got {n}",
                required + 1
            )));
        }
        Ok(Record { t, what, i })
    }

    /// Item `j` as the id of a node name (a str; unknown → KeyError).
    fn node(&self, g: &Graph, j: usize) -> PyResult<NodeId> {
        let o = self.t.get_borrowed_item(j)?;
        let s = o.cast::<PyString>().map_err(|_| {
            PyValueError::new_err(format!("{} {}: node names must be str", self.what, self.i))
        })?;
        g.node_id(s.to_str()?).map_err(|e| self.error(e))
    }

    /// Item `j` as a float.
    fn num(&self, j: usize) -> PyResult<f64> {
        self.t.get_borrowed_item(j)?.extract::<f64>()
    }

    /// Item `j` as a float, or `default` if the tuple ends before it.
    fn num_or(&self, j: usize, default: f64) -> PyResult<f64> {
        if j < self.t.len() {
            self.num(j)
        } else {
            Ok(default)
        }
    }

    /// `e` with the item named in its message (same exception type as `to_py`).
    fn error(&self, e: Error) -> PyErr {
        exception(&e, format!("{} {}: {e}", self.what, self.i))
    }
}

/// A path: `nodes` (names), `links` (directed link ids), and its totals. Immutable;
/// equal when nodes, links and totals are equal.
#[pyclass(frozen, module = "pathcore._pathcore", name = "Path")]
pub struct PyPath {
    /// Node names from source to destination (the graph's own str objects).
    nodes: Vec<Py<PyString>>,
    /// Directed link ids, one per hop.
    #[pyo3(get)]
    links: Vec<LinkId>,
    /// Total latency in ms.
    #[pyo3(get)]
    latency_ms: f64,
    /// Total cost.
    #[pyo3(get)]
    cost: f64,
    /// Number of links.
    #[pyo3(get)]
    hops: usize,
    /// Least residual bandwidth along the path in Mbit/s (inf for a single-node path).
    #[pyo3(get)]
    bottleneck_mbps: f64,
}

impl PyPath {
    fn new(py: Python<'_>, names: &[Py<PyString>], p: Path) -> PyPath {
        PyPath {
            nodes: p
                .nodes
                .iter()
                .map(|&n| names[n as usize].clone_ref(py))
                .collect(),
            links: p.links,
            latency_ms: p.latency_ms,
            cost: p.cost,
            hops: p.hops,
            bottleneck_mbps: p.bottleneck_mbps,
        }
    }
}

#[pymethods]
impl PyPath {
    /// Node names from source to destination.
    #[getter]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.nodes.iter().map(|n| n.bind(py)))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let nodes = self.nodes(py)?.repr()?;
        Ok(format!(
            "Path(nodes={nodes}, links={:?}, latency_ms={:?}, cost={:?}, hops={}, bottleneck_mbps={})",
            self.links,
            self.latency_ms,
            self.cost,
            self.hops,
            if self.bottleneck_mbps.is_infinite() {
                "inf".to_string()
            } else {
                format!("{:?}", self.bottleneck_mbps)
            }
        ))
    }

    fn __eq__(&self, other: PyRef<'_, PyPath>) -> PyResult<bool> {
        let py = other.py();
        if self.links != other.links
            || self.nodes.len() != other.nodes.len()
            || self.latency_ms != other.latency_ms
            || self.cost != other.cost
            || self.bottleneck_mbps != other.bottleneck_mbps
        {
            return Ok(false);
        }
        for (a, b) in self.nodes.iter().zip(&other.nodes) {
            if !a.is(b) && a.bind(py).to_str()? != b.bind(py).to_str()? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.links.hash(&mut h);
        for n in &self.nodes {
            n.bind(py).to_str()?.hash(&mut h);
        }
        Ok(h.finish())
    }

    /// Number of nodes on the path (hops + 1).
    fn __len__(&self) -> usize {
        self.nodes.len()
    }
}

/// A directed link as the graph held it when read: its id, end nodes and values.
/// Immutable (a snapshot: later updates of the graph do not change it); equal when every
/// field is equal.
#[pyclass(frozen, module = "pathcore._pathcore", name = "Link")]
pub struct PyLink {
    /// Directed link id.
    #[pyo3(get)]
    id: LinkId,
    /// Tail node name.
    #[pyo3(get)]
    u: Py<PyString>,
    /// Head node name.
    #[pyo3(get)]
    v: Py<PyString>,
    /// One-way latency in ms.
    #[pyo3(get)]
    latency_ms: f64,
    /// Capacity in Mbit/s.
    #[pyo3(get)]
    bandwidth_mbps: f64,
    /// Capacity left for new reservations in Mbit/s.
    #[pyo3(get)]
    residual_mbps: f64,
    /// Administrative cost.
    #[pyo3(get)]
    cost: f64,
    /// Whether the link is in service (down links are never used).
    #[pyo3(get)]
    up: bool,
    /// Id of the other direction of a bidirectional link, or None.
    #[pyo3(get)]
    reverse: Option<LinkId>,
}

impl PyLink {
    /// The fields compared by `==` and hashed, names as Rust strings.
    #[allow(clippy::type_complexity)]
    fn fields(
        &self,
        py: Python<'_>,
    ) -> PyResult<(LinkId, String, String, [u64; 4], bool, Option<LinkId>)> {
        Ok((
            self.id,
            self.u.bind(py).to_str()?.to_owned(),
            self.v.bind(py).to_str()?.to_owned(),
            [
                self.latency_ms.to_bits(),
                self.bandwidth_mbps.to_bits(),
                self.residual_mbps.to_bits(),
                self.cost.to_bits(),
            ],
            self.up,
            self.reverse,
        ))
    }
}

#[pymethods]
impl PyLink {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let num = |x: f64| -> PyResult<String> { Ok(PyFloat::new(py, x).repr()?.to_string()) };
        Ok(format!(
            "Link(id={}, u={}, v={}, latency_ms={}, bandwidth_mbps={}, residual_mbps={}, cost={}, up={}, reverse={})",
            self.id,
            self.u.bind(py).repr()?,
            self.v.bind(py).repr()?,
            num(self.latency_ms)?,
            num(self.bandwidth_mbps)?,
            num(self.residual_mbps)?,
            num(self.cost)?,
            if self.up { "True" } else { "False" },
            self.reverse
                .map_or_else(|| "None".to_string(), |r| r.to_string()),
        ))
    }

    fn __eq__(&self, other: PyRef<'_, PyLink>) -> PyResult<bool> {
        let py = other.py();
        Ok(self.fields(py)? == other.fields(py)?)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<u64> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.fields(py)?.hash(&mut h);
        Ok(h.finish())
    }
}

/// A directed multigraph of named nodes and links with latency, bandwidth, residual
/// bandwidth, cost and up/down state, and the path queries over it.
///
/// Nodes and links get dense ids in insertion order and are never removed (node removal
/// is not supported; take a link out of service with `set_link_up`). A bidirectional link
/// is two directed links: u->v gets the returned id, v->u the next id; find it with
/// `reverse_link(id)` or the `reverse` field of the Link records of `link(id)` / `links()`.
/// Updates are O(1) (setters O(degree)); queries read the current state, nothing is
/// rebuilt. Conventions: unknown node or link id -> KeyError; negative/NaN/inf quantity,
/// negative/NaN latency bound, bad weight name, k < 1 -> ValueError; no (feasible) path
/// -> None. Every latency bound (max_latency_ms) accepts inf, meaning unbounded.
/// Long queries release the GIL; updating the graph from another thread while one runs
/// raises RuntimeError (the graph is borrowed).
#[pyclass(module = "pathcore._pathcore", name = "Graph")]
pub struct PyGraph {
    g: Graph,
    /// One Python str per node (id order), shared by every result that names nodes.
    names: Vec<Py<PyString>>,
}

fn weight(s: &str) -> PyResult<Weight> {
    Weight::parse(s).map_err(to_py)
}

fn names_of(obj: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    if obj.is_instance_of::<PyString>() {
        return Err(PyValueError::new_err(
            "expected an iterable of node names, got a str",
        ));
    }
    obj.try_iter()?.map(|x| x?.extract::<String>()).collect()
}

impl PyGraph {
    fn node(&self, name: &str) -> PyResult<NodeId> {
        self.g.node_id(name).map_err(to_py)
    }

    fn lid(&self, id: i64) -> PyResult<LinkId> {
        self.g.check_link_id(id).map_err(to_py)
    }

    /// The ends and weight of a query, checked in that order of report: bad weight →
    /// ValueError, then unknown src or dst → KeyError.
    fn query(&self, src: &str, dst: &str, weight: &str) -> PyResult<(NodeId, NodeId, Weight)> {
        let w = self::weight(weight)?;
        Ok((self.node(src)?, self.node(dst)?, w))
    }

    /// Apply the engine setter `set` to link `link_id` (unknown id → KeyError).
    fn set_link(
        &mut self,
        link_id: i64,
        set: impl FnOnce(&mut Graph, LinkId) -> Result<(), Error>,
    ) -> PyResult<()> {
        let id = self.lid(link_id)?;
        set(&mut self.g, id).map_err(to_py)
    }

    /// The requests of a batch call, each checked: (src, dst, max_latency_ms[,
    /// min_bandwidth_mbps]); a bad one raises KeyError/ValueError naming its index.
    fn batch_requests(&self, requests: &Bound<'_, PyAny>) -> PyResult<Vec<Request>> {
        const FORM: &str = "(src, dst, max_latency_ms[, min_bandwidth_mbps])";
        let mut reqs = Vec::new();
        for (i, item) in requests.try_iter()?.enumerate() {
            let r = Record::new(item?, "request", i, FORM, 3)?;
            let (src, dst) = (r.node(&self.g, 0)?, r.node(&self.g, 1)?);
            let max_latency_ms = r.num(2)?;
            let min_bandwidth_mbps = r.num_or(3, 0.0)?;
            check_bound("max_latency_ms", max_latency_ms).map_err(|e| r.error(e))?;
            check_quantity("min_bandwidth_mbps", min_bandwidth_mbps).map_err(|e| r.error(e))?;
            reqs.push(Request {
                src,
                dst,
                max_latency_ms,
                min_bandwidth_mbps,
            });
        }
        Ok(reqs)
    }

    fn path(&self, py: Python<'_>, p: Option<Path>) -> Option<PyPath> {
        p.map(|p| PyPath::new(py, &self.names, p))
    }

    fn name<'py>(&self, py: Python<'py>, n: NodeId) -> &Bound<'py, PyString> {
        self.names[n as usize].bind(py)
    }

    fn push_names(&mut self, py: Python<'_>) {
        for n in self.names.len()..self.g.node_count() {
            self.names
                .push(PyString::new(py, self.g.name(n as NodeId)).unbind());
        }
    }

    fn link_record(&self, py: Python<'_>, id: LinkId) -> PyResult<PyLink> {
        let l = self.g.link(id).map_err(to_py)?;
        Ok(PyLink {
            id,
            u: self.names[l.u as usize].clone_ref(py),
            v: self.names[l.v as usize].clone_ref(py),
            latency_ms: l.latency_ms,
            bandwidth_mbps: l.bandwidth_mbps,
            residual_mbps: l.residual_mbps,
            cost: l.cost,
            up: l.up,
            reverse: l.reverse,
        })
    }

    /// The filter of a query, checked up front: links up with residual >=
    /// `min_bandwidth_mbps`, minus the excluded nodes (names) and links (ids). Unknown
    /// node or link → KeyError; negative/NaN/inf bandwidth or a str of names → ValueError.
    fn filter(
        &self,
        min_bandwidth_mbps: f64,
        exclude_nodes: Option<&Bound<'_, PyAny>>,
        exclude_links: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Filter> {
        check_quantity("min_bandwidth_mbps", min_bandwidth_mbps).map_err(to_py)?;
        let mut f = Filter::new().with_min_bandwidth(min_bandwidth_mbps);
        if let Some(ex) = exclude_nodes {
            for name in names_of(ex)? {
                f.exclude_node(self.node(&name)?);
            }
        }
        if let Some(ex) = exclude_links {
            for id in ex.try_iter()? {
                f.exclude_link(self.lid(id?.extract::<i64>()?)?);
            }
        }
        Ok(f)
    }
}

#[pymethods]
impl PyGraph {
    #[new]
    #[pyo3(signature = ())]
    fn py_new() -> Self {
        PyGraph {
            g: Graph::new(),
            names: Vec::new(),
        }
    }

    /// Add a node and return its id. Duplicate name → ValueError. O(1).
    #[pyo3(signature = (name))]
    fn add_node(&mut self, py: Python<'_>, name: &str) -> PyResult<NodeId> {
        let id = self.g.add_node(name).map_err(to_py)?;
        self.push_names(py);
        Ok(id)
    }

    /// Add nodes from an iterable of names; returns their ids. All names are checked
    /// first (duplicate → ValueError, nothing added). O(len).
    #[pyo3(signature = (names))]
    fn add_nodes(&mut self, py: Python<'_>, names: &Bound<'_, PyAny>) -> PyResult<Vec<NodeId>> {
        let names = names_of(names)?;
        let ids = self.g.add_nodes(&names).map_err(to_py)?;
        self.push_names(py);
        Ok(ids)
    }

    /// Whether a node of that name exists. O(1).
    #[pyo3(signature = (name))]
    fn has_node(&self, name: &str) -> bool {
        self.g.has_node(name)
    }

    fn __contains__(&self, name: &str) -> bool {
        self.g.has_node(name)
    }

    /// Number of nodes.
    #[getter]
    fn node_count(&self) -> usize {
        self.g.node_count()
    }

    /// Number of directed links (a bidirectional link counts twice).
    #[getter]
    fn link_count(&self) -> usize {
        self.g.link_count()
    }

    /// Node names in id order. O(n).
    #[pyo3(signature = ())]
    fn nodes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.names.iter().map(|n| n.bind(py)))
    }

    /// Add a link u→v and, if `bidirectional`, v→u (id + 1, its `reverse`); residual =
    /// bandwidth; up. Returns the id of u→v. Parallel links allowed. Unknown node →
    /// KeyError; negative/NaN/inf latency, bandwidth or cost → ValueError. O(1).
    #[pyo3(signature = (u, v, latency_ms, bandwidth_mbps, cost=1.0, bidirectional=true))]
    fn add_link(
        &mut self,
        u: &str,
        v: &str,
        latency_ms: f64,
        bandwidth_mbps: f64,
        cost: f64,
        bidirectional: bool,
    ) -> PyResult<LinkId> {
        let (u, v) = (self.node(u)?, self.node(v)?);
        self.g
            .add_link(u, v, latency_ms, bandwidth_mbps, cost, bidirectional)
            .map_err(to_py)
    }

    /// Add links from an iterable of `(u, v, latency_ms, bandwidth_mbps[, cost])` tuples
    /// (cost defaults to 1.0); returns the u→v ids. Everything is checked first (errors
    /// name the index; nothing is added on error). O(len).
    #[pyo3(signature = (links, bidirectional=true))]
    fn add_links(
        &mut self,
        links: &Bound<'_, PyAny>,
        bidirectional: bool,
    ) -> PyResult<Vec<LinkId>> {
        const FORM: &str = "(u, v, latency_ms, bandwidth_mbps[, cost])";
        let mut specs = Vec::new();
        for (i, item) in links.try_iter()?.enumerate() {
            let r = Record::new(item?, "link", i, FORM, 4)?;
            specs.push(LinkSpec {
                u: r.node(&self.g, 0)?,
                v: r.node(&self.g, 1)?,
                latency_ms: r.num(2)?,
                bandwidth_mbps: r.num(3)?,
                cost: r.num_or(4, 1.0)?,
            });
        }
        self.g.add_links(&specs, bidirectional).map_err(to_py)
    }

    /// The directed link `link_id` as a Link record (a snapshot): id, u, v (node names),
    /// latency_ms, bandwidth_mbps, residual_mbps, cost, up, reverse (id of the other
    /// direction of a bidirectional link, or None). Unknown id → KeyError. O(1).
    #[pyo3(signature = (link_id))]
    fn link(&self, py: Python<'_>, link_id: i64) -> PyResult<PyLink> {
        let id = self.lid(link_id)?;
        self.link_record(py, id)
    }

    /// All directed links as Link records (see `link`), in id order. O(m).
    #[pyo3(signature = ())]
    fn links(&self, py: Python<'_>) -> PyResult<Vec<PyLink>> {
        (0..self.g.link_count() as LinkId)
            .map(|id| self.link_record(py, id))
            .collect()
    }

    /// Id of the other direction of a bidirectional link, or None. Unknown id → KeyError.
    #[pyo3(signature = (link_id))]
    fn reverse_link(&self, link_id: i64) -> PyResult<Option<LinkId>> {
        let id = self.lid(link_id)?;
        self.g.reverse_link(id).map_err(to_py)
    }

    /// Ids of the directed links u→v (parallel links included), ascending. O(deg(u)).
    #[pyo3(signature = (u, v))]
    fn links_between(&self, u: &str, v: &str) -> PyResult<Vec<LinkId>> {
        Ok(self.g.links_between(self.node(u)?, self.node(v)?))
    }

    /// Set a directed link up or down (`both_directions`: its reverse too). Down links are
    /// never used. Unknown id → KeyError. O(deg(u) + deg(v)).
    #[pyo3(signature = (link_id, up, *, both_directions=false))]
    fn set_link_up(&mut self, link_id: i64, up: bool, both_directions: bool) -> PyResult<()> {
        self.set_link(link_id, |g, id| g.set_link_up(id, up, both_directions))
    }

    /// Set the residual bandwidth (what is left for new reservations) of a directed link.
    /// Negative/NaN/inf → ValueError; unknown id → KeyError. Not checked against the
    /// capacity. O(deg(u) + deg(v)).
    #[pyo3(signature = (link_id, residual_mbps, *, both_directions=false))]
    fn set_residual_bandwidth(
        &mut self,
        link_id: i64,
        residual_mbps: f64,
        both_directions: bool,
    ) -> PyResult<()> {
        self.set_link(link_id, |g, id| {
            g.set_residual_bandwidth(id, residual_mbps, both_directions)
        })
    }

    /// Set the capacity of a directed link (residual unchanged). Errors as
    /// `set_residual_bandwidth`. O(deg(u) + deg(v)).
    #[pyo3(signature = (link_id, bandwidth_mbps, *, both_directions=false))]
    fn set_link_bandwidth(
        &mut self,
        link_id: i64,
        bandwidth_mbps: f64,
        both_directions: bool,
    ) -> PyResult<()> {
        self.set_link(link_id, |g, id| {
            g.set_link_bandwidth(id, bandwidth_mbps, both_directions)
        })
    }

    /// Set the latency of a directed link. Errors as `set_residual_bandwidth`.
    /// O(deg(u) + deg(v)).
    #[pyo3(signature = (link_id, latency_ms, *, both_directions=false))]
    fn set_link_latency(
        &mut self,
        link_id: i64,
        latency_ms: f64,
        both_directions: bool,
    ) -> PyResult<()> {
        self.set_link(link_id, |g, id| {
            g.set_link_latency(id, latency_ms, both_directions)
        })
    }

    /// Set the cost of a directed link. Errors as `set_residual_bandwidth`.
    /// O(deg(u) + deg(v)).
    #[pyo3(signature = (link_id, cost, *, both_directions=false))]
    fn set_link_cost(&mut self, link_id: i64, cost: f64, both_directions: bool) -> PyResult<()> {
        self.set_link(link_id, |g, id| g.set_link_cost(id, cost, both_directions))
    }

    /// Least-`weight` path over up links ("latency" | "cost" | "hops"), avoiding
    /// exclude_nodes (names) and exclude_links (directed link ids; exclude both directions
    /// to avoid a bidirectional link); ties go to less latency, then fewer hops. Returns a
    /// Path (a single-node Path if src == dst) or None if dst is unreachable (also when src
    /// or dst is excluded). Unknown node or link → KeyError; bad weight or a str for
    /// exclude_nodes → ValueError. Bidirectional Dijkstra: O((n + m) log n), typically
    /// settles far fewer nodes.
    #[pyo3(signature = (src, dst, weight="latency", *, exclude_nodes=None, exclude_links=None))]
    fn shortest_path(
        &self,
        py: Python<'_>,
        src: &str,
        dst: &str,
        weight: &str,
        exclude_nodes: Option<&Bound<'_, PyAny>>,
        exclude_links: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<PyPath>> {
        let (s, d, w) = self.query(src, dst, weight)?;
        let f = self.filter(0.0, exclude_nodes, exclude_links)?;
        Ok(self.path(py, shortest_path::shortest_path(&self.g, s, d, w, &f)))
    }

    /// Next hops toward `target` over up links: {node name: link id} for every node other
    /// than target that can reach it, the id (as in Path.links) of the first link of a
    /// least-`weight` path from that node to target ("latency" | "cost" | "hops"; ties:
    /// less latency, then fewer hops, as shortest_path). The next hops form a tree:
    /// following them from any node reaches target without a loop, also with zero-weight
    /// links and ties. Nodes are listed nearest to target first. Unknown node → KeyError;
    /// bad weight → ValueError. One reverse Dijkstra from target: O((n + m) log n). The
    /// GIL is released.
    #[pyo3(signature = (target, weight="latency"))]
    fn shortest_path_tree<'py>(
        &self,
        py: Python<'py>,
        target: &str,
        weight: &str,
    ) -> PyResult<Bound<'py, PyDict>> {
        let w = self::weight(weight)?;
        let t = self.node(target)?;
        let g = &self.g;
        let tree = py.detach(|| shortest_path::shortest_path_tree(g, t, w, &Filter::new()));
        let d = PyDict::new(py);
        for (n, lid) in tree {
            d.set_item(self.name(py, n), lid)?;
        }
        Ok(d)
    }

    /// One full Dijkstra by `weight` ("latency" | "cost" | "hops") over up links from
    /// `root`, or toward it with reverse=True, as two lists indexed by node id (the order
    /// of nodes() and of the ids add_node(s) returned): (dist, pred). dist[i] is the least
    /// weight root→node i (node i→root if reverse), math.inf if not reached; pred[i] is the
    /// id of the last link of such a path (if reverse: the first link, node i's next hop
    /// toward root, the same as shortest_path_tree gives), -1 for root and unreached nodes.
    /// Ties: less latency, then fewer hops, as shortest_path. The arrays skip the per-node
    /// dict insertion of within_latency / shortest_path_tree (the larger part of their time
    /// on large graphs). Unknown node → KeyError; bad weight → ValueError. O((n + m) log n),
    /// the GIL released during the search.
    #[pyo3(signature = (root, weight="latency", *, reverse=false))]
    fn shortest_path_arrays(
        &self,
        py: Python<'_>,
        root: &str,
        weight: &str,
        reverse: bool,
    ) -> PyResult<(Vec<f64>, Vec<i64>)> {
        let w = self::weight(weight)?;
        let r = self.node(root)?;
        let dir = if reverse {
            shortest_path::Direction::Reverse
        } else {
            shortest_path::Direction::Forward
        };
        let g = &self.g;
        let (dist, pred) =
            py.detach(|| shortest_path::shortest_path_arrays(g, r, dir, w, &Filter::new()));
        let pred = pred.into_iter().map(link_or_none).collect();
        Ok((dist, pred))
    }

    /// EXACT least-`weight` path whose total latency is <= max_latency_ms (relative slack
    /// 1e-9; math.inf = unbounded) and whose every link is up with residual >=
    /// min_bandwidth_mbps, avoiding exclude_nodes (names) and exclude_links (ids).
    /// Ties: less latency, then fewer hops. Returns a Path, or None if no path is feasible
    /// (also when src or dst is excluded). Unknown node or link → KeyError; negative/NaN
    /// bound, negative/NaN/inf bandwidth or bad weight → ValueError.
    /// Method: if the least-weight path meets the bound it is returned; otherwise reverse
    /// Dijkstra lower bounds on latency and weight, LARAC for the Lagrange multiplier of the
    /// bound, then best-first label setting in order of the Lagrangian lower bound with
    /// Pareto dominance (exact). A few Dijkstras, O((n + m) log n) each, plus the label
    /// search (worst case exponential, small in practice). The GIL is released.
    #[pyo3(signature = (src, dst, *, max_latency_ms, min_bandwidth_mbps=0.0, weight="cost", exclude_nodes=None, exclude_links=None))]
    #[allow(clippy::too_many_arguments)]
    fn constrained_path(
        &self,
        py: Python<'_>,
        src: &str,
        dst: &str,
        max_latency_ms: f64,
        min_bandwidth_mbps: f64,
        weight: &str,
        exclude_nodes: Option<&Bound<'_, PyAny>>,
        exclude_links: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Option<PyPath>> {
        let (s, d, w) = self.query(src, dst, weight)?;
        check_bound("max_latency_ms", max_latency_ms).map_err(to_py)?;
        let f = self.filter(min_bandwidth_mbps, exclude_nodes, exclude_links)?;
        let g = &self.g;
        let p = py.detach(|| constrained::constrained_path(g, s, d, max_latency_ms, w, &f));
        Ok(self.path(py, p))
    }

    /// Up to k loopless paths of least `weight` over up links, in nondecreasing weight
    /// (ties: less latency, fewer hops, link ids); with max_latency_ms, the k best among
    /// paths meeting the bound (exact; None or math.inf = unbounded). Paths over different
    /// parallel links are different.
    /// Returns a list (empty if no path). k < 1, negative/NaN bound or bad weight →
    /// ValueError; unknown node → KeyError. Yen's algorithm: two reverse Dijkstras, then
    /// O(k·L) spur searches for paths of L links (A* guided by the exact distances to dst;
    /// with a bound, the exact constrained label search). The GIL is released.
    #[pyo3(signature = (src, dst, k, *, weight="latency", max_latency_ms=None))]
    fn k_shortest_paths(
        &self,
        py: Python<'_>,
        src: &str,
        dst: &str,
        k: i64,
        weight: &str,
        max_latency_ms: Option<f64>,
    ) -> PyResult<Vec<PyPath>> {
        let (s, d, w) = self.query(src, dst, weight)?;
        if k < 1 {
            return Err(PyValueError::new_err(format!("k must be >= 1, got {k}")));
        }
        let bound = max_latency_ms.unwrap_or(f64::INFINITY);
        check_bound("max_latency_ms", bound).map_err(to_py)?;
        let g = &self.g;
        let ps = py
            .detach(|| k_shortest::k_shortest_paths(g, s, d, k as usize, w, bound, &Filter::new()));
        Ok(ps
            .into_iter()
            .map(|p| PyPath::new(py, &self.names, p))
            .collect())
    }

    /// The pair of disjoint src→dst paths of least total `weight` over up links, as
    /// (Path, Path) ordered by weight, or None if there is no such pair.
    /// Link-disjoint by default, where the two directions of a bidirectional link are ONE
    /// physical link (one path may not use u→v while the other uses v→u); with
    /// node_disjoint=True also no shared node other than src and dst. src == dst → ValueError;
    /// unknown node → KeyError; bad weight → ValueError. Suurballe (2-unit min-cost flow):
    /// O((n + m) log n). The GIL is released.
    #[pyo3(signature = (src, dst, *, weight="latency", node_disjoint=false))]
    fn disjoint_paths(
        &self,
        py: Python<'_>,
        src: &str,
        dst: &str,
        weight: &str,
        node_disjoint: bool,
    ) -> PyResult<Option<(PyPath, PyPath)>> {
        let (s, d, w) = self.query(src, dst, weight)?;
        if s == d {
            return Err(PyValueError::new_err("disjoint_paths needs src != dst"));
        }
        let g = &self.g;
        let r = py.detach(|| disjoint::disjoint_paths(g, s, d, w, node_disjoint, &Filter::new()));
        Ok(r.map(|(p, q)| {
            (
                PyPath::new(py, &self.names, p),
                PyPath::new(py, &self.names, q),
            )
        }))
    }

    /// {name: least latency from src in ms} for every node within max_latency_ms over up
    /// links (relative slack 1e-9; math.inf = every node src reaches), src included with
    /// 0.0, nearest first. Unknown node → KeyError; negative/NaN bound → ValueError.
    /// Dijkstra cut at the bound: O((n' + m') log n') for the part of the graph inside the
    /// circle.
    #[pyo3(signature = (src, max_latency_ms))]
    fn within_latency<'py>(
        &self,
        py: Python<'py>,
        src: &str,
        max_latency_ms: f64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let s = self.node(src)?;
        check_bound("max_latency_ms", max_latency_ms).map_err(to_py)?;
        let d = PyDict::new(py);
        for (n, lat) in circles::within_latency(&self.g, s, max_latency_ms) {
            d.set_item(self.name(py, n), lat)?;
        }
        Ok(d)
    }

    /// All-pairs least latency over up links among `nodes` (names; default all nodes in
    /// id order). Returns (names, matrix): matrix[i][j] is the latency names[i]→names[j]
    /// in ms, inf if unreachable, 0.0 on the diagonal. Unknown node → KeyError.
    /// One Dijkstra per source in parallel (rayon), GIL released: O(k (n + m) log n).
    #[pyo3(signature = (nodes=None))]
    fn latency_matrix<'py>(
        &self,
        py: Python<'py>,
        nodes: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyList>, Vec<Vec<f64>>)> {
        let ids: Vec<NodeId> = match nodes {
            None => (0..self.g.node_count() as NodeId).collect(),
            Some(ns) => names_of(ns)?
                .iter()
                .map(|n| self.node(n))
                .collect::<PyResult<_>>()?,
        };
        let names = PyList::new(py, ids.iter().map(|&n| self.name(py, n)))?;
        let g = &self.g;
        let m = py.detach(|| circles::latency_matrix(g, &ids));
        Ok((names, m))
    }

    /// constrained_path for each request `(src, dst, max_latency_ms[, min_bandwidth_mbps])`
    /// (max_latency_ms may be math.inf, unbounded; min bandwidth defaults to 0), in
    /// parallel (rayon) with the GIL released. All requests are validated first; a bad one
    /// raises KeyError/ValueError naming its index. Returns list[Path | None] in request
    /// order.
    #[pyo3(signature = (requests, *, weight="cost"))]
    fn batch_constrained_paths(
        &self,
        py: Python<'_>,
        requests: &Bound<'_, PyAny>,
        weight: &str,
    ) -> PyResult<Vec<Option<PyPath>>> {
        let w = self::weight(weight)?;
        let reqs = self.batch_requests(requests)?;
        let g = &self.g;
        let out = py.detach(|| batch::batch_constrained_paths(g, &reqs, w));
        Ok(out.into_iter().map(|p| self.path(py, p)).collect())
    }

    /// The answers of batch_constrained_paths(requests, weight=...) with each distinct path
    /// once: returns (index, routes), where index[i] is the position in routes of request
    /// i's path (-1: no path) and each route is (nodes, links, latency_ms, cost), nodes and
    /// links as tuples (nodes: the graph's own str objects). Requests answered by the same
    /// path share one route, its very tuples: a caller routing thousands of intents over a
    /// few hundred paths converts each path once, and can tell two intents on the same path
    /// by identity.
    #[pyo3(signature = (requests, *, weight="cost"))]
    fn batch_routes<'py>(
        &self,
        py: Python<'py>,
        requests: &Bound<'py, PyAny>,
        weight: &str,
    ) -> PyResult<(Vec<i64>, Vec<Bound<'py, PyTuple>>)> {
        let w = self::weight(weight)?;
        let reqs = self.batch_requests(requests)?;
        let g = &self.g;
        let out = py.detach(|| batch::batch_constrained_paths(g, &reqs, w));
        let mut seen: std::collections::HashMap<(NodeId, Vec<LinkId>), i64> =
            std::collections::HashMap::new();
        let mut routes = Vec::new();
        let mut index = Vec::with_capacity(out.len());
        for p in out {
            let Some(p) = p else {
                index.push(-1);
                continue;
            };
            let key = (p.nodes[0], p.links);
            if let Some(&k) = seen.get(&key) {
                index.push(k);
                continue;
            }
            let nodes = PyTuple::new(py, p.nodes.iter().map(|&n| self.name(py, n)))?;
            let links = PyTuple::new(py, key.1.iter())?;
            let route = PyTuple::new(
                py,
                [
                    nodes.into_any(),
                    links.into_any(),
                    PyFloat::new(py, p.latency_ms).into_any(),
                    PyFloat::new(py, p.cost).into_any(),
                ],
            )?;
            let k = routes.len() as i64;
            routes.push(route);
            seen.insert(key, k);
            index.push(k);
        }
        Ok((index, routes))
    }

    fn __repr__(&self) -> String {
        format!(
            "Graph(node_count={}, link_count={})",
            self.g.node_count(),
            self.g.link_count()
        )
    }
}

/// A link id for Python: -1 for [`crate::graph::NO_LINK`] (no link).
fn link_or_none(l: LinkId) -> i64 {
    if l == crate::graph::NO_LINK {
        -1
    } else {
        i64::from(l)
    }
}

/// One tree's moved next hops for Python: (node id, link id or -1).
type NextHopChanges = Vec<(NodeId, i64)>;

/// Reverse least-`weight` trees of one Graph toward many roots, kept up to date as the
/// graph's links go up and down: each update answers only the next hops that moved (see
/// pathcore's `trees` module). ReverseTrees(graph, weight="latency"); bad weight →
/// ValueError.
#[pyclass(module = "pathcore._pathcore", name = "ReverseTrees")]
pub struct PyReverseTrees {
    graph: Py<PyGraph>,
    t: ReverseTrees,
}

#[pymethods]
impl PyReverseTrees {
    #[new]
    #[pyo3(signature = (graph, weight="latency"))]
    fn new(graph: Py<PyGraph>, weight: &str) -> PyResult<PyReverseTrees> {
        Ok(PyReverseTrees {
            graph,
            t: ReverseTrees::new(self::weight(weight)?),
        })
    }

    /// Bring the trees up to date with the graph for exactly `roots` (node names): trees
    /// of roots not listed are dropped, new roots get a tree, held trees follow the links
    /// that went up or down since the last update. Returns [(root, [(node id, next-hop link
    /// id)])] for every listed root whose tree changed, in node-id order of roots and of
    /// nodes: the nodes whose next hop toward root moved (-1: it no longer reaches root);
    /// for a new root every node that reaches it (also when none does). Next hops and ties are those of
    /// shortest_path_arrays(root, weight, reverse=True). Unknown root → KeyError. Trees a
    /// change cannot touch are kept, a node joining one as a leaf is one entry, the others
    /// are recomputed in parallel with the GIL released.
    fn update<'py>(
        &mut self,
        py: Python<'py>,
        roots: &Bound<'py, PyAny>,
    ) -> PyResult<Vec<(Py<PyString>, NextHopChanges)>> {
        let graph = self.graph.bind(py).try_borrow()?;
        let ids = names_of(roots)?
            .iter()
            .map(|r| graph.node(r))
            .collect::<PyResult<Vec<NodeId>>>()?;
        let g = &graph.g;
        let t = &mut self.t;
        let changes = py.detach(|| t.update(g, &ids));
        Ok(changes
            .into_iter()
            .map(|(r, moved)| {
                let moved = moved
                    .into_iter()
                    .map(|(n, l)| (n, link_or_none(l)))
                    .collect();
                (graph.names[r as usize].clone_ref(py), moved)
            })
            .collect())
    }

    /// The next-hop link id of every node (by node id) toward `root` as of the last
    /// update, -1 for root and nodes that do not reach it. Root not held (never listed in
    /// an update, or dropped) → KeyError.
    fn next_hops(&self, py: Python<'_>, root: &str) -> PyResult<Vec<i64>> {
        let graph = self.graph.bind(py).try_borrow()?;
        let r = graph.node(root)?;
        let next = self
            .t
            .next_hops(r)
            .ok_or_else(|| PyKeyError::new_err(format!("no tree toward {root:?}")))?;
        Ok(next.iter().copied().map(link_or_none).collect())
    }

    /// The roots held, by name, in node-id order.
    fn roots(&self, py: Python<'_>) -> PyResult<Vec<Py<PyString>>> {
        let graph = self.graph.bind(py).try_borrow()?;
        Ok(self
            .t
            .roots()
            .into_iter()
            .map(|r| graph.names[r as usize].clone_ref(py))
            .collect())
    }
}

/// An OXM value as `ofwire` takes it: an int or a str (exactly: not a bool or a subclass),
/// else None.
fn oxm_value<'a>(value: &'a Bound<'_, PyAny>) -> PyResult<Option<ofwire::Value<'a>>> {
    Ok(if value.is_exact_instance_of::<PyInt>() {
        value.extract::<i128>().ok().map(ofwire::Value::Int)
    } else if value.is_exact_instance_of::<PyString>() {
        Some(ofwire::Value::Str(value.cast::<PyString>()?.to_str()?))
    } else {
        None
    })
}

/// Call `f` with the (name, value) pairs of the tuple `fields`; None (without calling it)
/// when `fields` is not a tuple of such pairs `ofwire` takes.
fn with_fields<'py, T>(
    fields: &Bound<'py, PyAny>,
    f: impl FnOnce(&[(&str, ofwire::Value<'_>)]) -> Option<T>,
) -> PyResult<Option<T>> {
    let Ok(fields) = fields.cast::<PyTuple>() else {
        return Ok(None);
    };
    let mut held: Vec<(Bound<'py, PyString>, Bound<'py, PyAny>)> = Vec::with_capacity(fields.len());
    for item in fields.iter() {
        let Ok(pair) = item.cast_into::<PyTuple>() else {
            return Ok(None);
        };
        if pair.len() != 2 {
            return Ok(None);
        }
        let Ok(name) = pair.get_item(0)?.cast_into::<PyString>() else {
            return Ok(None);
        };
        held.push((name, pair.get_item(1)?));
    }
    let mut items = Vec::with_capacity(held.len());
    for (name, value) in &held {
        let Some(value) = oxm_value(value)? else {
            return Ok(None);
        };
        items.push((name.to_str()?, value));
    }
    Ok(f(&items))
}

/// The OXM TLV of one unmasked match field (`ofwire`), None when os-ken must encode it.
#[pyfunction]
fn pack_oxm<'py>(
    py: Python<'py>,
    name: &str,
    value: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    Ok(oxm_value(value)?
        .and_then(|v| ofwire::oxm(name, &v))
        .map(|(_, tlv)| PyBytes::new(py, &tlv)))
}

/// The `ofp_match` of `fields`, a tuple of (name, value) pairs (`ofwire`), None when os-ken
/// must encode it.
#[pyfunction]
fn pack_match<'py>(
    py: Python<'py>,
    fields: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    Ok(with_fields(fields, ofwire::match_bytes)?.map(|m| PyBytes::new(py, &m)))
}

/// The wire bytes of a FlowMod inside an ONF bundle-add (`ofwire`): header `xid`, the
/// FlowMod's 40 bytes between header and match (`fixed`), its match from `fields` (a tuple
/// of (name, value) pairs), its `instructions` bytes; None when os-ken must serialise it.
#[pyfunction]
fn pack_bundle_flowmod<'py>(
    py: Python<'py>,
    xid: u32,
    bundle_id: u32,
    bundle_flags: u16,
    fixed: &[u8],
    fields: &Bound<'py, PyAny>,
    instructions: &[u8],
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    Ok(with_fields(fields, |items| {
        ofwire::bundle_flowmod(xid, bundle_id, bundle_flags, fixed, items, instructions)
    })?
    .map(|out| PyBytes::new(py, &out)))
}

#[pymodule]
fn _pathcore(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pack_bundle_flowmod, m)?)?;
    m.add_function(wrap_pyfunction!(pack_match, m)?)?;
    m.add_function(wrap_pyfunction!(pack_oxm, m)?)?;
    m.add_class::<PyGraph>()?;
    m.add_class::<PyPath>()?;
    m.add_class::<PyLink>()?;
    m.add_class::<PyReverseTrees>()?;
    m.add_class::<crate::python_tunnels::PyTunnelTable>()?;
    Ok(())
}
