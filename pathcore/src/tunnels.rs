//! The controller's MPLS tunnel table: the label-switched segments unprotected intents ride
//! and the heads they enter by (the controller's `controller/network/tunnels.py` documents
//! the model). Pure bookkeeping over integers: names (switches, hosts) and actions are
//! interned by the caller, which also gives each new key's label hash; what changes in the
//! flow plan comes back as [`Event`]s. Here because a 1,000-intent batch or a cut that
//! moves a thousand intents puts every one of them through this table.
//!
//! Every step mirrors the reference model kept in the controller's tests (a plain-Python
//! table, `tests/unit/tunnels_reference.py`), down to the order labels are allocated in (it
//! decides who gets a label's hash when two keys collide): the tests compare the two change
//! for change.

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::sync::Arc;

/// An MPLS label of a segment or a head.
pub type Label = u32;
/// An intent's id.
pub type IntentId = i64;
/// An interned switch or host name (see [`TunnelTable::intern`]).
pub type Name = u32;
/// An interned action: how a flow sends a labelled packet over a link (the caller's).
pub type ActionId = u32;

/// A segment: its switch, the links from it to the egress switch, the egress host port.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct SegKey {
    node: Name,
    links: Box<[u32]>,
    port: i64,
}

/// Where a head sends its packets: the tunnel's first label and how it leaves the switch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Target {
    pub first: Label,
    pub action: ActionId,
}

/// A head's key: (ingress switch, destination host).
pub type Group = (Name, Name);

struct Segment {
    key: SegKey,
    next: Option<Label>,
    refs: i64,
    chain: Arc<[Label]>,
}

struct Head {
    key: Group,
    target: Option<Target>,
    riders: HashSet<IntentId>,
}

/// What changed in the flow plan, in the order the reference model writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new segment's flow at `node`: swap to `next` and leave by its action, or (None) pop
    /// the label and output to `port`.
    Segment {
        label: Label,
        node: Name,
        next: Option<(Label, ActionId)>,
        port: i64,
    },
    /// Head `label`'s flow at `node` now swaps to `target`.
    Head {
        label: Label,
        node: Name,
        target: Target,
    },
    /// The flow of segment or head `label` is gone.
    Drop { label: Label },
}

/// What an intent of an update wants: a tunnel (from its group's switch to its host), or
/// none (protected, single-switch, fallen back or not routed).
#[derive(Clone, Copy, Debug)]
pub enum Want {
    Rides {
        id: IntentId,
        group: Group,
        target: Target,
    },
    Bare {
        id: IntentId,
    },
}

/// What an intent's ingress flow does: push a head's label and go to the heads' table, or
/// push its tunnel's first label and leave by the target's action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ingress {
    Head { label: Label, chain: Arc<[Label]> },
    Tunnel { target: Target, chain: Arc<[Label]> },
}

/// The segments and heads in use.
pub struct TunnelTable {
    /// labels are taken from `label_min` to `label_min + label_space - 1`
    label_min: u32,
    label_space: u32,
    names: Vec<String>,
    /// each name's Python `repr`: labels hash the `repr` of the key, as the reference model
    reprs: Vec<String>,
    labels: HashMap<SegKey, Label>,
    segments: HashMap<Label, Segment>,
    idle: HashSet<Label>,
    heads: HashMap<Label, Head>,
    head_at: HashMap<Group, Label>,
    head_of: HashMap<IntentId, Label>,
    target_of: HashMap<IntentId, Target>,
    group_of: HashMap<IntentId, Group>,
    members: HashMap<Group, HashSet<IntentId>>,
}

impl TunnelTable {
    /// A table that takes labels from `label_min` on, `label_space` of them (at least 1).
    pub fn new(label_min: u32, label_space: u32) -> TunnelTable {
        assert!(label_space > 0, "no labels to take");
        TunnelTable {
            label_min,
            label_space,
            names: Vec::new(),
            reprs: Vec::new(),
            labels: HashMap::default(),
            segments: HashMap::default(),
            idle: HashSet::default(),
            heads: HashMap::default(),
            head_at: HashMap::default(),
            head_of: HashMap::default(),
            target_of: HashMap::default(),
            group_of: HashMap::default(),
            members: HashMap::default(),
        }
    }

