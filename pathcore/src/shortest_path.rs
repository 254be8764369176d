//! Shortest paths: least-weight path between two nodes (bidirectional Dijkstra), distances
//! from or to one node, and the next-hop tree toward one node.
//!
//! Every search here runs on the shared machinery of [`crate::search`]: labels ordered by
//! `(weight, latency, hops)`, so among equally short paths the one with less latency, then
//! fewer hops, wins and the answer is deterministic; per-thread scratch reused between
//! queries, so a query allocates only its result.
//!
//! ```
//! use pathcore::graph::{Filter, Graph, Weight};
//! use pathcore::shortest_path::shortest_path;
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b", "c"]).unwrap();
//! g.add_link(0, 1, 1.0, 10.0, 5.0, true).unwrap();
//! g.add_link(1, 2, 1.0, 10.0, 5.0, true).unwrap();
//! g.add_link(0, 2, 3.0, 10.0, 1.0, true).unwrap();
//! let p = shortest_path(&g, 0, 2, Weight::Latency, &Filter::new()).unwrap();
//! assert_eq!(p.nodes, vec![0, 1, 2]);
//! let p = shortest_path(&g, 0, 2, Weight::Cost, &Filter::new()).unwrap();
//! assert_eq!(p.nodes, vec![0, 2]);
//! ```

use crate::graph::{Filter, Graph, LinkId, NodeId, Path, Weight, NO_LINK};
pub use crate::search::Direction;
use crate::search::{key_add, key_less, Key, NodeState, Tree, BIDI_R, FWD};

/// Least-`weight` path src→dst over links allowed by `filter`; ties go to less latency,
/// then fewer hops. `None` if dst is unreachable. Bidirectional Dijkstra (a forward search
/// from src and a reverse one from dst, each expanding the side with the smaller frontier,
/// stopped when the two least keys sum to at least the best meeting found), so it settles
/// about half the nodes a one-sided search would: O((n + m) log n).
pub fn shortest_path(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    weight: Weight,
    filter: &Filter,
) -> Option<Path> {
    if !filter.node_ok(src) || !filter.node_ok(dst) {
        return None;
    }
    if src == dst {
        return Some(Path::trivial(src));
    }
    FWD.with(|f| {
        BIDI_R.with(|r| {
            bidirectional(
                g,
                src,
                dst,
                weight,
                filter,
                &mut f.borrow_mut(),
                &mut r.borrow_mut(),
            )
        })
    })
}

fn bidirectional(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    weight: Weight,
    filter: &Filter,
    fw: &mut Tree,
    rv: &mut Tree,
) -> Option<Path> {
    const INF: Key = (f64::INFINITY, f64::INFINITY, u32::MAX);
    fw.start(g.node_count(), src, 0.0);
    rv.start(g.node_count(), dst, 0.0);
    let mut best: Key = INF;
    let mut meet: LinkId = NO_LINK;
    while let (Some(tf), Some(tr)) = (fw.top(), rv.top()) {
        if !key_less(key_add(tf, tr), best) {
            break;
        }
        let forward = fw.heap.len() <= rv.heap.len();
        let (me, other, adj) = if forward {
            (&mut *fw, &*rv, &g.out_adj)
        } else {
            (&mut *rv, &*fw, &g.in_adj)
        };
        let (node, s) = me.settle_next()?;
        for a in &adj[node as usize] {
            if !filter.arc_ok(a) {
                continue;
            }
            let y = a.other;
            let nk: Key = (s.a + weight.of_arc(a), s.b + a.latency_ms, s.hops + 1);
            let ys = me.st.get(y);
            if !ys.done && key_less(nk, ys.key()) {
                me.label(y, nk, a.lid, nk.0);
            }
            let os = other.st.get(y);
            if os.a.is_finite() {
                let total = key_add(nk, os.key());
                if key_less(total, best) {
                    best = total;
                    meet = a.lid;
                }
            }
        }
    }
    if meet == NO_LINK {
        return None;
    }
    // src → u by forward preds, the meeting link u→v, v → dst by reverse preds.
    let m = &g.links[meet as usize];
    let mut links = fw.links_from_root(g, src, m.u);
    links.push(meet);
    links.extend(rv.links_to_root(g, dst, m.v));
    Some(Path::from_links(g, src, links))
}

/// As [`shortest_path`], but `None` unless the path's total `weight` is at most `bound`.
pub fn bounded_shortest_path(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    weight: Weight,
    filter: &Filter,
    bound: f64,
) -> Option<Path> {
    shortest_path(g, src, dst, weight, filter).filter(|p| p.weight(weight) <= bound)
}

