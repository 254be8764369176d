//! Reverse shortest-path trees toward many roots, kept up to date as links go up and down,
//! answering only what changed: for each root, the nodes whose next hop toward it moved.
//!
//! A controller that forwards every destination along a least-latency tree needs one tree
//! per destination switch (754 on the largest carrier map) and, after a link cut, only the
//! next hops that moved. [`ReverseTrees::update`] keeps each tree's distances and next
//! hops; on a change of links it keeps the trees the change cannot touch, extends the trees
//! a node joined as a leaf, recomputes the others (in parallel) and diffs them against what
//! they were. The trees are always those a fresh [`shortest_path_arrays`] gives (same
//! tie-break), so a caller that restarts computes the same next hops.
//!
//! When a change cannot touch a tree (see [`ReverseTrees::update`]): Dijkstra settles nodes in
//! the order of their final keys (weight, latency, hops) and a node's next hop is the first
//! link that reached its final key. A link that went down and is no node's next hop, or a
//! link that came up and offers its tail only a strictly longer path than the tail's own,
//! changes no key and no next hop.
//!
//! ```
//! use pathcore::graph::{Graph, Weight};
//! use pathcore::trees::ReverseTrees;
//! let mut g = Graph::new();
//! g.add_nodes(&["a", "b", "c"]).unwrap();
//! let ab = g.add_link(0, 1, 1.0, 10.0, 1.0, true).unwrap();
//! let bc = g.add_link(1, 2, 1.0, 10.0, 1.0, true).unwrap();
//! let ac = g.add_link(0, 2, 5.0, 10.0, 1.0, true).unwrap();
//! let mut trees = ReverseTrees::new(Weight::Latency);
//! // first call: every node with a next hop toward c
//! assert_eq!(trees.update(&g, &[2]), vec![(2, vec![(0, ab), (1, bc)])]);
//! g.set_link_up(bc, false, true).unwrap();
//! // b now reaches c only back through a; a takes its direct link
//! let back = g.link(ab).unwrap().reverse.unwrap();
//! assert_eq!(trees.update(&g, &[2]), vec![(2, vec![(0, ac), (1, back)])]);
//! ```

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::graph::{Filter, Graph, LinkId, NodeId, Weight, NO_LINK};
use crate::shortest_path::{shortest_path_arrays, Direction};

/// The next hops that moved in one tree: `(node, its new next-hop link)`, [`NO_LINK`] where
/// the node no longer reaches the root. In node order.
pub type TreeChanges = Vec<(NodeId, LinkId)>;

/// One tree: per node its distance to the root and its next-hop link ([`NO_LINK`] for the
/// root and nodes that do not reach it), as [`shortest_path_arrays`] gives them.
struct Tree {
    dist: Vec<f64>,
    next: Vec<LinkId>,
}

/// What a change of links does to one kept tree.
enum Effect {
    /// Nothing: the tree is the same.
    Keep,
    /// Node `.0` joined as a leaf with next hop `.1` (the tree is updated in place).
    Joined(NodeId, LinkId),
    /// Anything else: recompute.
    Recompute,
}

/// Reverse least-`weight` trees toward a set of roots, updated by [`ReverseTrees::update`].
pub struct ReverseTrees {
    weight: Weight,
    trees: HashMap<NodeId, Tree>,
    /// Up state of every link at the last update.
    up: Vec<bool>,
    /// Node count at the last update.
    nodes: usize,
}

impl ReverseTrees {
    /// No trees yet; `weight` is the metric the trees minimise (ties: less latency, then
    /// fewer hops, as [`shortest_path_arrays`]).
    pub fn new(weight: Weight) -> ReverseTrees {
        ReverseTrees {
            weight,
            trees: HashMap::new(),
            up: Vec::new(),
            nodes: 0,
        }
    }

    /// The metric the trees minimise.
    pub fn weight(&self) -> Weight {
        self.weight
    }

    /// The roots held, in node order.
    pub fn roots(&self) -> Vec<NodeId> {
        let mut r: Vec<NodeId> = self.trees.keys().copied().collect();
        r.sort_unstable();
        r
    }

    /// The next hop of every node toward `root` (indexed by node id, [`NO_LINK`] for none)
    /// as of the last update; `None` if `root` is not held.
    pub fn next_hops(&self, root: NodeId) -> Option<&[LinkId]> {
        self.trees.get(&root).map(|t| t.next.as_slice())
    }

