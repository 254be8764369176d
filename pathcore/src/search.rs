//! The search machinery every Dijkstra-like algorithm shares: per-thread scratch with
//! O(1) reset, one label order, one heap key ([`MinScored`]) and one predecessor walk
//! ([`walk_back`]) that turns predecessors into a path.
//!
//! Labels are compared lexicographically on `(weight, secondary, hops)` (secondary is
//! latency unless stated), which is an exact, monotone order for non-negative link
//! values; so among equally short paths the one with less latency, then fewer hops, wins,
//! and the result is deterministic. Per-thread scratch (distance array with generation
//! stamps, heap) is reused between queries, so a query allocates only its result:
//! O((n + m) log n) time, no O(n) clearing.

use std::cell::RefCell;
use std::collections::BinaryHeap;

use crate::graph::{Filter, Graph, LinkId, NodeId, Path, Weight, NO_LINK};
use crate::min_scored::{Dist, MinScored};

/// Follow predecessors back from `start`: `step(s)` gives the item (a link, an arc) by
/// which `s` was reached and the state it was reached from, or `None` at the root.
/// Returns the items in the order walked, from `start` back to the root. Every path
/// reconstruction in the crate is this walk: node predecessors of a forward or reverse
/// search, the parent chain of a label, the arcs of an augmenting path.
///
/// ```
/// use pathcore::search::walk_back;
/// // 3 was reached from 1, 1 from 0 (the root).
/// let pred = [None, Some(0), None, Some(1)];
/// let hops = walk_back(3usize, |n| pred[n].map(|p| ((p, n), p)));
/// assert_eq!(hops, vec![(1, 3), (0, 1)]);
/// ```
pub fn walk_back<S: Copy, I>(start: S, mut step: impl FnMut(S) -> Option<(I, S)>) -> Vec<I> {
    let mut items = Vec::new();
    let mut cur = start;
    while let Some((item, prev)) = step(cur) {
        items.push(item);
        cur = prev;
    }
    items
}

/// An array whose entries reset in O(1) by bumping a generation counter. The stamp sits
/// next to the value, so a lookup touches one cache line.
#[derive(Debug)]
pub(crate) struct Stamped<T: Copy> {
    slots: Vec<(T, u32)>,
    gen: u32,
    default: T,
}

impl<T: Copy> Stamped<T> {
    pub(crate) fn new(default: T) -> Stamped<T> {
        Stamped {
            slots: Vec::new(),
            gen: 0,
            default,
        }
    }

    pub(crate) fn reset(&mut self, n: usize) {
        if self.slots.len() < n {
            self.slots.resize(n, (self.default, 0));
        }
        self.gen = self.gen.wrapping_add(1);
        if self.gen == 0 {
            self.slots.iter_mut().for_each(|s| s.1 = 0);
            self.gen = 1;
        }
    }

    #[inline(always)]
    pub(crate) fn get(&self, i: u32) -> T {
        let s = &self.slots[i as usize];
        if s.1 == self.gen {
            s.0
        } else {
            self.default
        }
    }

    #[inline(always)]
    pub(crate) fn set(&mut self, i: u32, v: T) {
        self.slots[i as usize] = (v, self.gen);
    }
}

/// The label order of node searches: `(primary, secondary, hops)`.
pub(crate) type Key = (f64, f64, u32);

/// Hops and a node id in one integer, hops in the high half: orders by hops, then node id,
/// in one comparison (a heap entry is compared on every sift step; a fourth comparison
/// level measured about 5 % slower searches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HopsNode(u64);

impl HopsNode {
    #[inline(always)]
    fn new(hops: u32, node: NodeId) -> HopsNode {
        HopsNode((u64::from(hops) << 32) | u64::from(node))
    }

    #[inline(always)]
    pub(crate) fn node(self) -> NodeId {
        self.0 as NodeId
    }
}

/// The heap entry of node searches: least `(primary, secondary)` first, ties to fewer
/// hops, then the lower node id.
pub(crate) type Entry = MinScored<(Dist, Dist), HopsNode>;

