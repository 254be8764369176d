//! Latency circles (every node within a latency of one node) and the all-pairs latency
//! matrix.
//!
//! The matrix runs one independent search per source on the rayon pool; each worker
//! thread reuses its own search scratch.
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

use crate::graph::{slack, Filter, Graph, NodeId, Weight};
use crate::search::{Direction, FWD};
use crate::shortest_path::distances;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{random_graph, Rng};
    use crate::shortest_path::shortest_path;

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
    fn circles_and_matrix_on_a_line() {
        // a–b 1 ms, b–c 2 ms (both ways), c→d 3 ms (one way).
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c", "d"]).unwrap();
        g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
        let bc = g.add_link(1, 2, 2.0, 10.0, 1.0, true).unwrap();
        g.add_link(2, 3, 3.0, 10.0, 1.0, false).unwrap();
        assert_eq!(within_latency(&g, 0, 0.0), vec![(0, 0.0)]);
        assert_eq!(
            within_latency(&g, 0, 3.0),
            vec![(0, 0.0), (1, 1.0), (2, 3.0)]
        );
        let all = vec![(0, 0.0), (1, 1.0), (2, 3.0), (3, 6.0)];
        assert_eq!(within_latency(&g, 0, f64::INFINITY), all);
        assert_eq!(within_latency(&g, 3, f64::INFINITY), vec![(3, 0.0)]);
        let inf = f64::INFINITY;
        let m = latency_matrix(&g, &[0, 3, 2]);
        assert_eq!(
            m,
            vec![
                vec![0.0, 6.0, 3.0],
                vec![inf, 0.0, inf],
                vec![3.0, 3.0, 0.0]
            ]
        );
        // A down link cuts the circle and the matrix.
        g.set_link_up(bc, false, true).unwrap();
        assert_eq!(within_latency(&g, 0, inf), vec![(0, 0.0), (1, 1.0)]);
        assert_eq!(
            latency_matrix(&g, &[0, 2]),
            vec![vec![0.0, inf], vec![inf, 0.0]]
        );
    }
}