    /// Intern a name (`repr`: its Python `repr`, which the labels hash); the caller keeps
    /// one id per name.
    pub fn intern(&mut self, name: &str, repr: &str) -> Name {
        self.names.push(name.to_owned());
        self.reprs.push(repr.to_owned());
        (self.names.len() - 1) as Name
    }

    pub fn name(&self, n: Name) -> &str {
        &self.names[n as usize]
    }

    /// The label of segment `k` of `path` (`links` its links, `port` the egress host port),
    /// made with the segments after it if new. `hop(node, link)`: the action over a link.
    pub fn segment(
        &mut self,
        path: &[Name],
        links: &[u32],
        k: usize,
        port: i64,
        hop: &mut dyn FnMut(Name, u32) -> ActionId,
        events: &mut Vec<Event>,
    ) -> Label {
        let key = SegKey {
            node: path[k],
            links: links[k..].into(),
            port,
        };
        if let Some(&label) = self.labels.get(&key) {
            return label;
        }
        let last = k == path.len() - 1;
        let next = if last {
            None
        } else {
            Some(self.segment(path, links, k + 1, port, hop, events))
        };
        let label = self.new_label(&self.segment_repr(&key));
        let chain: Arc<[Label]> = match next {
            None => Arc::from([label].as_slice()),
            Some(n) => {
                let rest = &self.segments[&n].chain;
                let mut c = Vec::with_capacity(rest.len() + 1);
                c.push(label);
                c.extend_from_slice(rest);
                Arc::from(c)
            }
        };
        self.labels.insert(key.clone(), label);
        self.segments.insert(
            label,
            Segment {
                key,
                next,
                refs: 0,
                chain,
            },
        );
        self.idle.insert(label); // until an intent, a head or a segment takes it
        let next = next.map(|n| {
            self.segments.get_mut(&n).expect("next segment").refs += 1;
            (n, hop(path[k], links[k]))
        });
        events.push(Event::Segment {
            label,
            node: path[k],
            next,
            port,
        });
        label
    }

    fn segment_repr(&self, key: &SegKey) -> String {
        let links = match key.links.len() {
            0 => "()".to_owned(),
            1 => format!("({},)", key.links[0]),
            _ => {
                let items: Vec<String> = key.links.iter().map(u32::to_string).collect();
                format!("({})", items.join(", "))
            }
        };
        format!(
            "({}, {}, {})",
            self.reprs[key.node as usize], links, key.port
        )
    }

    /// A free label for a new segment or head: the hash of its key's `repr`, moved on to the
    /// next free one in the rare case of a collision.
    fn new_label(&self, repr: &str) -> Label {
        let (min, space) = (self.label_min, self.label_space);
        let mut label = min + crc32fast::hash(repr.as_bytes()) % space;
        for _ in 0..space {
            if !self.segments.contains_key(&label) && !self.heads.contains_key(&label) {
                return label;
            }
            label = min + (label - min + 1) % space;
        }
        panic!("every MPLS label is in use");
    }

    fn unref(&mut self, label: Label) {
        let s = self.segments.get_mut(&label).expect("referenced segment");
        s.refs -= 1;
        if s.refs == 0 {
            self.idle.insert(label);
        }
    }

    fn add_ref(&mut self, label: Label) {
        self.segments
            .get_mut(&label)
            .expect("referenced segment")
            .refs += 1;
    }

    fn untarget(&mut self, id: IntentId) {
        if let Some(old) = self.target_of.remove(&id) {
            self.unref(old.first);
        }
    }

    fn leave(&mut self, id: IntentId) {
        if let Some(h) = self.head_of.remove(&id) {
            self.heads.get_mut(&h).expect("head").riders.remove(&id);
        }
    }