#[inline(always)]
pub(crate) fn entry(k: Key, node: NodeId) -> Entry {
    MinScored((Dist::new(k.0), Dist::new(k.1)), HopsNode::new(k.2, node))
}

#[inline(always)]
pub(crate) fn key_add(x: Key, y: Key) -> Key {
    (x.0 + y.0, x.1 + y.1, x.2.saturating_add(y.2))
}

#[inline(always)]
pub(crate) fn key_less(x: Key, y: Key) -> bool {
    x.0 < y.0 || (x.0 == y.0 && (x.1 < y.1 || (x.1 == y.1 && x.2 < y.2)))
}

/// Search state of one node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeState {
    /// Primary distance (the weight).
    pub a: f64,
    /// Secondary distance (latency, or the weight for latency searches in constrained).
    pub b: f64,
    pub hops: u32,
    /// Last link on the best path (toward the root for reverse searches).
    pub pred: LinkId,
    pub done: bool,
}

impl NodeState {
    #[inline(always)]
    pub(crate) fn key(&self) -> Key {
        (self.a, self.b, self.hops)
    }

    #[inline(always)]
    fn labelled(k: Key, pred: LinkId) -> NodeState {
        NodeState {
            a: k.0,
            b: k.1,
            hops: k.2,
            pred,
            done: false,
        }
    }
}

pub(crate) const UNSEEN: NodeState = NodeState {
    a: f64::INFINITY,
    b: f64::INFINITY,
    hops: u32::MAX,
    pred: NO_LINK,
    done: false,
};

/// Direction of a search: along links, or against them (distances *to* the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// Reusable per-thread search scratch: node states and the heap.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) st: Stamped<NodeState>,
    pub(crate) heap: BinaryHeap<Entry>,
}

impl Default for Tree {
    fn default() -> Tree {
        Tree {
            st: Stamped::new(UNSEEN),
            heap: BinaryHeap::new(),
        }
    }
}

thread_local! {
    pub(crate) static FWD: RefCell<Tree> = RefCell::new(Tree::default());
    pub(crate) static REV_A: RefCell<Tree> = RefCell::new(Tree::default());
    pub(crate) static REV_B: RefCell<Tree> = RefCell::new(Tree::default());
    pub(crate) static BIDI_R: RefCell<Tree> = RefCell::new(Tree::default());
}

impl Tree {
    /// Clear the scratch for a graph of `n` nodes and label `root` with distance 0 and
    /// heap key `root_key` (0, or the heuristic of the root for A*).
    pub(crate) fn start(&mut self, n: usize, root: NodeId, root_key: f64) {
        self.st.reset(n);
        self.heap.clear();
        self.st
            .set(root, NodeState::labelled((0.0, 0.0, 0), NO_LINK));
        self.heap.push(entry((root_key, 0.0, 0), root));
    }

    /// Label `node` with key `k`, reached by link `pred`, and queue it under heap score
    /// `(f, k.1, k.2)` (`f` is `k.0`, or `k.0` plus a heuristic for A*). The searches keep
    /// their relax loops inline: hoisted into helpers they measured 3 to 5 % slower.
    #[inline(always)]
    pub(crate) fn label(&mut self, node: NodeId, k: Key, pred: LinkId, f: f64) {
        self.st.set(node, NodeState::labelled(k, pred));
        self.heap.push(entry((f, k.1, k.2), node));
    }

    /// Pop the least unsettled label, mark its node settled and return the node and its
    /// state; stale heap entries (nodes already settled) are dropped. `None` when the heap
    /// is empty. Always inlined: measured as fast as the same lines written into each loop.
    #[inline(always)]
    pub(crate) fn settle_next(&mut self) -> Option<(NodeId, NodeState)> {
        while let Some(e) = self.heap.pop() {
            let node = e.1.node();
            let mut s = self.st.get(node);
            if !s.done {
                s.done = true;
                self.st.set(node, s);
                return Some((node, s));
            }
        }
        None
    }

