"""The reference model of the tunnel table, in plain Python: the oracle
``tests/unit/test_tunnel_table.py`` holds pathcore's ``TunnelTable``
(``pathcore/src/tunnels.rs``, used through ``controller/network/tunnels.py``) to, change for
change. ``controller/network/tunnels.py`` documents the model."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from controller.network.flows import (
    ETH_TYPE_IPV4,
    ETH_TYPE_MPLS,
    MPLS_LABEL_MIN,
    MPLS_LABEL_SPACE,
    OWNER_TUNNEL,
    PRIORITY_TUNNEL,
    TABLE_HEADS,
    TABLE_INTENTS,
    Action,
    FlowEntry,
    Instructions,
    make_cookie,
)
from controller.network.plan import OwnerPlan

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from controller.network.intents import Intent
    from controller.network.state import NetworkState

__all__ = ["ReferenceTunnels"]

TunnelKey = tuple[str, tuple[int, ...], int]
"""a tunnel segment: (its switch, the links from it to the egress switch, egress host port)"""

Target = tuple[int, Action]
"""where a head sends its packets: (the label of the tunnel's first segment, how it leaves the
switch: its output port, or the port's bypass group under fast reroute)"""


class Head:
    """A head: one flow at an ingress switch (table 3) that swaps the head's label for a
    tunnel's first label and outputs toward the next switch."""

    __slots__ = ("label", "key", "target", "riders")

    def __init__(self, label: int, key: tuple[str, str]) -> None:
        self.label = label
        self.key = key
        """(ingress node, destination host)"""
        self.target: Target | None = None
        self.riders: set[int] = set()
        """the intents whose ingress pushes this head's label"""


class ReferenceTunnels:
    """The tunnel segments and heads in use, written into ``plan`` (owner: the label)."""

    def __init__(self, state: NetworkState, plan: OwnerPlan,
                 hop: Callable[[str, int], Action] | None = None) -> None:
        self.state = state
        self.plan = plan
        self._hop = hop if hop is not None else (
            lambda node, link_id: ("output", state.out_port(node, link_id)))
        """(node, pathcore link id) -> the action sending a labelled packet over that link"""
        self._labels: dict[TunnelKey, int] = {}
        """segment -> its label"""
        self._keys: dict[int, TunnelKey] = {}
        """label -> its segment (the reverse of ``_labels``)"""
        self._next: dict[int, int | None] = {}
        """label -> the label its switch swaps to (None: the last segment, which pops)"""
        self._refs: dict[int, int] = {}
        """segment label -> intents whose tunnel starts there, heads and segments swapping
        to it"""
        self._chains: dict[int, tuple[int, ...]] = {}
        """label -> the labels a packet pushed with it carries, switch by switch (fixed while
        the label lives: a segment's next segment never changes)"""
        self._idle: set[int] = set()
        """labels whose references dropped to 0 (removed by :meth:`drop_idle`)"""
        self._heads: dict[int, Head] = {}
        """head label -> head"""
        self._head_at: dict[tuple[str, str], Head] = {}
        """head key -> head"""
        self._head_of: dict[int, Head] = {}
        """intent id -> the head its ingress pushes"""
        self._target_of: dict[int, Target] = {}
        """intent id -> the tunnel its route wants (intents that ride one)"""
        self._group_of: dict[int, tuple[str, str]] = {}
        """intent id -> (ingress node, destination host): the shared head it belongs to"""
        self._members: dict[tuple[str, str], set[int]] = {}
        """(ingress node, destination host) -> the intents that ride a tunnel from there"""

    # -- intents onto heads -----------------------------------------------------------------
    def update(self, changed: Iterable[Intent], removed: Iterable[int]) -> set[int]:
        """Put every intent of ``changed`` (its route or hosts may have changed) on its tunnel
        (segments made if new) and its head, and take the ``removed`` intents off theirs
        (:meth:`ingress` then tells each what its ingress pushes). Returns the ids of other
        intents whose head changed with them (members of a shared head that now points
        elsewhere, or that is made or dropped): their ingress flows change too. Segments left
        without references are removed by :meth:`drop_idle`."""
        groups: set[tuple[str, str]] = set()
        members, group_of, target_of = self._members, self._group_of, self._target_of
        for iid in removed:
            g = group_of.pop(iid, None)
            if g is not None:
                members[g].discard(iid)
                groups.add(g)
            self._untarget(iid)
            self._leave(iid)
        dirty: set[int] = set()
        moved_in: dict[tuple[str, str], list[int]] = {}
        """group -> its intents whose target changed (or that have no head yet)"""
        hosts = self.state.hosts
        labels = self._labels
        hop = self._hop
        targets: dict[tuple[tuple[int, ...], int], Target] = {}
        """(links, egress port) -> the tunnel of that route, found in this call"""
        for intent in changed:
            iid = intent.id
            dirty.add(iid)
            path, links = intent.path, intent.links
            spec = intent.spec
            g = group_of.get(iid)
            target: Target | None = None
            if path is not None and links is not None and len(path) > 1 \
                    and not spec.protection:
                dst = hosts.get(spec.dst)
                if dst is not None and spec.src in hosts:
                    # intents routed together on one path share its links tuple (see
                    # IntentTable._route): its tunnel is looked up once
                    tkey = (links, dst.port_no)
                    target = targets.get(tkey)
                    if target is None:
                        first = labels.get((path[1], links[1:], dst.port_no))
                        if first is None:
                            first = self._segment(path, links, 1, dst.port_no)
                        target = targets[tkey] = (first, hop(path[0], links[0]))
                    new_g = (path[0], spec.dst)
                    if g != new_g:
                        if g is not None:
                            members[g].discard(iid)
                            groups.add(g)
                        ms = members.get(new_g)
                        if ms is None:
                            ms = members[new_g] = set()
                        ms.add(iid)
                        group_of[iid] = new_g
                        groups.add(new_g)
                    old = target_of.get(iid)
                    if old != target or iid not in self._head_of:
                        if old != target:  # an intent holds its tunnel's first segment
                            self._refs[target[0]] += 1
                            target_of[iid] = target
                            if old is not None:
                                self._unref(old[0])
                        groups.add(new_g)
                        moved = moved_in.get(new_g)
                        if moved is None:
                            moved_in[new_g] = [iid]
                        else:
                            moved.append(iid)
                    continue
            # rides no tunnel (protected, single-switch, fallen back or not routed)
            if g is not None:
                members[g].discard(iid)
                del group_of[iid]
                groups.add(g)
            self._untarget(iid)
            self._leave(iid)
            intent.mpls_label = None
            intent.mpls_labels = ()
        extra: set[int] = set()
        head_of = self._head_of
        for g in sorted(groups):
            ms = members.get(g)
            if not ms:
                members.pop(g, None)
                continue
            lead = target_of[min(ms)]
            shared = self._head_at.get(g)
            if shared is None:
                shared = self._new_head(g)
            if shared.target != lead:
                self._retarget(shared, lead)
                check = sorted(ms)  # every member: some now match it, others no more
            else:  # only the members whose own target changed
                check = sorted(iid for iid in moved_in.get(g, ()) if iid in ms)
            for iid in check:
                want = shared if target_of[iid] == lead else None
                cur = head_of.get(iid)
                if cur is not want:
                    if cur is not None:
                        cur.riders.discard(iid)
                    if want is None:
                        del head_of[iid]
                    else:
                        want.riders.add(iid)
                        head_of[iid] = want
                    if iid not in dirty:
                        extra.add(iid)
            if len(shared.riders) == 1:
                # a head for one intent would be one more flow and no fewer messages: it
                # pushes its tunnel's label itself
                (only,) = shared.riders
                shared.riders.clear()
                del head_of[only]
                if only not in dirty:
                    extra.add(only)
        for head in [h for h in self._heads.values() if not h.riders]:
            self._drop_head(head)
        return extra

    def ingress(self, intent: Intent) -> tuple[int, Action | None] | None:
        """What ``intent``'s ingress flow does (after :meth:`update`): ``(label, None)``: push
        its head's label and go to table 3; ``(label, action)``: push its tunnel's first label
        and leave by ``action`` (output on a port, or its bypass group); None: it rides no
        tunnel. Sets the intent's ``mpls_label``
        and ``mpls_labels``."""
        iid = intent.id
        head = self._head_of.get(iid)
        if head is not None and head.target is not None:
            intent.mpls_label = head.label
            intent.mpls_labels = self._chains[head.target[0]]
            return head.label, None
        target = self._target_of.get(iid)
        if target is None:
            intent.mpls_label = None
            intent.mpls_labels = ()
            return None
        intent.mpls_label = target[0]
        intent.mpls_labels = self._chains[target[0]]
        return target

    def _untarget(self, intent_id: int) -> None:
        """``intent_id`` rides no tunnel any more."""
        old = self._target_of.pop(intent_id, None)
        if old is not None:
            self._unref(old[0])

    def _leave(self, intent_id: int) -> None:
        """``intent_id``'s ingress pushes its head's label no more."""
        head = self._head_of.pop(intent_id, None)
        if head is not None:
            head.riders.discard(intent_id)

    def _new_head(self, key: tuple[str, str]) -> Head:
        label = self._new_label(("head",) + key)
        head = Head(label, key)
        self._heads[label] = head
        self._head_at[key] = head
        return head

    def _retarget(self, head: Head, target: Target) -> None:
        """Point ``head`` at ``target``: its one flow swaps to the tunnel's first label."""
        old = head.target
        first, action = target
        self._refs[first] += 1
        head.target = target
        if old is not None:
            self._unref(old[0])
        cookie = make_cookie(OWNER_TUNNEL, head.label)
        self.plan.set_owner(cookie, {self.state.wiring.node_dpid[head.key[0]]: frozenset({
            FlowEntry(TABLE_HEADS, PRIORITY_TUNNEL,
                      (("eth_type", ETH_TYPE_MPLS), ("mpls_label", head.label)),
                      (("set_field", ("mpls_label", first)), action), cookie)})})

    def _drop_head(self, head: Head) -> None:
        del self._heads[head.label]
        del self._head_at[head.key]
        self.plan.set_owner(make_cookie(OWNER_TUNNEL, head.label), {})
        if head.target is not None:
            self._unref(head.target[0])
            head.target = None

    def head_target(self, label: int) -> int | None:
        """The first label of the tunnel head ``label`` points at (None: not a head)."""
        head = self._heads.get(label)
        return None if head is None or head.target is None else head.target[0]

    def first_segment(self, label: int) -> int:
        """The first label of the tunnel a packet pushed with ``label`` rides: the target
        of a head, else ``label`` itself (an ingress that pushes its tunnel's label)."""
        head = self._heads.get(label)
        return label if head is None or head.target is None else head.target[0]

    def head_riders(self, label: int) -> set[int]:
        """The ids of the intents whose ingress pushes head ``label`` (live: do not
        modify)."""
        head = self._heads.get(label)
        return set() if head is None else head.riders

    # -- segments ------------------------------------------------------------------------------
    def _segment(self, path: tuple[str, ...], links: tuple[int, ...], k: int,
                 egress_port: int) -> int:
        """The label of segment ``k`` of ``path`` (its switch ``path[k]``), made with the
        segments after it if new."""
        skey = (path[k], links[k:], egress_port)
        label = self._labels.get(skey)
        if label is not None:
            return label
        st = self.state
        last = k == len(path) - 1
        nxt = None if last else self._segment(path, links, k + 1, egress_port)
        label = self._new_label(skey)
        self._labels[skey] = label
        self._keys[label] = skey
        self._refs[label] = 0
        self._idle.add(label)  # until an intent, a head or a segment takes it
        self._next[label] = nxt
        self._chains[label] = (label,) if nxt is None else (label,) + self._chains[nxt]
        if nxt is None:
            inst: Instructions = (("pop_mpls", ETH_TYPE_IPV4), ("output", egress_port))
        else:
            self._refs[nxt] += 1
            inst = (("set_field", ("mpls_label", nxt)), self._hop(path[k], links[k]))
        cookie = make_cookie(OWNER_TUNNEL, label)
        self.plan.set_owner(cookie, {st.wiring.node_dpid[path[k]]: frozenset({FlowEntry(
            TABLE_INTENTS, PRIORITY_TUNNEL, (("eth_type", ETH_TYPE_MPLS), ("mpls_label", label)),
            inst, cookie)})})
        return label

    def _new_label(self, tkey: tuple[object, ...]) -> int:
        """A free label for a new segment or head: a stable hash of its key (so a restarted
        controller picks the same labels and adopts the switches' flows unchanged), moved on
        to the next free one in the rare case of a collision."""
        segments, heads = self._refs, self._heads
        label = MPLS_LABEL_MIN + zlib.crc32(repr(tkey).encode()) % MPLS_LABEL_SPACE
        for _ in range(MPLS_LABEL_SPACE):
            if label not in segments and label not in heads:
                return label
            label = MPLS_LABEL_MIN + (label - MPLS_LABEL_MIN + 1) % MPLS_LABEL_SPACE
        raise RuntimeError("every MPLS label is in use")

    def _unref(self, label: int) -> None:
        n = self._refs[label] - 1
        self._refs[label] = n
        if n == 0:
            self._idle.add(label)

    def drop_idle(self) -> None:
        """Remove the segments nothing refers to any more; a removed segment lets go of the
        next one, which may go too."""
        while self._idle:
            idle, self._idle = self._idle, set()
            for label in sorted(idle):
                if self._refs.get(label, 1) > 0:
                    continue  # taken over by a head or segment made later
                del self._refs[label]
                del self._labels[self._keys.pop(label)]
                del self._chains[label]
                self.plan.set_owner(make_cookie(OWNER_TUNNEL, label), {})
                nxt = self._next.pop(label)
                if nxt is not None:
                    self._unref(nxt)

    def riders(self) -> dict[int, list[int]]:
        """label -> ids of the intents whose traffic carries it (a head: the intents whose
        ingress pushes it; a segment: those of every head whose tunnel crosses it and the
        intents that push a label of that tunnel themselves)."""
        riders: dict[int, set[int]] = {label: set() for label in self._refs}
        for head in self._heads.values():
            riders[head.label] = set(head.riders)
            if head.target is not None:
                for label in self._chains[head.target[0]]:
                    riders[label] |= head.riders
        head_of = self._head_of
        for iid, (first, _) in self._target_of.items():
            if iid not in head_of:  # its ingress pushes its tunnel's label itself
                for label in self._chains[first]:
                    riders[label].add(iid)
        return {label: sorted(ids) for label, ids in sorted(riders.items())}
