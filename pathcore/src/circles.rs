//! Latency circles, the all-pairs latency matrix and batch constrained queries.
//!
//! The matrix and the batch run one independent search per source or request on the
//! rayon pool; each worker thread reuses its own search scratch.
//!
//! ```
//! use pathcore::graph::Graph;
//! use pathcore::circles::{latency_matrix, within_latency};
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b", "c"]).unwrap();
//! g.add_link(0, 1, 2.0, 10.0, 1.0, true).unwrap();
//! g.add_link(1, 2, 2.0, 10.0, 1.0, true).unwrap();
//! assert_eq!(within_latency(&g, 0, 3.0), vec![(0, 0.0), (1, 2.0)]);
//! let m = latency_matrix(&g, &[0, 2]);
//! assert_eq!(m, vec![vec![0.0, 4.0], vec![4.0, 0.0]]);
//! ```

use rayon::prelude::*;

use crate::constrained::constrained_path;
use crate::dijkstra::{distances, Direction, FWD};
use crate::graph::{slack, Filter, Graph, NodeId, Path, Weight};

/// Every node whose least latency from `src` over up links is ≤ `max_latency_ms`
/// (relative slack 1e-9), with that latency, nearest first (in the order Dijkstra settles
/// them); `src` is included with 0. O((n' + m') log n') for the n' nodes and m' links
/// inside the circle.
pub fn within_latency(g: &Graph, src: NodeId, max_latency_ms: f64) -> Vec<(NodeId, f64)> {
    distances(
        g,
        src,
        Direction::Forward,
        Weight::Latency,
        &Filter::new(),
        slack(max_latency_ms),
    )
}

/// Least latency over up links between every ordered pair of `nodes`: row i, column j is
/// nodes\[i\]→nodes\[j\] (`+inf` if unreachable, 0 on the diagonal). One Dijkstra per
/// source, stopped once all of `nodes` are settled, in parallel: O(k (n + m) log n) work
/// for k = `nodes.len()`.
pub fn latency_matrix(g: &Graph, nodes: &[NodeId]) -> Vec<Vec<f64>> {
    let mut col = vec![u32::MAX; g.node_count()];
    let mut distinct = 0usize;
    for (j, &n) in nodes.iter().enumerate() {
        if col[n as usize] == u32::MAX {
            distinct += 1;
        }
        col[n as usize] = j as u32;
    }
    let filter = Filter::new();
    nodes
        .par_iter()
        .map(|&s| {
            FWD.with(|t| {
                let mut t = t.borrow_mut();
                let mut left = distinct;
                t.run(
                    g,
                    s,
                    Direction::Forward,
                    Weight::Latency,
                    Weight::Latency,
                    &filter,
                    f64::INFINITY,
                    |_, _| true,
                    |n| {
                        if col[n as usize] != u32::MAX {
                            left -= 1;
                        }
                        left == 0
                    },
                );
                nodes.iter().map(|&n| t.st.get(n).a).collect()
            })
        })
        .collect()
}

/// One constrained request: `(src, dst, max_latency_ms, min_bandwidth_mbps)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Request {
    pub src: NodeId,
    pub dst: NodeId,
    pub max_latency_ms: f64,
    pub min_bandwidth_mbps: f64,
}

/// [`constrained_path`] for each request, in parallel; results in request order.
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
    use crate::dijkstra::shortest_path;
    use crate::graph::tests::{random_graph, Rng};

    #[test]
    fn matrix_and_circles_agree_with_dijkstra() {
        let mut rng = Rng(21);
        let g = random_graph(&mut rng, 40, 120);
        let nodes: Vec<NodeId> = vec![3, 0, 17, 3, 39];
        let m = latency_matrix(&g, &nodes);
        for (i, &s) in nodes.iter().enumerate() {
            for (j, &d) in nodes.iter().enumerate() {
                let want = shortest_path(&g, s, d, Weight::Latency, &Filter::new())
                    .map_or(f64::INFINITY, |p| p.latency_ms);
                assert!(m[i][j] == want || (m[i][j] - want).abs() < 1e-9);
            }
            let c = within_latency(&g, s, 4.0);
            for d in 0..40 {
                let want = shortest_path(&g, s, d, Weight::Latency, &Filter::new())
                    .map(|p| p.latency_ms)
                    .filter(|&x| x <= 4.0);
                let got = c.iter().find(|x| x.0 == d).map(|x| x.1);
                assert_eq!(got.is_some(), want.is_some());
            }
        }
    }

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
}
