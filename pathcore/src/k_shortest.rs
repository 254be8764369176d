//! k shortest loopless paths (Yen's algorithm) with an optional latency bound.
//!
//! Yen partitions the loopless paths not yet output by their deviation from the last
//! output path: for spur node i of that path, paths that share its first i links (the
//! root), avoid the root's other nodes, and do not continue with the next link of any
//! output path sharing that root. With a latency bound, the best *feasible* path of each
//! part is found by the exact constrained search ([`crate::constrained`]) from the spur
//! node with the remaining budget `bound - latency(root)`; since weight and latency are
//! additive, the best feasible path of the part is root + that spur path. So the paths
//! come out as the k best feasible loopless paths in nondecreasing weight (ties: less
//! latency, fewer hops, then link ids). Paths over different parallel links are different
//! paths. The spur searches are guided by the exact weight and latency to dst in the whole
//! graph (reverse Dijkstras, once per call), which stay consistent lower bounds when links
//! and nodes are excluded: A* without a bound, the constrained label search with one.
//! Cost: O(k·L) spur searches for paths of L links, each O((n + m) log n) at worst without
//! a bound (the label search is worst-case exponential, in practice small).
//!
//! ```
//! use pathcore::graph::{Filter, Graph, Weight};
//! use pathcore::k_shortest::k_shortest_paths;
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b"]).unwrap();
//! g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
//! g.add_link(0, 1, 2.0, 10.0, 1.0, true).unwrap(); // parallel
//! g.add_link(0, 1, 9.0, 10.0, 1.0, true).unwrap();
//! let ps = k_shortest_paths(&g, 0, 1, 5, Weight::Latency, 5.0, &Filter::new());
//! assert_eq!(ps.iter().map(|p| p.latency_ms).collect::<Vec<_>>(), vec![1.0, 2.0]);
//! ```

use std::collections::HashSet;

use crate::constrained::{constrained_path, label_search, Query, LABELS};
use crate::graph::{slack, Filter, Graph, NodeId, Path, Weight};
use crate::search::{Direction, FWD, REV_A};