/// Distances by `weight` from `src` (or to it, for [`Direction::Reverse`]) to every node
/// within `bound`, as `(node, distance)` in order of settling (nondecreasing distance).
/// O((n + m) log n).
pub fn distances(
    g: &Graph,
    src: NodeId,
    dir: Direction,
    weight: Weight,
    filter: &Filter,
    bound: f64,
) -> Vec<(NodeId, f64)> {
    settled(g, src, dir, weight, filter, bound, |n, s| (n, s.a))
}

/// Next hops toward `target`: for every other node that can reach it over links allowed
/// by `filter`, the first link of a least-`weight` path from that node to `target` (ties:
/// less latency, then fewer hops, as [`shortest_path`]), as `(node, link)` in order of
/// settling (nondecreasing distance to `target`). One reverse Dijkstra from `target`:
/// O((n + m) log n).
///
/// The next hops form a tree rooted at `target`, also with zero-weight links and ties: a
/// node's link leads to a node settled before it, so following next hops from any node
/// reaches `target` in fewer than n steps.
///
/// ```
/// use pathcore::graph::{Filter, Graph, Weight};
/// use pathcore::shortest_path::shortest_path_tree;
/// let mut g = Graph::new();
/// g.add_nodes(&["a", "b", "c"]).unwrap();
/// let ab = g.add_link(0, 1, 1.0, 10.0, 1.0, false).unwrap();
/// let bc = g.add_link(1, 2, 1.0, 10.0, 1.0, false).unwrap();
/// let ac = g.add_link(0, 2, 3.0, 10.0, 1.0, false).unwrap();
/// let t = shortest_path_tree(&g, 2, Weight::Latency, &Filter::new());
/// assert_eq!(t, vec![(1, bc), (0, ab)]);
/// let t = shortest_path_tree(&g, 2, Weight::Cost, &Filter::new());
/// assert_eq!(t, vec![(1, bc), (0, ac)]);
/// ```
pub fn shortest_path_tree(
    g: &Graph,
    target: NodeId,
    weight: Weight,
    filter: &Filter,
) -> Vec<(NodeId, LinkId)> {
    let mut hops = settled(
        g,
        target,
        Direction::Reverse,
        weight,
        filter,
        f64::INFINITY,
        |n, s| (n, s.pred),
    );
    // Every settled node other than the root was labelled from a settled neighbour, so its
    // pred is set (reachability as in shortest_path, even if a sum overflows); the root
    // has none.
    hops.retain(|&(n, _)| n != target);
    hops
}

/// Distances and predecessor links of one full Dijkstra by `weight` from `root` (or toward
/// it, for [`Direction::Reverse`]) over links allowed by `filter`, as two arrays indexed by
/// node id: `dist[n]` (`inf` where `n` is not reached) and `pred[n]`, the last link of a
/// least-`weight` path root→n (for `Reverse`: the first link of one n→root, i.e. n's next
/// hop toward `root`), [`NO_LINK`] for `root` and unreached nodes. Ties as
/// [`shortest_path`], so for `Reverse` the `pred` entries are the next hops of
/// [`shortest_path_tree`]. Filling arrays instead of a settle-ordered list lets a caller
/// convert the answer to Python without hashing a key per node. O((n + m) log n).
///
/// ```
/// use pathcore::graph::{Filter, Graph, Weight, NO_LINK};
/// use pathcore::shortest_path::{shortest_path_arrays, Direction};
/// let mut g = Graph::new();
/// g.add_nodes(&["a", "b", "c", "d"]).unwrap();
/// let ab = g.add_link(0, 1, 1.0, 10.0, 1.0, false).unwrap();
/// let bc = g.add_link(1, 2, 2.0, 10.0, 1.0, false).unwrap();
/// let (dist, pred) = shortest_path_arrays(&g, 0, Direction::Forward, Weight::Latency, &Filter::new());
/// assert_eq!(dist, vec![0.0, 1.0, 3.0, f64::INFINITY]);
/// assert_eq!(pred, vec![NO_LINK, ab, bc, NO_LINK]);
/// let (dist, pred) = shortest_path_arrays(&g, 2, Direction::Reverse, Weight::Latency, &Filter::new());
/// assert_eq!(dist, vec![3.0, 2.0, 0.0, f64::INFINITY]);
/// assert_eq!(pred, vec![ab, bc, NO_LINK, NO_LINK]);
/// ```
pub fn shortest_path_arrays(
    g: &Graph,
    root: NodeId,
    dir: Direction,
    weight: Weight,
    filter: &Filter,
) -> (Vec<f64>, Vec<LinkId>) {
    FWD.with(|t| {
        let mut t = t.borrow_mut();
        t.run(
            g,
            root,
            dir,
            weight,
            Weight::Latency,
            filter,
            f64::INFINITY,
            |_, _| true,
            |_| false,
        );
        // Unbounded: every labelled node was settled, so its state is final.
        let n = g.node_count() as NodeId;
        (0..n).map(|v| t.st.get(v)).map(|s| (s.a, s.pred)).unzip()
    })
}

