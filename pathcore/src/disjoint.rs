//! Minimum-total-weight pair of link- or node-disjoint paths (Suurballe).
//!
//! Implemented as Suurballe's algorithm in its min-cost-flow form: two augmentations of
//! successive shortest paths with Johnson potentials on a residual graph (unit capacity
//! per up link; for `node_disjoint`, every node other than src and dst is split into
//! in→out with unit capacity). The 2-unit min-cost flow is then decomposed into two paths.
//!
//! **Bidirectional links are one physical link.** A fiber carries both directions, so a
//! pair that uses u→v in one path and v→u in the other is *not* disjoint. The flow may
//! route one unit over u→v and the other over v→u only if that costs no more than not
//! using the fiber at all (non-negative weights); such opposite units are cancelled before
//! decomposition, which keeps a 2-unit flow of no greater cost. So the optimum over
//! directed links equals the optimum with the physical-link rule, and the pair returned
//! satisfies the rule. Links added as two separate one-way links are two physical links.
//! Cycles left by the decomposition are cut out, so both paths are simple.
//!
//! Cost: O(n + m) to build the residual graph plus two Dijkstras, O((n + m) log n).
//!
//! ```
//! use pathcore::graph::{Filter, Graph, Weight};
//! use pathcore::disjoint::disjoint_paths;
//! let mut g = Graph::new();
//! g.add_nodes(&["s", "a", "b", "t"]).unwrap();
//! for (u, v) in [(0, 1), (1, 3), (0, 2), (2, 3), (1, 2)] {
//!     g.add_link(u, v, 1.0, 10.0, 1.0, true).unwrap();
//! }
//! let (p, q) = disjoint_paths(&g, 0, 3, Weight::Hops, false, &Filter::new()).unwrap();
//! assert_eq!((p.hops, q.hops), (2, 2));
//! ```

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::graph::{Filter, Graph, LinkId, NodeId, Path, Weight, NO_LINK};
use crate::min_scored::{Dist, MinScored};
use crate::search::walk_back;

#[derive(Debug, Clone, Copy)]
struct Arc {
    to: u32,
    cap: u8,
    cost: f64,
    link: LinkId,
}