    /// Bring the trees up to date with `g` for exactly the roots `roots` (duplicates
    /// ignored): trees of roots not listed are dropped, new roots get a tree, and held trees
    /// follow the links that went up or down since the last update. Returns, for each
    /// listed root whose tree changed (a new root: always, even with no node reaching it),
    /// the nodes whose next hop moved
    /// ([`TreeChanges`]; for a new root every node that reaches it), in root order.
    ///
    /// A held tree is kept when no changed link can touch it (module docs), extended in
    /// place when exactly one node that did not reach the root joins it as a leaf (every
    /// up link of that node leads to a node of the tree, one gives it a strictly least
    /// distance, and it offers no other node a path as short as that node's own), and
    /// recomputed otherwise; recomputations run in parallel on the rayon pool. A graph whose
    /// node or link count changed recomputes every tree. O(c·r) to classify r trees for c
    /// changed links, plus O((n + m) log n) per recomputed tree.
    pub fn update(&mut self, g: &Graph, roots: &[NodeId]) -> Vec<(NodeId, TreeChanges)> {
        let links = g.links();
        let fresh = links.len() != self.up.len() || g.node_count() != self.nodes;
        let changed: Vec<LinkId> = if fresh {
            Vec::new()
        } else {
            (0..links.len())
                .filter(|&i| links[i].up != self.up[i])
                .map(|i| i as LinkId)
                .collect()
        };
        self.up = links.iter().map(|l| l.up).collect();
        self.nodes = g.node_count();
        let wanted: HashSet<NodeId> = roots.iter().copied().collect();
        self.trees.retain(|r, _| wanted.contains(r));
        let mut ordered: Vec<NodeId> = wanted.into_iter().collect();
        ordered.sort_unstable();

        let mut out: Vec<(NodeId, TreeChanges)> = Vec::new();
        let mut redo: Vec<(NodeId, Option<Tree>)> = Vec::new();
        for &r in &ordered {
            let effect = match self.trees.get_mut(&r) {
                None => Effect::Recompute,
                Some(_) if fresh => Effect::Recompute,
                Some(_) if changed.is_empty() => Effect::Keep,
                Some(t) => effect_of(g, t, &changed, self.weight),
            };
            match effect {
                Effect::Keep => {}
                Effect::Joined(u, l) => out.push((r, vec![(u, l)])),
                Effect::Recompute => redo.push((r, self.trees.remove(&r))),
            }
        }
        let weight = self.weight;
        let recomputed: Vec<(NodeId, Tree, TreeChanges, bool)> = redo
            .into_par_iter()
            .map(|(r, old)| {
                let (dist, next) =
                    shortest_path_arrays(g, r, Direction::Reverse, weight, &Filter::new());
                let moved: TreeChanges = match &old {
                    None => (0..next.len())
                        .filter(|&n| next[n] != NO_LINK)
                        .map(|n| (n as NodeId, next[n]))
                        .collect(),
                    Some(o) => (0..next.len())
                        .filter(|&n| o.next.get(n).copied().unwrap_or(NO_LINK) != next[n])
                        .map(|n| (n as NodeId, next[n]))
                        .chain(
                            (next.len()..o.next.len())
                                .filter(|&n| o.next[n] != NO_LINK)
                                .map(|n| (n as NodeId, NO_LINK)),
                        )
                        .collect(),
                };
                (r, Tree { dist, next }, moved, old.is_none())
            })
            .collect();
        for (r, t, moved, new) in recomputed {
            self.trees.insert(r, t);
            if new || !moved.is_empty() {
                out.push((r, moved));
            }
        }
        out.sort_unstable_by_key(|(r, _)| *r);
        out
    }
}

