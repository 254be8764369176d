//! pathcore: the path-computation engine of the CPN controller.
//!
//! Plain-Rust algorithm modules (no Python types) over a compact directed multigraph with
//! per-link latency, bandwidth, residual bandwidth, cost and up/down state, one module per
//! algorithm family:
//! [`graph`] (the graph and its updates, paths, filters), [`shortest_path`] (least-weight
//! paths, distances, next-hop trees), [`constrained`] (exact latency-constrained
//! least-cost path), [`k_shortest`] (k shortest loopless paths with a latency bound),
//! [`disjoint`] (Suurballe link- and node-disjoint pairs), [`circles`] (latency circles,
//! all-pairs latency matrix), [`batch`] (constrained queries in parallel), [`trees`]
//! (reverse trees toward many roots kept up to date, answering what moved).
//! The searches share one heap key ([`min_scored::MinScored`]) and one search machinery
//! with one predecessor walk ([`search`]).
//! Beside the engine, [`ofwire`] packs the controller's most frequent OpenFlow message (a
//! FlowMod in a bundle-add): pure encoding, no I/O, here because it is the controller's
//! one other hot loop and this is its one native extension.
//! The optional `python` feature adds the PyO3 bindings (module `pathcore._pathcore`).

pub mod batch;
pub mod circles;
pub mod constrained;
pub mod disjoint;
pub mod graph;
pub mod k_shortest;
pub mod min_scored;
pub mod ofwire;
pub mod search;
pub mod shortest_path;
pub mod trees;
pub mod tunnels;

#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_tunnels;

pub use graph::{Error, Filter, Graph, Link, LinkId, LinkSpec, NodeId, Path, Weight};