    /// Least key among unsettled labels (stale heap entries are dropped).
    #[inline]
    pub(crate) fn top(&mut self) -> Option<Key> {
        while let Some(e) = self.heap.peek() {
            let s = self.st.get(e.1.node());
            if s.done {
                self.heap.pop();
            } else {
                return Some(s.key());
            }
        }
        None
    }

    /// Run Dijkstra from `root`. Nodes whose primary distance would exceed `bound` are not
    /// labelled, nor nodes for which `allow(node, primary distance)` is false.
    /// `settle(node)` is called as each node is settled; returning `true` stops.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run<A: Fn(NodeId, f64) -> bool, S: FnMut(NodeId) -> bool>(
        &mut self,
        g: &Graph,
        root: NodeId,
        dir: Direction,
        primary: Weight,
        secondary: Weight,
        filter: &Filter,
        bound: f64,
        allow: A,
        mut settle: S,
    ) {
        if !filter.node_ok(root) {
            self.st.reset(g.node_count());
            self.heap.clear();
            return;
        }
        self.start(g.node_count(), root, 0.0);
        let adj = match dir {
            Direction::Forward => &g.out_adj,
            Direction::Reverse => &g.in_adj,
        };
        while let Some((node, s)) = self.settle_next() {
            if settle(node) {
                break;
            }
            for a in &adj[node as usize] {
                if !filter.arc_ok(a) {
                    continue;
                }
                let na = s.a + primary.of_arc(a);
                if na > bound {
                    continue;
                }
                let os = self.st.get(a.other);
                if os.done || !allow(a.other, na) {
                    continue;
                }
                let k = (na, s.b + secondary.of_arc(a), s.hops + 1);
                if key_less(k, os.key()) {
                    self.label(a.other, k, a.lid, na);
                }
            }
        }
    }

    /// A* from `src` to `dst` on `weight` with heuristic `h` (a consistent lower bound on
    /// the weight to dst, `inf` where dst is unreachable), e.g. exact distances to dst in a
    /// supergraph. Settles only nodes whose `g + h` is below the answer's weight.
    pub(crate) fn astar(
        &mut self,
        g: &Graph,
        src: NodeId,
        dst: NodeId,
        weight: Weight,
        filter: &Filter,
        h: &[f64],
    ) -> Option<Path> {
        if !filter.node_ok(src) || !filter.node_ok(dst) || !h[src as usize].is_finite() {
            self.st.reset(g.node_count());
            self.heap.clear();
            return None;
        }
        self.start(g.node_count(), src, h[src as usize]);
        while let Some((node, s)) = self.settle_next() {
            if node == dst {
                return self.path_from_root(g, src, dst);
            }
            for a in &g.out_adj[node as usize] {
                if !filter.arc_ok(a) {
                    continue;
                }
                let hy = h[a.other as usize];
                if !hy.is_finite() {
                    continue;
                }
                let ys = self.st.get(a.other);
                let k = (s.a + weight.of_arc(a), s.b + a.latency_ms, s.hops + 1);
                if !ys.done && key_less(k, ys.key()) {
                    self.label(a.other, k, a.lid, k.0 + hy);
                }
            }
        }
        None
    }

    /// Whether `n` was reached by the last run.
    #[inline]
    pub(crate) fn reached(&self, n: NodeId) -> bool {
        self.st.get(n).a.is_finite()
    }

    /// Links root→`n` after a forward search that reached `n`, in path order.
    pub(crate) fn links_from_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Vec<LinkId> {
        let mut links = walk_back(n, |cur| {
            (cur != root).then(|| {
                let l = self.st.get(cur).pred;
                (l, g.links[l as usize].u)
            })
        });
        links.reverse();
        links
    }

    /// Links `n`→root after a reverse search that reached `n`, in path order.
    pub(crate) fn links_to_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Vec<LinkId> {
        walk_back(n, |cur| {
            (cur != root).then(|| {
                let l = self.st.get(cur).pred;
                (l, g.links[l as usize].v)
            })
        })
    }

    /// Path root→`n` after a forward run.
    pub(crate) fn path_from_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Option<Path> {
        self.reached(n)
            .then(|| Path::from_links(g, root, self.links_from_root(g, root, n)))
    }

    /// Path `n`→root after a reverse run.
    pub(crate) fn path_to_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Option<Path> {
        self.reached(n)
            .then(|| Path::from_links(g, n, self.links_to_root(g, root, n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// a→b→c and a→c; after one forward and one reverse search both walks give a→b→c.
    #[test]
    fn predecessor_walks_rebuild_the_path_both_ways() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c"]).unwrap();
        let ab = g.add_link(0, 1, 1.0, 1.0, 1.0, false).unwrap();
        let bc = g.add_link(1, 2, 1.0, 1.0, 1.0, false).unwrap();
        g.add_link(0, 2, 5.0, 1.0, 1.0, false).unwrap();
        let f = Filter::new();
        let by_latency = |root, dir, bound| {
            let (mut t, w) = (Tree::default(), Weight::Latency);
            t.run(&g, root, dir, w, w, &f, bound, |_, _| true, |_| false);
            t
        };
        let t = by_latency(0, Direction::Forward, f64::INFINITY);
        assert_eq!(t.links_from_root(&g, 0, 2), vec![ab, bc]);
        assert_eq!(t.path_from_root(&g, 0, 2).unwrap().latency_ms, 2.0);
        let t = by_latency(2, Direction::Reverse, f64::INFINITY);
        assert_eq!(t.links_to_root(&g, 2, 0), vec![ab, bc]);
        assert_eq!(t.path_to_root(&g, 2, 0).unwrap().nodes, vec![0, 1, 2]);
        // A bound of 1 ms leaves c unreached.
        let t = by_latency(0, Direction::Forward, 1.0);
        assert!(t.reached(1) && !t.reached(2));
        assert_eq!(t.path_from_root(&g, 0, 2), None);
    }

    #[test]
    fn entries_pop_by_key_then_fewer_hops_then_lower_node() {
        let mut heap = BinaryHeap::new();
        for (k, node) in [
            ((1.0, 2.0, 3), 4),
            ((1.0, 2.0, 2), 9),
            ((1.0, 1.0, 7), 8),
            ((0.5, 9.0, 9), 6),
            ((1.0, 2.0, 2), 5),
        ] {
            heap.push(entry(k, node));
        }
        let order: Vec<NodeId> = std::iter::from_fn(|| heap.pop().map(|e| e.1.node())).collect();
        assert_eq!(order, vec![6, 8, 5, 9, 4]);
    }

    #[test]
    fn stamped_resets_in_one_step() {
        let mut s = Stamped::new(0u8);
        s.reset(3);
        s.set(1, 7);
        assert_eq!((s.get(0), s.get(1)), (0, 7));
        s.reset(3);
        assert_eq!(s.get(1), 0);
    }

    #[test]
    fn astar_with_exact_heuristic_finds_the_least_weight_path() {
        let mut g = Graph::new();
        g.add_nodes(&["a", "b", "c", "d"]).unwrap();
        g.add_link(0, 1, 1.0, 1.0, 1.0, false).unwrap();
        let bd = g.add_link(1, 3, 1.0, 1.0, 1.0, false).unwrap();
        let ac = g.add_link(0, 2, 1.0, 1.0, 0.5, false).unwrap();
        let cd = g.add_link(2, 3, 1.0, 1.0, 0.5, false).unwrap();
        // Exact cost to d: a 1.0, b 1.0, c 0.5, d 0.
        let h = [1.0, 1.0, 0.5, 0.0];
        let mut t = Tree::default();
        let p = t.astar(&g, 0, 3, Weight::Cost, &Filter::new(), &h).unwrap();
        assert_eq!((p.links, p.cost), (vec![ac, cd], 1.0));
        let mut f = Filter::new();
        f.exclude_node(2);
        let p = t.astar(&g, 0, 3, Weight::Cost, &f, &h).unwrap();
        assert_eq!(p.links.last(), Some(&bd));
    }
}