    /// `id` is no member of group `g` any more (`groups`: the groups to settle).
    fn leave_group(&mut self, id: IntentId, g: Group, groups: &mut HashSet<Group>) {
        if let Some(ms) = self.members.get_mut(&g) {
            ms.remove(&id);
        }
        groups.insert(g);
    }

    /// `id` rides no tunnel any more (removed, or its route takes none).
    fn drop_out(&mut self, id: IntentId, groups: &mut HashSet<Group>) {
        if let Some(g) = self.group_of.remove(&id) {
            self.leave_group(id, g, groups);
        }
        self.untarget(id);
        self.leave(id);
    }

    /// Put every intent of `changed` on its tunnel and head, take the `removed` ones off
    /// theirs. Returns the ids of other intents whose head changed with them (their ingress
    /// flows change too). Segments left without references go at [`Self::drop_idle`].
    pub fn update(
        &mut self,
        changed: &[Want],
        removed: &[IntentId],
        events: &mut Vec<Event>,
    ) -> Vec<IntentId> {
        let mut groups: HashSet<Group> = HashSet::default();
        for &id in removed {
            self.drop_out(id, &mut groups);
        }
        let mut dirty: HashSet<IntentId> =
            HashSet::with_capacity_and_hasher(changed.len(), Default::default());
        let mut moved_in: HashMap<Group, Vec<IntentId>> = HashMap::default();
        for want in changed {
            match *want {
                Want::Rides { id, group, target } => {
                    dirty.insert(id);
                    let g = self.group_of.get(&id).copied();
                    if g != Some(group) {
                        if let Some(g) = g {
                            self.leave_group(id, g, &mut groups);
                        }
                        self.members.entry(group).or_default().insert(id);
                        self.group_of.insert(id, group);
                        groups.insert(group);
                    }
                    let old = self.target_of.get(&id).copied();
                    if old != Some(target) || !self.head_of.contains_key(&id) {
                        if old != Some(target) {
                            // an intent holds its tunnel's first segment
                            self.add_ref(target.first);
                            self.target_of.insert(id, target);
                            if let Some(old) = old {
                                self.unref(old.first);
                            }
                        }
                        groups.insert(group);
                        moved_in.entry(group).or_default().push(id);
                    }
                }
                Want::Bare { id } => {
                    dirty.insert(id);
                    self.drop_out(id, &mut groups);
                }
            }
        }
        let mut extra: Vec<IntentId> = Vec::new();
        let mut order: Vec<Group> = groups.into_iter().collect();
        order.sort_by(|a, b| {
            (self.name(a.0), self.name(a.1)).cmp(&(self.name(b.0), self.name(b.1)))
        });
        for g in order {
            // out of the map while its head is settled (put back below); an empty set
            // stays out
            let Some(ms) = self.members.remove(&g).filter(|ms| !ms.is_empty()) else {
                continue;
            };
            let lead = self.target_of[ms.iter().min().expect("members")];
            let shared = match self.head_at.get(&g) {
                Some(&h) => h,
                None => self.new_head(g),
            };
            let check: Vec<IntentId> = if self.heads[&shared].target != Some(lead) {
                self.retarget(shared, lead, events);
                let mut all: Vec<IntentId> = ms.iter().copied().collect();
                all.sort_unstable();
                all // every member: some now match it, others no more
            } else {
                // only the members whose own target changed
                let mut some: Vec<IntentId> = moved_in
                    .get(&g)
                    .map(|v| v.iter().copied().filter(|i| ms.contains(i)).collect())
                    .unwrap_or_default();
                some.sort_unstable();
                some
            };
            for id in check {
                let want = (self.target_of[&id] == lead).then_some(shared);
                let cur = self.head_of.get(&id).copied();
                if cur != want {
                    if let Some(c) = cur {
                        self.heads.get_mut(&c).expect("head").riders.remove(&id);
                    }
                    match want {
                        None => {
                            self.head_of.remove(&id);
                        }
                        Some(w) => {
                            self.heads.get_mut(&w).expect("head").riders.insert(id);
                            self.head_of.insert(id, w);
                        }
                    }
                    if !dirty.contains(&id) {
                        extra.push(id);
                    }
                }
            }
            self.members.insert(g, ms);
            let head = self.heads.get_mut(&shared).expect("head");
            if head.riders.len() == 1 {
                // a head for one intent would be one more flow and no fewer messages: it
                // pushes its tunnel's label itself
                let only = *head.riders.iter().next().expect("one rider");
                head.riders.clear();
                self.head_of.remove(&only);
                if !dirty.contains(&only) {
                    extra.push(only);
                }
            }
        }
        let mut empty: Vec<Label> = self
            .heads
            .iter()
            .filter(|(_, h)| h.riders.is_empty())
            .map(|(&l, _)| l)
            .collect();
        empty.sort_unstable();
        for label in empty {
            self.drop_head(label, events);
        }
        extra.sort_unstable();
        extra.dedup();
        extra
    }

