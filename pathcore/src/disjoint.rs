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

#[derive(Debug, Clone, Copy)]
struct Arc {
    to: u32,
    cap: u8,
    cost: f64,
    link: LinkId,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Entry(f64, u32);
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(o.1.cmp(&self.1))
    }
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
        heap.push(Entry(0.0, s));
        while let Some(Entry(d, x)) = heap.pop() {
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
                    heap.push(Entry(nd, a.to));
                }
            }
        }
        if !dist[t as usize].is_finite() {
            return None;
        }
        let mut x = t;
        while x != s {
            let ai = pred[x as usize] as usize;
            arcs[ai].cap -= 1;
            arcs[ai ^ 1].cap += 1;
            x = arcs[ai ^ 1].to;
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
}
