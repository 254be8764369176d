//! Binary-heap Dijkstra, forward or reverse, with reusable generation-stamped scratch.
//!
//! Labels are compared lexicographically on `(weight, secondary, hops)` (secondary is
//! latency unless stated), which is an exact, monotone order for non-negative link
//! values; so among equally short paths the one with less latency, then fewer hops, wins,
//! and the result is deterministic. Per-thread scratch (distance array with generation
//! stamps, heap) is reused between queries, so a query allocates only its result:
//! O((n + m) log n) time, no O(n) clearing.
//!
//! ```
//! use pathcore::graph::{Filter, Graph, Weight};
//! use pathcore::dijkstra::shortest_path;
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

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::graph::{Filter, Graph, LinkId, NodeId, Path, Weight, NO_LINK};

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

pub(crate) const UNSEEN: NodeState = NodeState {
    a: f64::INFINITY,
    b: f64::INFINITY,
    hops: u32::MAX,
    pred: NO_LINK,
    done: false,
};

/// Heap entry. Distances are non-negative (and never -0.0: inputs are normalised), so
/// their IEEE bit patterns order like the numbers and compare as plain integers.
#[derive(Debug, Clone, Copy)]
struct Entry {
    a: u64,
    b: u64,
    /// hops << 32 | node
    hn: u64,
}

impl Entry {
    #[inline(always)]
    fn new(a: f64, b: f64, hops: u32, node: NodeId) -> Entry {
        Entry {
            a: a.to_bits(),
            b: b.to_bits(),
            hn: (u64::from(hops) << 32) | u64::from(node),
        }
    }

    #[inline(always)]
    fn node(&self) -> NodeId {
        self.hn as u32
    }
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        (self.a, self.b, self.hn) == (o.a, o.b, o.hn)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap, we want the least key first.
    #[inline(always)]
    fn cmp(&self, o: &Self) -> Ordering {
        (o.a, o.b, o.hn).cmp(&(self.a, self.b, self.hn))
    }
}

#[inline(always)]
fn lex_less(a: f64, b: f64, h: u32, s: &NodeState) -> bool {
    a < s.a || (a == s.a && (b < s.b || (b == s.b && h < s.hops)))
}

/// Direction of a search: along links, or against them (distances *to* the root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Reverse,
}

/// Reusable per-thread search scratch.
#[derive(Debug)]
pub(crate) struct Tree {
    pub(crate) st: Stamped<NodeState>,
    heap: BinaryHeap<Entry>,
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
    static BIDI_R: RefCell<Tree> = RefCell::new(Tree::default());
}