    fn new_head(&mut self, key: Group) -> Label {
        let repr = format!(
            "('head', {}, {})",
            self.reprs[key.0 as usize], self.reprs[key.1 as usize]
        );
        let label = self.new_label(&repr);
        self.heads.insert(
            label,
            Head {
                key,
                target: None,
                riders: HashSet::default(),
            },
        );
        self.head_at.insert(key, label);
        label
    }

    fn retarget(&mut self, label: Label, target: Target, events: &mut Vec<Event>) {
        self.add_ref(target.first);
        let head = self.heads.get_mut(&label).expect("head");
        let old = head.target.replace(target);
        let node = head.key.0;
        if let Some(old) = old {
            self.unref(old.first);
        }
        events.push(Event::Head {
            label,
            node,
            target,
        });
    }

    fn drop_head(&mut self, label: Label, events: &mut Vec<Event>) {
        let head = self.heads.remove(&label).expect("head");
        self.head_at.remove(&head.key);
        events.push(Event::Drop { label });
        if let Some(t) = head.target {
            self.unref(t.first);
        }
    }

    /// What `id`'s ingress flow does (after [`Self::update`]); None: it rides no tunnel.
    pub fn ingress(&self, id: IntentId) -> Option<Ingress> {
        if let Some(h) = self.head_of.get(&id) {
            if let Some(t) = self.heads[h].target {
                return Some(Ingress::Head {
                    label: *h,
                    chain: self.segments[&t.first].chain.clone(),
                });
            }
        }
        let t = *self.target_of.get(&id)?;
        Some(Ingress::Tunnel {
            target: t,
            chain: self.segments[&t.first].chain.clone(),
        })
    }

    /// The first label of the tunnel head `label` points at (None: not a head).
    pub fn head_target(&self, label: Label) -> Option<Label> {
        self.heads.get(&label)?.target.map(|t| t.first)
    }

