//! pathcore: the path-computation engine of the CPN controller.
//!
//! Plain-Rust algorithm modules (no Python types) over a compact directed multigraph with
//! per-link latency, bandwidth, residual bandwidth, cost and up/down state:
//! [`graph`] (the graph, paths, filters), [`dijkstra`] (shortest paths),
//! [`constrained`] (exact latency-constrained least-cost path), [`ksp`] (k shortest loopless
//! paths with a latency bound), [`disjoint`] (Suurballe link- and node-disjoint pairs),
//! [`circles`] (latency circles, all-pairs latency matrix, batch queries in parallel).
//! The optional `python` feature adds the PyO3 bindings (module `pathcore._pathcore`).

pub mod circles;
pub mod constrained;
pub mod dijkstra;
pub mod disjoint;
pub mod graph;
pub mod ksp;

#[cfg(feature = "python")]
mod python;

pub use graph::{Error, Filter, Graph, Link, LinkId, LinkSpec, NodeId, Path, Weight};