impl Tree {
    /// Run Dijkstra from `root`. Nodes whose primary distance would exceed `bound` are not
    /// labelled, nor nodes for which `allow(node, primary distance)` is false. `settle(node)` is called as each
    /// node is settled; returning `true` stops.
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
        self.st.reset(g.node_count());
        self.heap.clear();
        if !filter.node_ok(root) {
            return;
        }
        self.st.set(
            root,
            NodeState {
                a: 0.0,
                b: 0.0,
                hops: 0,
                pred: NO_LINK,
                done: false,
            },
        );
        self.heap.push(Entry::new(0.0, 0.0, 0, root));
        let adj = match dir {
            Direction::Forward => &g.out_adj,
            Direction::Reverse => &g.in_adj,
        };
        while let Some(e) = self.heap.pop() {
            let node = e.node();
            let mut s = self.st.get(node);
            if s.done {
                continue;
            }
            s.done = true;
            self.st.set(node, s);
            if settle(node) {
                break;
            }
            for a in &adj[node as usize] {
                if !filter.arc_ok(a) {
                    continue;
                }
                let other = a.other;
                let na = s.a + primary.of_arc(a);
                if na > bound {
                    continue;
                }
                let os = self.st.get(other);
                if os.done || !allow(other, na) {
                    continue;
                }
                let nb = s.b + secondary.of_arc(a);
                let nh = s.hops + 1;
                if lex_less(na, nb, nh, &os) {
                    self.st.set(
                        other,
                        NodeState {
                            a: na,
                            b: nb,
                            hops: nh,
                            pred: a.lid,
                            done: false,
                        },
                    );
                    self.heap.push(Entry::new(na, nb, nh, other));
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
        self.st.reset(g.node_count());
        self.heap.clear();
        if !filter.node_ok(src) || !filter.node_ok(dst) || !h[src as usize].is_finite() {
            return None;
        }
        self.st.set(
            src,
            NodeState {
                a: 0.0,
                b: 0.0,
                hops: 0,
                pred: NO_LINK,
                done: false,
            },
        );
        self.heap.push(Entry::new(h[src as usize], 0.0, 0, src));
        while let Some(e) = self.heap.pop() {
            let node = e.node();
            let mut s = self.st.get(node);
            if s.done {
                continue;
            }
            s.done = true;
            self.st.set(node, s);
            if node == dst {
                return self.path_from_root(g, src, dst);
            }
            for a in &g.out_adj[node as usize] {
                if !filter.arc_ok(a) {
                    continue;
                }
                let y = a.other;
                let hy = h[y as usize];
                if !hy.is_finite() {
                    continue;
                }
                let ys = self.st.get(y);
                if ys.done {
                    continue;
                }
                let (na, nb, nh) = (s.a + weight.of_arc(a), s.b + a.latency_ms, s.hops + 1);
                if lex_less(na, nb, nh, &ys) {
                    self.st.set(
                        y,
                        NodeState {
                            a: na,
                            b: nb,
                            hops: nh,
                            pred: a.lid,
                            done: false,
                        },
                    );
                    self.heap.push(Entry::new(na + hy, nb, nh, y));
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

    /// Path root→`n` after a forward run.
    pub(crate) fn path_from_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Option<Path> {
        if !self.reached(n) {
            return None;
        }
        let mut links = Vec::new();
        let mut cur = n;
        while cur != root {
            let l = self.st.get(cur).pred;
            links.push(l);
            cur = g.links[l as usize].u;
        }
        links.reverse();
        Some(Path::from_links(g, root, links))
    }

    /// Path `n`→root after a reverse run.
    pub(crate) fn path_to_root(&self, g: &Graph, root: NodeId, n: NodeId) -> Option<Path> {
        if !self.reached(n) {
            return None;
        }
        let mut links = Vec::new();
        let mut cur = n;
        while cur != root {
            let l = self.st.get(cur).pred;
            links.push(l);
            cur = g.links[l as usize].v;
        }
        Some(Path::from_links(g, n, links))
    }
}

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

type Key = (f64, f64, u32);

#[inline(always)]
fn key_add(x: Key, y: Key) -> Key {
    (x.0 + y.0, x.1 + y.1, x.2.saturating_add(y.2))
}

#[inline(always)]
fn key_less(x: Key, y: Key) -> bool {
    x.0 < y.0 || (x.0 == y.0 && (x.1 < y.1 || (x.1 == y.1 && x.2 < y.2)))
}

impl Tree {
    fn start(&mut self, n: usize, root: NodeId) {
        self.st.reset(n);
        self.heap.clear();
        self.st.set(
            root,
            NodeState {
                a: 0.0,
                b: 0.0,
                hops: 0,
                pred: NO_LINK,
                done: false,
            },
        );
        self.heap.push(Entry::new(0.0, 0.0, 0, root));
    }

    /// Least key among unsettled labels (stale heap entries are dropped).
    #[inline]
    fn top(&mut self) -> Option<Key> {
        while let Some(e) = self.heap.peek() {
            let s = self.st.get(e.node());
            if s.done {
                self.heap.pop();
            } else {
                return Some((s.a, s.b, s.hops));
            }
        }
        None
    }
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
    fw.start(g.node_count(), src);
    rv.start(g.node_count(), dst);
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
        let e = me.heap.pop().unwrap();
        let node = e.node();
        let mut s = me.st.get(node);
        s.done = true;
        me.st.set(node, s);
        for a in &adj[node as usize] {
            if !filter.arc_ok(a) {
                continue;
            }
            let y = a.other;
            let nk: Key = (s.a + weight.of_arc(a), s.b + a.latency_ms, s.hops + 1);
            let ys = me.st.get(y);
            if !ys.done && key_less(nk, (ys.a, ys.b, ys.hops)) {
                me.st.set(
                    y,
                    NodeState {
                        a: nk.0,
                        b: nk.1,
                        hops: nk.2,
                        pred: a.lid,
                        done: false,
                    },
                );
                me.heap.push(Entry::new(nk.0, nk.1, nk.2, y));
            }
            let os = other.st.get(y);
            if os.a.is_finite() {
                let total = key_add(nk, (os.a, os.b, os.hops));
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
    let mut links = Vec::new();
    let mut cur = m.u;
    while cur != src {
        let l = fw.st.get(cur).pred;
        links.push(l);
        cur = g.links[l as usize].u;
    }
    links.reverse();
    links.push(meet);
    let mut cur = m.v;
    while cur != dst {
        let l = rv.st.get(cur).pred;
        links.push(l);
        cur = g.links[l as usize].v;
    }
    Some(Path::from_links(g, src, links))
}

/// One-sided Dijkstra from src stopped at dst (reference for [`shortest_path`]).
pub fn unidirectional_shortest_path(
    g: &Graph,
    src: NodeId,
    dst: NodeId,
    weight: Weight,
    filter: &Filter,
) -> Option<Path> {
    if !filter.node_ok(src) || !filter.node_ok(dst) {
        return None;
    }
    FWD.with(|t| {
        let mut t = t.borrow_mut();
        t.run(
            g,
            src,
            Direction::Forward,
            weight,
            Weight::Latency,
            filter,
            f64::INFINITY,
            |_, _| true,
            |n| n == dst,
        );
        t.path_from_root(g, src, dst)
    })
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
    FWD.with(|t| {
        let mut t = t.borrow_mut();
        let mut order = Vec::new();
        t.run(
            g,
            src,
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
        order.into_iter().map(|n| (n, t.st.get(n).a)).collect()
    })
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
/// use pathcore::dijkstra::shortest_path_tree;
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
    FWD.with(|t| {
        let mut t = t.borrow_mut();
        let mut order = Vec::new();
        t.run(
            g,
            target,
            Direction::Reverse,
            weight,
            Weight::Latency,
            filter,
            f64::INFINITY,
            |_, _| true,
            |n| {
                if n != target {
                    order.push(n);
                }
                false
            },
        );
        // Every settled node other than the root was labelled from a settled neighbour, so
        // its pred is set (reachability as in shortest_path, even if a sum overflows).
        order.into_iter().map(|n| (n, t.st.get(n).pred)).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::tests::{all_simple_paths, random_graph, Rng};

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
                let b = unidirectional_shortest_path(&g, s, d, w, &Filter::new());
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
}