/// Dijkstra by `weight` (ties: less latency, then fewer hops) from `root`, or toward it for
/// [`Direction::Reverse`], over links allowed by `filter`, cut at `bound`: `pick(node,
/// state)` of every settled node, in order of settling.
fn settled<T>(
    g: &Graph,
    root: NodeId,
    dir: Direction,
    weight: Weight,
    filter: &Filter,
    bound: f64,
    pick: impl Fn(NodeId, NodeState) -> T,
) -> Vec<T> {
    FWD.with(|t| {
        let mut t = t.borrow_mut();
        let mut order = Vec::new();
        t.run(
            g,
            root,
            dir,
            weight,
            Weight::Latency,
            filter,
            bound,
            |_, _| true,
            |n| {
                order.push(n);
                false
            },
        );
        order.into_iter().map(|n| pick(n, t.st.get(n))).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{all_simple_paths, random_graph, Rng};

    /// One-sided Dijkstra from src stopped at dst over all up links (the reference for
    /// [`shortest_path`]).
    fn unidirectional_shortest_path(
        g: &Graph,
        src: NodeId,
        dst: NodeId,
        w: Weight,
    ) -> Option<Path> {
        FWD.with(|t| {
            let mut t = t.borrow_mut();
            t.run(
                g,
                src,
                Direction::Forward,
                w,
                Weight::Latency,
                &Filter::new(),
                f64::INFINITY,
                |_, _| true,
                |n| n == dst,
            );
            t.path_from_root(g, src, dst)
        })
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = Rng(7);
        for _ in 0..300 {
            let n = 2 + rng.below(7) as u32;
            let m = rng.below(16) as u32;
            let g = random_graph(&mut rng, n, m);
            let (s, d) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
            for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                let got = shortest_path(&g, s, d, w, &Filter::new());
                let all = all_simple_paths(&g, s, d, &|l| g.links[l as usize].up);
                let best = all
                    .iter()
                    .map(|p| p.weight(w))
                    .fold(f64::INFINITY, f64::min);
                match got {
                    None => assert!(all.is_empty()),
                    Some(p) => {
                        assert!((p.weight(w) - best).abs() < 1e-9);
                        assert_eq!(p.nodes[0], s);
                        assert_eq!(*p.nodes.last().unwrap(), d);
                        assert!(p.links.iter().all(|&l| g.links[l as usize].up));
                    }
                }
            }
        }
    }

    #[test]
    fn bidirectional_equals_one_sided() {
        let mut rng = Rng(17);
        for _ in 0..400 {
            let n = 2 + rng.below(40) as u32;
            let m = rng.below(4 * n as u64) as u32;
            let g = random_graph(&mut rng, n, m);
            let (s, d) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
            for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                let a = shortest_path(&g, s, d, w, &Filter::new());
                let b = unidirectional_shortest_path(&g, s, d, w);
                match (a, b) {
                    (None, None) => {}
                    (Some(a), Some(b)) => {
                        // Same lexicographic (weight, latency, hops) optimum.
                        assert!((a.weight(w) - b.weight(w)).abs() < 1e-9);
                        assert!((a.latency_ms - b.latency_ms).abs() < 1e-9);
                        assert_eq!(a.hops, b.hops);
                    }
                    (a, b) => panic!("{a:?} vs {b:?}"),
                }
            }
        }
    }

    #[test]
    fn reverse_distances_agree() {
        let mut rng = Rng(11);
        let g = random_graph(&mut rng, 30, 90);
        for d in 0..30 {
            let rev = distances(
                &g,
                d,
                Direction::Reverse,
                Weight::Cost,
                &Filter::new(),
                f64::INFINITY,
            );
            for (s, dist) in rev {
                let p = shortest_path(&g, s, d, Weight::Cost, &Filter::new()).unwrap();
                assert!((p.cost - dist).abs() < 1e-9);
            }
        }
    }

    /// Follow next hops from `n` to `target`; panics on a loop or a dead end.
    fn walk(
        g: &Graph,
        next: &std::collections::HashMap<NodeId, LinkId>,
        n: NodeId,
        target: NodeId,
    ) -> Vec<LinkId> {
        let mut links = Vec::new();
        let mut cur = n;
        while cur != target {
            assert!(links.len() < g.node_count(), "next hops loop from {n}");
            let l = next[&cur];
            let link = &g.links[l as usize];
            assert_eq!(link.u, cur);
            assert!(link.up);
            links.push(l);
            cur = link.v;
        }
        links
    }

    #[test]
    fn tree_matches_shortest_paths() {
        let mut rng = Rng(23);
        for _ in 0..300 {
            let n = 2 + rng.below(30) as u32;
            let m = rng.below(4 * n as u64) as u32;
            let g = random_graph(&mut rng, n, m);
            let d = rng.below(n as u64) as u32;
            for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                let tree = shortest_path_tree(&g, d, w, &Filter::new());
                let next: std::collections::HashMap<_, _> = tree.iter().copied().collect();
                assert_eq!(next.len(), tree.len(), "a node listed twice");
                assert!(!next.contains_key(&d));
                let mut last = 0.0;
                for &(s, _) in &tree {
                    let p = shortest_path(&g, s, d, w, &Filter::new()).unwrap();
                    let walked = Path::from_links(&g, s, walk(&g, &next, s, d));
                    assert!((walked.weight(w) - p.weight(w)).abs() < 1e-9);
                    assert!(walked.weight(w) >= last, "not in order of distance");
                    last = walked.weight(w);
                }
                for s in 0..n {
                    let reaches = shortest_path(&g, s, d, w, &Filter::new()).is_some();
                    assert_eq!(next.contains_key(&s), reaches && s != d);
                }
            }
        }
    }

    #[test]
    fn arrays_agree_with_distances_and_tree() {
        let mut rng = Rng(29);
        for _ in 0..300 {
            let n = 1 + rng.below(30) as u32;
            let m = rng.below(4 * n as u64) as u32;
            let g = random_graph(&mut rng, n, m);
            let r = rng.below(n as u64) as u32;
            let mut f = Filter::new();
            if rng.below(4) == 0 {
                f.exclude_node(rng.below(n as u64) as u32);
            }
            for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                for dir in [Direction::Forward, Direction::Reverse] {
                    let (dist, pred) = shortest_path_arrays(&g, r, dir, w, &f);
                    assert_eq!((dist.len(), pred.len()), (n as usize, n as usize));
                    let mut want = vec![f64::INFINITY; n as usize];
                    for (v, d) in distances(&g, r, dir, w, &f, f64::INFINITY) {
                        want[v as usize] = d;
                    }
                    assert_eq!(dist, want);
                    for v in 0..n {
                        let p = pred[v as usize];
                        if v == r || !dist[v as usize].is_finite() {
                            assert_eq!(p, NO_LINK);
                            continue;
                        }
                        // The link continues a least path: its far end's distance plus the
                        // link's weight is v's distance.
                        let l = &g.links[p as usize];
                        let (near, far) = match dir {
                            Direction::Forward => (l.v, l.u),
                            Direction::Reverse => (l.u, l.v),
                        };
                        assert_eq!(near, v);
                        let via = dist[far as usize] + w.of(l);
                        assert!((via - dist[v as usize]).abs() < 1e-9);
                    }
                }
                let (_, next) = shortest_path_arrays(&g, r, Direction::Reverse, w, &Filter::new());
                for (v, l) in shortest_path_tree(&g, r, w, &Filter::new()) {
                    assert_eq!(next[v as usize], l, "not the tree's next hop");
                }
            }
        }
    }

    #[test]
    fn tree_without_loops_on_zero_weights_and_ties() {
        // A zero-cost bidirectional ring a-b-c-d around the target's neighbours, parallel
        // zero-cost links, and a link that is down: every cost tie is possible.
        let mut g = Graph::new();
        g.add_nodes(&["t", "a", "b", "c", "d", "e"]).unwrap();
        for (u, v) in [(1, 2), (2, 3), (3, 4), (4, 1), (1, 2)] {
            g.add_link(u, v, 0.0, 1.0, 0.0, true).unwrap();
        }
        g.add_link(1, 0, 0.0, 1.0, 0.0, false).unwrap();
        g.add_link(3, 0, 0.0, 1.0, 0.0, false).unwrap();
        let down = g.add_link(5, 0, 1.0, 1.0, 0.0, false).unwrap();
        g.set_link_up(down, false, false).unwrap();
        for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
            let tree = shortest_path_tree(&g, 0, w, &Filter::new());
            let next: std::collections::HashMap<_, _> = tree.iter().copied().collect();
            let mut keys: Vec<_> = next.keys().copied().collect();
            keys.sort();
            assert_eq!(keys, vec![1, 2, 3, 4], "e reaches t only over a down link");
            for s in 1..5 {
                let walked = Path::from_links(&g, s, walk(&g, &next, s, 0));
                assert_eq!(
                    walked.weight(w),
                    match (w, s % 2) {
                        (Weight::Hops, 0) => 2.0, // b and d: one ring link, then t
                        (Weight::Hops, _) => 1.0,
                        _ => 0.0,
                    }
                );
            }
        }
    }

    #[test]
    fn trivial_and_bound() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b"]).unwrap();
        g.add_link(0, 1, 2.0, 1.0, 1.0, true).unwrap();
        let p = shortest_path(&g, 0, 0, Weight::Latency, &Filter::new()).unwrap();
        assert_eq!((p.nodes.len(), p.hops, p.latency_ms), (1, 0, 0.0));
        assert!(bounded_shortest_path(&g, 0, 1, Weight::Latency, &Filter::new(), 1.0).is_none());
        g.set_link_up(0, false, false).unwrap();
        assert!(shortest_path(&g, 0, 1, Weight::Latency, &Filter::new()).is_none());
        assert!(shortest_path(&g, 1, 0, Weight::Latency, &Filter::new()).is_some());
    }

    /// The diamond s→a→t (2 ms), s→b→t (4 ms), s→t (9 ms), all one-way.
    fn diamond() -> (Graph, [LinkId; 5]) {
        let mut g = Graph::new();
        g.add_nodes(&["s", "a", "b", "t"]).unwrap();
        let sa = g.add_link(0, 1, 1.0, 10.0, 1.0, false).unwrap();
        let at = g.add_link(1, 3, 1.0, 10.0, 1.0, false).unwrap();
        let sb = g.add_link(0, 2, 2.0, 10.0, 1.0, false).unwrap();
        let bt = g.add_link(2, 3, 2.0, 10.0, 1.0, false).unwrap();
        let st = g.add_link(0, 3, 9.0, 10.0, 5.0, false).unwrap();
        (g, [sa, at, sb, bt, st])
    }

    #[test]
    fn excluded_links_and_nodes_are_avoided() {
        let (g, [sa, at, sb, bt, st]) = diamond();
        let lat = |f: &Filter| shortest_path(&g, 0, 3, Weight::Latency, f).map(|p| p.links);
        assert_eq!(lat(&Filter::new()), Some(vec![sa, at]));
        let mut f = Filter::new();
        f.exclude_link(at);
        assert_eq!(lat(&f), Some(vec![sb, bt]));
        f.exclude_node(2);
        assert_eq!(lat(&f), Some(vec![st]));
        f.exclude_link(st);
        assert_eq!(lat(&f), None);
        // An excluded end is never reached, not even from itself.
        let mut f = Filter::new();
        f.exclude_node(3);
        assert_eq!(lat(&f), None);
        assert!(shortest_path(&g, 3, 3, Weight::Latency, &f).is_none());
        // Hops: the direct link wins unless it is excluded.
        let mut f = Filter::new();
        let hops = shortest_path(&g, 0, 3, Weight::Hops, &f).unwrap();
        assert_eq!((hops.links, hops.latency_ms), (vec![st], 9.0));
        f.exclude_link(st);
        let hops = shortest_path(&g, 0, 3, Weight::Hops, &f).unwrap();
        assert_eq!((hops.links, hops.latency_ms), (vec![sa, at], 2.0));
    }

    #[test]
    fn distances_come_nearest_first_and_stop_at_the_bound() {
        let (g, _) = diamond();
        let f = Filter::new();
        let fwd = distances(
            &g,
            0,
            Direction::Forward,
            Weight::Latency,
            &f,
            f64::INFINITY,
        );
        assert_eq!(fwd, vec![(0, 0.0), (1, 1.0), (2, 2.0), (3, 2.0)]);
        let near = distances(&g, 0, Direction::Forward, Weight::Latency, &f, 1.5);
        assert_eq!(near, vec![(0, 0.0), (1, 1.0)]);
        let to_t = distances(&g, 3, Direction::Reverse, Weight::Cost, &f, f64::INFINITY);
        assert_eq!(to_t, vec![(3, 0.0), (1, 1.0), (2, 1.0), (0, 2.0)]);
    }
}