/// The least-total-`weight` pair of disjoint src→dst paths over links allowed by `filter`
/// (link-disjoint, where a bidirectional pair counts as one link; or internally
/// node-disjoint), ordered by weight (then latency, hops, link ids). `None` if no such pair
/// exists or src == dst.
pub fn disjoint_paths(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    weight: Weight,
    node_disjoint: bool,
    filter: &Filter,
) -> Option<(Path, Path)> {
    if src == dst || !filter.node_ok(src) || !filter.node_ok(dst) {
        return None;
    }
    let n = g.node_count();
    let split = node_disjoint;
    type Map = fn(NodeId) -> NodeId;
    let (inn, out): (Map, Map) = if split {
        (|x: NodeId| 2 * x, |x: NodeId| 2 * x + 1)
    } else {
        (|x: NodeId| x, |x: NodeId| x)
    };
    let nn = if split { 2 * n } else { n };
    let mut arcs: Vec<Arc> = Vec::new();
    let mut adj: Vec<Vec<u32>> = vec![Vec::new(); nn];
    let mut add = |arcs: &mut Vec<Arc>, a: u32, b: u32, cost: f64, link: LinkId| {
        adj[a as usize].push(arcs.len() as u32);
        arcs.push(Arc {
            to: b,
            cap: 1,
            cost,
            link,
        });
        adj[b as usize].push(arcs.len() as u32);
        arcs.push(Arc {
            to: a,
            cap: 0,
            cost: -cost,
            link,
        });
    };
    if split {
        for x in 0..n as NodeId {
            if x != src && x != dst && filter.node_ok(x) {
                add(&mut arcs, inn(x), out(x), 0.0, NO_LINK);
            }
        }
    }
    for (lid, l) in g.links.iter().enumerate() {
        let lid = lid as LinkId;
        if l.u == l.v || l.v == src || l.u == dst || !filter.link_ok(lid, l) {
            continue;
        }
        add(&mut arcs, out(l.u), inn(l.v), weight.of(l), lid);
    }
    let (s, t) = (out(src), inn(dst));
    let mut pot = vec![0.0f64; nn];
    let mut dist = vec![f64::INFINITY; nn];
    let mut pred = vec![u32::MAX; nn];
    let mut heap = BinaryHeap::new();
    for _ in 0..2 {
        dist.iter_mut().for_each(|d| *d = f64::INFINITY);
        pred.iter_mut().for_each(|p| *p = u32::MAX);
        dist[s as usize] = 0.0;
        heap.clear();
        heap.push(MinScored(Dist::new(0.0), s));
        while let Some(MinScored(d, x)) = heap.pop() {
            let d = d.get();
            if d > dist[x as usize] {
                continue;
            }
            for &ai in &adj[x as usize] {
                let a = arcs[ai as usize];
                if a.cap == 0 {
                    continue;
                }
                let rc = (a.cost + pot[x as usize] - pot[a.to as usize]).max(0.0);
                let nd = d + rc;
                if nd < dist[a.to as usize] {
                    dist[a.to as usize] = nd;
                    pred[a.to as usize] = ai;
                    heap.push(MinScored(Dist::new(nd), a.to));
                }
            }
        }
        if !dist[t as usize].is_finite() {
            return None;
        }
        // The augmenting path, by the arc that reached each node; arc i ^ 1 is the
        // residual twin of arc i and leads back to the node the arc starts from.
        let path = walk_back(t, |x| {
            (x != s).then(|| {
                let ai = pred[x as usize] as usize;
                (ai, arcs[ai ^ 1].to)
            })
        });
        for ai in path {
            arcs[ai].cap -= 1;
            arcs[ai ^ 1].cap += 1;
        }
        for (p, d) in pot.iter_mut().zip(&dist) {
            if d.is_finite() {
                *p += d;
            }
        }
    }
    // Links carrying flow (forward arcs are even, saturated when cap == 0).
    let mut used: HashMap<LinkId, bool> = HashMap::new();
    for i in (0..arcs.len()).step_by(2) {
        if arcs[i].link != NO_LINK && arcs[i].cap == 0 {
            used.insert(arcs[i].link, true);
        }
    }
    // Cancel opposite units on one physical link.
    let ids: Vec<LinkId> = used.keys().copied().collect();
    for l in ids {
        if let Some(r) = g.links[l as usize].reverse {
            if used.get(&l) == Some(&true) && used.get(&r) == Some(&true) {
                used.insert(l, false);
                used.insert(r, false);
            }
        }
    }
    let mut outgoing: HashMap<NodeId, Vec<LinkId>> = HashMap::new();
    for (&l, &on) in &used {
        if on {
            outgoing.entry(g.links[l as usize].u).or_default().push(l);
        }
    }
    for v in outgoing.values_mut() {
        v.sort_unstable_by(|a, b| b.cmp(a)); // pop() takes the least id
    }
    let mut walk = || -> Option<Path> {
        let mut links: Vec<LinkId> = Vec::new();
        let mut pos: HashMap<NodeId, usize> = HashMap::new();
        let mut cur = src;
        pos.insert(src, 0);
        while cur != dst {
            let l = outgoing.get_mut(&cur)?.pop()?;
            links.push(l);
            cur = g.links[l as usize].v;
            if let Some(&p) = pos.get(&cur) {
                // Cut the cycle that returned to `cur`.
                for &c in &links[p..] {
                    pos.remove(&g.links[c as usize].v);
                }
                links.truncate(p);
            }
            pos.insert(cur, links.len());
        }
        Some(Path::from_links(g, src, links))
    };
    let p = walk()?;
    let q = walk()?;
    if p.order_key_cmp(&q, weight) == Ordering::Greater {
        Some((q, p))
    } else {
        Some((p, q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{all_simple_paths, random_graph, Rng};

    fn physical(g: &Graph, l: LinkId) -> LinkId {
        match g.links[l as usize].reverse {
            Some(r) => l.min(r),
            None => l,
        }
    }

    #[test]
    fn matches_brute_force() {
        let mut rng = Rng(9);
        for _ in 0..800 {
            let n = 2 + rng.below(6) as u32;
            let m = rng.below(18) as u32;
            let g = random_graph(&mut rng, n, m);
            let (s, d) = (rng.below(n as u64) as u32, rng.below(n as u64) as u32);
            if s == d {
                continue;
            }
            for node_disjoint in [false, true] {
                for w in [Weight::Latency, Weight::Cost, Weight::Hops] {
                    let got = disjoint_paths(&g, s, d, w, node_disjoint, &Filter::new());
                    let all = all_simple_paths(&g, s, d, &|l| g.links[l as usize].up);
                    let mut best = f64::INFINITY;
                    for (i, p) in all.iter().enumerate() {
                        for q in &all[i + 1..] {
                            let ok = if node_disjoint {
                                p.nodes[1..p.nodes.len() - 1]
                                    .iter()
                                    .all(|x| !q.nodes[1..q.nodes.len() - 1].contains(x))
                                    && !(p.hops == 1 && q.hops == 1 && p.links == q.links)
                                    && p.links.iter().all(|&a| {
                                        q.links.iter().all(|&b| physical(&g, a) != physical(&g, b))
                                    })
                            } else {
                                p.links.iter().all(|&a| {
                                    q.links.iter().all(|&b| physical(&g, a) != physical(&g, b))
                                })
                            };
                            if ok {
                                best = best.min(p.weight(w) + q.weight(w));
                            }
                        }
                    }
                    match got {
                        None => assert!(best.is_infinite(), "missed a pair"),
                        Some((p, q)) => {
                            assert!((p.weight(w) + q.weight(w) - best).abs() < 1e-9);
                            assert!(p.weight(w) <= q.weight(w));
                            for a in &p.links {
                                for b in &q.links {
                                    assert_ne!(physical(&g, *a), physical(&g, *b));
                                }
                            }
                            if node_disjoint {
                                for x in &p.nodes[1..p.nodes.len() - 1] {
                                    assert!(!q.nodes.contains(x));
                                }
                            }
                            for r in [&p, &q] {
                                assert_eq!((r.nodes[0], *r.nodes.last().unwrap()), (s, d));
                                let mut ns = r.nodes.clone();
                                ns.sort_unstable();
                                ns.dedup();
                                assert_eq!(ns.len(), r.nodes.len());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Suurballe's trap: the shortest path s→a→b→t blocks every disjoint partner; the
    /// best pair is s→a→t and s→b→t, and the link a–b (one fiber, both directions) is in
    /// neither.
    #[test]
    fn the_trap_is_resolved_and_one_fiber_is_used_once() {
        let mut g = Graph::new();
        g.add_nodes(&["s", "a", "b", "t"]).unwrap();
        let sa = g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
        let ab = g.add_link(1, 2, 1.0, 10.0, 1.0, true).unwrap();
        let bt = g.add_link(2, 3, 1.0, 10.0, 1.0, true).unwrap();
        let at = g.add_link(1, 3, 3.0, 10.0, 1.0, true).unwrap();
        let sb = g.add_link(0, 2, 3.0, 10.0, 1.0, true).unwrap();
        let (p, q) = disjoint_paths(&g, 0, 3, Weight::Latency, false, &Filter::new()).unwrap();
        assert_eq!((&p.links, &q.links), (&vec![sa, at], &vec![sb, bt]));
        assert_eq!((p.latency_ms, q.latency_ms), (4.0, 4.0));
        let uses_ab = |x: &Path| x.links.contains(&ab) || x.links.contains(&(ab + 1));
        assert!(!uses_ab(&p) && !uses_ab(&q));
        // Without s→b, s→a is the only way out of s: no pair.
        let mut f = Filter::new();
        f.exclude_link(sb);
        assert!(disjoint_paths(&g, 0, 3, Weight::Latency, false, &f).is_none());
        assert!(disjoint_paths(&g, 0, 0, Weight::Latency, false, &Filter::new()).is_none());
    }

    /// s⇉m⇉t over parallel links: link-disjoint pairs exist, node-disjoint ones do not
    /// (both paths cross m), until s→t gives a second route.
    #[test]
    fn node_disjoint_forbids_a_shared_node() {
        let mut g = Graph::new();
        g.add_nodes(&["s", "m", "t"]).unwrap();
        let sm1 = g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
        let sm2 = g.add_link(0, 1, 2.0, 10.0, 1.0, true).unwrap();
        let mt1 = g.add_link(1, 2, 1.0, 10.0, 1.0, true).unwrap();
        let mt2 = g.add_link(1, 2, 2.0, 10.0, 1.0, true).unwrap();
        let f = Filter::new();
        let (p, q) = disjoint_paths(&g, 0, 2, Weight::Latency, false, &f).unwrap();
        assert_eq!(p.latency_ms + q.latency_ms, 6.0);
        let mut used = [p.links, q.links].concat();
        used.sort_unstable();
        assert_eq!(used, vec![sm1, sm2, mt1, mt2]);
        assert!(disjoint_paths(&g, 0, 2, Weight::Latency, true, &f).is_none());
        let st = g.add_link(0, 2, 5.0, 10.0, 1.0, true).unwrap();
        let (p, q) = disjoint_paths(&g, 0, 2, Weight::Latency, true, &f).unwrap();
        assert_eq!((p.links, q.links), (vec![sm1, mt1], vec![st]));
    }
}