    /// The ids of the intents whose ingress pushes head `label`.
    pub fn head_riders(&self, label: Label) -> Vec<IntentId> {
        let mut out: Vec<IntentId> = self
            .heads
            .get(&label)
            .map(|h| h.riders.iter().copied().collect())
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    /// Remove the segments nothing refers to any more (a removed segment lets go of the
    /// next one, which may go too); their [`Event::Drop`]s.
    pub fn drop_idle(&mut self, events: &mut Vec<Event>) {
        while !self.idle.is_empty() {
            let mut idle: Vec<Label> = self.idle.drain().collect();
            idle.sort_unstable();
            for label in idle {
                if self.segments.get(&label).is_none_or(|s| s.refs > 0) {
                    continue; // taken over by a head or segment made later
                }
                let s = self.segments.remove(&label).expect("segment");
                self.labels.remove(&s.key);
                events.push(Event::Drop { label });
                if let Some(n) = s.next {
                    self.unref(n);
                }
            }
        }
    }

    /// label -> ids of the intents whose traffic carries it, both sorted.
    pub fn riders(&self) -> Vec<(Label, Vec<IntentId>)> {
        let mut riders: HashMap<Label, HashSet<IntentId>> = self
            .segments
            .keys()
            .map(|&l| (l, HashSet::default()))
            .collect();
        for (&label, head) in &self.heads {
            riders.insert(label, head.riders.clone());
            if let Some(t) = head.target {
                for l in self.segments[&t.first].chain.iter() {
                    riders
                        .entry(*l)
                        .or_default()
                        .extend(head.riders.iter().copied());
                }
            }
        }
        for (id, t) in &self.target_of {
            if !self.head_of.contains_key(id) {
                // its ingress pushes its tunnel's label itself
                for l in self.segments[&t.first].chain.iter() {
                    riders.entry(*l).or_default().insert(*id);
                }
            }
        }
        let mut out: Vec<(Label, Vec<IntentId>)> = riders
            .into_iter()
            .map(|(l, ids)| {
                let mut v: Vec<IntentId> = ids.into_iter().collect();
                v.sort_unstable();
                (l, v)
            })
            .collect();
        out.sort_unstable_by_key(|(l, _)| *l);
        out
    }

    /// How many segments and heads there are.
    pub fn sizes(&self) -> (usize, usize) {
        (self.segments.len(), self.heads.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> (TunnelTable, Vec<Name>) {
        let mut t = TunnelTable::new(16, (1 << 20) - 16);
        let names: Vec<Name> = ["a", "b", "c", "d", "h"]
            .iter()
            .map(|n| t.intern(n, &format!("'{n}'")))
            .collect();
        (t, names)
    }

    #[test]
    fn labels_hash_the_python_repr_of_the_key() {
        // zlib.crc32(repr(('b', (7, 9), 3)).encode()) % (2**20 - 16) + 16, from Python
        let (mut t, n) = table();
        let mut ev = Vec::new();
        let l = t.segment(
            &[n[0], n[1], n[2]],
            &[5, 7, 9],
            1,
            3,
            &mut |_, _| 0,
            &mut ev,
        );
        assert_eq!(l, 61732);
        // the last segment was made first and pops
        assert!(matches!(ev[0], Event::Segment { next: None, .. }));
        assert!(matches!(ev[1], Event::Segment { next: Some(_), label, .. } if label == l));
    }

    #[test]
    fn a_shared_tail_is_made_once_and_dropped_when_nothing_rides_it() {
        let (mut t, n) = table();
        let mut ev = Vec::new();
        let mut hop = |_: Name, l: u32| l;
        let f1 = t.segment(&[n[0], n[1], n[2]], &[1, 2, 3], 1, 4, &mut hop, &mut ev);
        let f2 = t.segment(&[n[3], n[1], n[2]], &[8, 2, 3], 1, 4, &mut hop, &mut ev);
        assert_eq!(f1, f2);
        assert_eq!(ev.len(), 2);
        let w = |id, g: Name| Want::Rides {
            id,
            group: (g, n[4]),
            target: Target {
                first: f1,
                action: 1,
            },
        };
        let extra = t.update(&[w(1, n[0]), w(2, n[0])], &[], &mut ev);
        assert!(extra.is_empty());
        // two intents from one switch to one host share a head
        let Some(Ingress::Head { label, chain }) = t.ingress(1) else {
            panic!("no head")
        };
        assert_eq!(t.ingress(2), t.ingress(1));
        assert_eq!(chain.len(), 2);
        assert_eq!(t.head_target(label), Some(f1));
        assert_eq!(t.head_riders(label), vec![1, 2]);
        // one leaves: the other pushes the tunnel's label itself and the head goes
        ev.clear();
        let extra = t.update(&[], &[1], &mut ev);
        assert_eq!(extra, vec![2]);
        assert!(matches!(t.ingress(2), Some(Ingress::Tunnel { .. })));
        assert!(ev.contains(&Event::Drop { label }));
        ev.clear();
        t.update(&[], &[2], &mut ev);
        t.drop_idle(&mut ev);
        assert_eq!(t.sizes(), (0, 0));
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, Event::Drop { .. }))
                .count(),
            2
        );
    }
}