/// What the links `changed` (their up state flipped; `g` has the new state) do to `t`.
fn effect_of(g: &Graph, t: &mut Tree, changed: &[LinkId], w: Weight) -> Effect {
    let inf = f64::INFINITY;
    let links = g.links();
    let mut joined: Option<NodeId> = None;
    for &l in changed {
        let lk = &links[l as usize];
        let (u, v) = (lk.u as usize, lk.v as usize);
        if !lk.up {
            if t.next[u] == l {
                return Effect::Recompute;
            }
            continue;
        }
        // the link offers its tail u the path u -> v -> root
        let (du, dv) = (t.dist[u], t.dist[v]);
        if dv == inf || dv + w.of(lk) > du {
            continue;
        }
        // as short or shorter: only a node joining is cheap
        if du != inf || joined.is_some_and(|j| j != lk.u) {
            return Effect::Recompute;
        }
        joined = Some(lk.u);
    }
    let Some(u) = joined else {
        return Effect::Keep;
    };
    let mut best: Option<(f64, LinkId)> = None;
    let mut second = inf;
    for a in g.out_arcs(u) {
        if !links[a.lid as usize].up {
            continue;
        }
        let dv = t.dist[a.other as usize];
        if dv == inf {
            return Effect::Recompute;
        }
        let d = dv + w.of_arc(a);
        match best {
            Some((b, _)) if d >= b => second = second.min(d),
            _ => {
                second = best.map_or(inf, |(b, _)| b);
                best = Some((d, a.lid));
            }
        }
    }
    let Some((d_u, out)) = best else {
        return Effect::Recompute;
    };
    if d_u >= second {
        return Effect::Recompute;
    }
    for a in g.in_arcs(u) {
        if links[a.lid as usize].up && d_u + w.of_arc(a) <= t.dist[a.other as usize] {
            return Effect::Recompute;
        }
    }
    t.dist[u as usize] = d_u;
    t.next[u as usize] = out;
    Effect::Joined(u, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{random_graph, Rng};

    /// The held trees equal fresh searches, and the changes reported turn the previous
    /// next hops into the new ones.
    fn check(
        g: &Graph,
        trees: &ReverseTrees,
        before: &HashMap<NodeId, Vec<LinkId>>,
        changes: &[(NodeId, TreeChanges)],
        roots: &[NodeId],
    ) {
        let reported: HashMap<NodeId, &TreeChanges> =
            changes.iter().map(|(r, c)| (*r, c)).collect();
        for &r in roots {
            let (_, fresh) =
                shortest_path_arrays(g, r, Direction::Reverse, Weight::Latency, &Filter::new());
            assert_eq!(trees.next_hops(r).unwrap(), fresh.as_slice(), "root {r}");
            let mut next = before
                .get(&r)
                .cloned()
                .unwrap_or_else(|| vec![NO_LINK; fresh.len()]);
            if let Some(c) = reported.get(&r) {
                assert!(
                    !c.is_empty() || !before.contains_key(&r),
                    "root {r}: empty change"
                );
                for &(n, l) in c.iter() {
                    next[n as usize] = l;
                }
            }
            assert_eq!(next, fresh, "changes of root {r}");
        }
    }

    #[test]
    fn random_flaps_match_fresh_searches() {
        let mut rng = Rng(11);
        for case in 0..40 {
            let mut g = random_graph(&mut rng, 25, 60);
            let n = g.node_count() as NodeId;
            let m = g.link_count() as u64;
            let mut trees = ReverseTrees::new(Weight::Latency);
            let mut roots: Vec<NodeId> = (0..n).filter(|i| i % 3 == case % 3).collect();
            let mut before = HashMap::new();
            for step in 0..30 {
                // flip one to three links (both directions when paired), sometimes a root
                for _ in 0..=(rng.next() % 3) {
                    let l = (rng.next() % m) as LinkId;
                    let up = !g.link(l).unwrap().up;
                    g.set_link_up(l, up, true).unwrap();
                }
                if step % 7 == 3 {
                    roots.push((rng.next() % n as u64) as NodeId);
                    roots.remove(0);
                }
                let changes = trees.update(&g, &roots);
                check(&g, &trees, &before, &changes, &roots);
                assert_eq!(trees.roots(), {
                    let mut r = roots.clone();
                    r.sort_unstable();
                    r.dedup();
                    r
                });
                before = roots
                    .iter()
                    .map(|&r| (r, trees.next_hops(r).unwrap().to_vec()))
                    .collect();
            }
        }
    }

    #[test]
    fn a_node_joining_as_a_leaf_is_one_change() {
        // a star around c; d comes up with one link to b
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c", "d"]).unwrap();
        g.add_link(0, 2, 1.0, 10.0, 1.0, true).unwrap();
        g.add_link(1, 2, 1.0, 10.0, 1.0, true).unwrap();
        let db = g.add_link(3, 1, 1.0, 10.0, 1.0, true).unwrap();
        g.set_link_up(db, false, true).unwrap();
        let mut trees = ReverseTrees::new(Weight::Latency);
        trees.update(&g, &[2]);
        g.set_link_up(db, true, true).unwrap();
        assert_eq!(trees.update(&g, &[2]), vec![(2, vec![(3, db)])]);
        // nothing changed: nothing reported
        assert!(trees.update(&g, &[2]).is_empty());
        // a root dropped and added back is reported whole
        assert!(trees.update(&g, &[]).is_empty());
        assert_eq!(
            trees.update(&g, &[2]),
            vec![(2, vec![(0, 0), (1, 2), (3, db)])]
        );
        // a new root no node reaches is reported, with no next hops
        g.set_link_up(db, false, true).unwrap();
        assert_eq!(
            trees.update(&g, &[2, 3]),
            vec![(2, vec![(3, NO_LINK)]), (3, vec![])]
        );
    }
}