/// Up to `k` loopless paths src→dst of least `weight` with latency ≤ `max_latency_ms`
/// (relative slack 1e-9; `+inf` = unbounded), over links allowed by `filter`, in
/// nondecreasing weight. Fewer if fewer exist; empty if none (or `k == 0`).
pub fn k_shortest_paths(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    k: usize,
    weight: Weight,
    max_latency_ms: f64,
    filter: &Filter,
) -> Vec<Path> {
    let mut out: Vec<Path> = Vec::new();
    if k == 0 {
        return out;
    }
    let Some(first) = constrained_path(g, src, dst, max_latency_ms, weight, filter) else {
        return out;
    };
    out.push(first);
    if src == dst {
        return out;
    }
    let bound = slack(max_latency_ms);
    // Spur searches are guided by the exact weight (and latency) to dst in the whole
    // graph, computed once: excluding links and nodes only lengthens paths, so these stay
    // consistent lower bounds. Unbounded: A*; bounded: the constrained label search.
    let to_dst = |w: Weight, cut: f64| -> Vec<f64> {
        REV_A.with(|t| {
            let mut t = t.borrow_mut();
            t.run(
                g,
                dst,
                Direction::Reverse,
                w,
                Weight::Latency,
                filter,
                cut,
                |_, _| true,
                |_| false,
            );
            (0..g.node_count() as NodeId)
                .map(|n| t.st.get(n).a)
                .collect()
        })
    };
    let lb_w = to_dst(weight, f64::INFINITY);
    let lb_lat = if bound == f64::INFINITY {
        Vec::new()
    } else {
        to_dst(Weight::Latency, bound)
    };
    let mut seen: HashSet<Vec<u32>> = HashSet::new();
    seen.insert(out[0].links.clone());
    let mut cands: Vec<Path> = Vec::new();
    while out.len() < k {
        let last = out.last().unwrap().clone();
        let mut root_lat = 0.0;
        for i in 0..last.links.len() {
            let spur = last.nodes[i];
            let root = &last.links[..i];
            let mut f = filter.clone();
            for &n in &last.nodes[..i] {
                f.exclude_node(n);
            }
            for p in &out {
                if p.links.len() > i && &p.links[..i] == root {
                    f.exclude_link(p.links[i]);
                }
            }
            let spur_path = if bound == f64::INFINITY {
                FWD.with(|t| t.borrow_mut().astar(g, spur, dst, weight, &f, &lb_w))
            } else {
                LABELS.with(|l| {
                    let q = Query {
                        g,
                        src: spur,
                        dst,
                        bound: bound - root_lat,
                        weight,
                        filter: &f,
                    };
                    label_search(
                        q,
                        |v| lb_w[v as usize],
                        |v| lb_lat[v as usize],
                        None,
                        &mut l.borrow_mut(),
                    )
                })
            };
            if let Some(sp) = spur_path {
                let mut links = root.to_vec();
                links.extend_from_slice(&sp.links);
                if !seen.contains(&links) {
                    let p = Path::from_links(g, src, links);
                    if p.latency_ms <= bound {
                        seen.insert(p.links.clone());
                        cands.push(p);
                    }
                }
            }
            root_lat += g.links[last.links[i] as usize].latency_ms;
        }
        if cands.is_empty() {
            break;
        }
        let best = (0..cands.len())
            .min_by(|&a, &b| cands[a].order_key_cmp(&cands[b], weight))
            .unwrap();
        out.push(cands.swap_remove(best));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{all_simple_paths, random_graph, Rng};
    use crate::graph::LinkId;

    #[test]
    fn matches_brute_force() {
        let mut rng = Rng(5);
        for _ in 0..800 {
            let n = 2 + rng.below(7) as u32;
            let m = rng.below(20) as u32;
            let g = random_graph(&mut rng, n, m);
            let (s, d) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
            let max_lat = if rng.below(3) == 0 {
                f64::INFINITY
            } else {
                rng.below(12) as f64 * 0.75
            };
            let k = 1 + rng.below(6) as usize;
            for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                let got = k_shortest_paths(&g, s, d, k, w, max_lat, &Filter::new());
                let mut want: Vec<f64> = all_simple_paths(&g, s, d, &|l| g.links[l as usize].up)
                    .into_iter()
                    .filter(|p| p.latency_ms <= max_lat + 1e-9)
                    .map(|p| p.weight(w))
                    .collect();
                want.sort_by(f64::total_cmp);
                want.truncate(k);
                assert_eq!(got.len(), want.len());
                for (p, x) in got.iter().zip(&want) {
                    assert!((p.weight(w) - x).abs() < 1e-9);
                    assert!(p.latency_ms <= max_lat + 1e-9);
                }
                let distinct: HashSet<_> = got.iter().map(|p| p.links.clone()).collect();
                assert_eq!(distinct.len(), got.len());
            }
        }
    }

    #[test]
    fn paths_come_in_order_and_meet_the_bound() {
        // a→d over b (2 ms), over c (3 ms), direct (6 ms), and over b then c (4 ms).
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c", "d"]).unwrap();
        let ab = g.add_link(0, 1, 1.0, 10.0, 1.0, false).unwrap();
        let bd = g.add_link(1, 3, 1.0, 10.0, 1.0, false).unwrap();
        let ac = g.add_link(0, 2, 1.5, 10.0, 1.0, false).unwrap();
        let cd = g.add_link(2, 3, 1.5, 10.0, 1.0, false).unwrap();
        let ad = g.add_link(0, 3, 6.0, 10.0, 1.0, false).unwrap();
        let bc = g.add_link(1, 2, 1.5, 10.0, 1.0, false).unwrap();
        let f = Filter::new();
        let links = |k, w, bound| -> Vec<Vec<LinkId>> {
            k_shortest_paths(&g, 0, 3, k, w, bound, &f)
                .into_iter()
                .map(|p| p.links)
                .collect()
        };
        let all = vec![vec![ab, bd], vec![ac, cd], vec![ab, bc, cd], vec![ad]];
        assert_eq!(links(10, Weight::Latency, f64::INFINITY), all);
        assert_eq!(links(2, Weight::Latency, f64::INFINITY), all[..2].to_vec());
        assert_eq!(links(10, Weight::Latency, 4.0), all[..3].to_vec());
        assert_eq!(links(10, Weight::Latency, 1.0), Vec::<Vec<LinkId>>::new());
        assert_eq!(
            links(0, Weight::Latency, f64::INFINITY),
            Vec::<Vec<LinkId>>::new()
        );
        // By hops the direct link is first; ties of two hops go to less latency.
        let by_hops = links(3, Weight::Hops, f64::INFINITY);
        assert_eq!(by_hops, vec![vec![ad], vec![ab, bd], vec![ac, cd]]);
    }
}
