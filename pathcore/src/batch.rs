//! Batch constrained queries: many [`constrained_path`] requests on one graph, answered in
//! parallel on the rayon pool. Each worker thread reuses its own search scratch, so the
//! batch allocates only its results; the answers are those of one-by-one calls.
//!
//! ```
//! use pathcore::batch::{batch_constrained_paths, Request};
//! use pathcore::graph::{Graph, Weight};
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b", "c"]).unwrap();
//! g.add_link(0, 2, 10.0, 100.0, 1.0, true).unwrap(); // cheap but slow
//! g.add_link(0, 1, 1.0, 100.0, 5.0, true).unwrap();
//! g.add_link(1, 2, 1.0, 100.0, 5.0, true).unwrap();
//! let req = |max_latency_ms| Request { src: 0, dst: 2, max_latency_ms, min_bandwidth_mbps: 0.0 };
//! let got = batch_constrained_paths(&g, &[req(f64::INFINITY), req(5.0), req(1.0)], Weight::Cost);
//! let nodes: Vec<_> = got.iter().map(|p| p.as_ref().map(|p| p.nodes.clone())).collect();
//! assert_eq!(nodes, vec![Some(vec![0, 2]), Some(vec![0, 1, 2]), None]);
//! ```

use rayon::prelude::*;

use crate::constrained::constrained_path;
use crate::graph::{Filter, Graph, NodeId, Path, Weight};

/// One constrained request: `(src, dst, max_latency_ms, min_bandwidth_mbps)`;
/// `max_latency_ms` may be `+inf` (unbounded).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub src: NodeId,
    pub dst: NodeId,
    pub max_latency_ms: f64,
    pub min_bandwidth_mbps: f64,
}

/// [`constrained_path`] for each request, in parallel; results in request order.
/// O(r) constrained searches for r requests, spread over the rayon pool.
pub fn batch_constrained_paths(
    g: &Graph,
    requests: &[Request],
    weight: Weight,
) -> Vec<Option<Path>> {
    requests
        .par_iter()
        .map(|r| {
            let f = Filter::new().with_min_bandwidth(r.min_bandwidth_mbps);
            constrained_path(g, r.src, r.dst, r.max_latency_ms, weight, &f)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{random_graph, Rng};
    use crate::graph::LinkId;

    #[test]
    fn batch_equals_single() {
        let mut rng = Rng(4);
        let g = random_graph(&mut rng, 30, 100);
        let reqs: Vec<Request> = (0..200)
            .map(|_| Request {
                src: rng.below(30) as u32,
                dst: rng.below(30) as u32,
                max_latency_ms: rng.below(20) as f64,
                min_bandwidth_mbps: (rng.below(3) * 10) as f64,
            })
            .collect();
        let got = batch_constrained_paths(&g, &reqs, Weight::Cost);
        for (r, p) in reqs.iter().zip(got) {
            let f = Filter::new().with_min_bandwidth(r.min_bandwidth_mbps);
            assert_eq!(
                p,
                constrained_path(&g, r.src, r.dst, r.max_latency_ms, Weight::Cost, &f)
            );
        }
    }

    #[test]
    fn each_request_gets_its_own_answer() {
        // a→c: cheap over b (4 ms, 10 Mbit/s), or direct (1 ms, cost 5).
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c"]).unwrap();
        let ab = g.add_link(0, 1, 2.0, 10.0, 1.0, true).unwrap();
        let bc = g.add_link(1, 2, 2.0, 100.0, 1.0, true).unwrap();
        let ac = g.add_link(0, 2, 1.0, 100.0, 5.0, true).unwrap();
        let req = |src, dst, max_latency_ms, min_bandwidth_mbps| Request {
            src,
            dst,
            max_latency_ms,
            min_bandwidth_mbps,
        };
        let reqs = [
            req(0, 2, f64::INFINITY, 0.0),
            req(0, 2, 3.0, 0.0),
            req(0, 2, f64::INFINITY, 50.0),
            req(0, 2, 0.5, 0.0),
            req(2, 2, 0.0, 0.0),
            req(2, 0, 4.0, 0.0),
        ];
        let got: Vec<Option<Vec<LinkId>>> = batch_constrained_paths(&g, &reqs, Weight::Cost)
            .into_iter()
            .map(|p| p.map(|p| p.links))
            .collect();
        let want = vec![
            Some(vec![ab, bc]),
            Some(vec![ac]),
            Some(vec![ac]),
            None,
            Some(vec![]),
            Some(vec![bc + 1, ab + 1]),
        ];
        assert_eq!(got, want);
        assert!(batch_constrained_paths(&g, &[], Weight::Cost).is_empty());
    }
}
