"""MPLS tunnels: the label-switched paths unprotected intents ride.

An unprotected intent whose path crosses switches rides a tunnel: its ingress flow pushes an
MPLS label and every later switch forwards by the label alone (the last one pops it and
delivers to the host). A tunnel is a chain of segments, one per switch after the ingress:
segment (switch, links from it to the egress, egress host port) has one flow at its switch
that matches its label, swaps it for the next segment's label and outputs toward the next
switch (the last segment pops the label and outputs to the host). Every intent whose path has
the same tail from some switch on shares the segments from there, so a reroute sends one
ingress FlowMod per moved intent plus the flows of the segments that are new: a detour that
rejoins the old path needs new segments only up to where it rejoins. Labels are a stable hash
of the segment, so a restarted controller computes the same ones.

A segment lives while an intent enters it or a segment swaps to it (reference counts), so a
label a flow swaps to never changes under it.
"""

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
    TABLE_INTENTS,
    FlowEntry,
    Instructions,
    make_cookie,
)
from controller.network.plan import OwnerPlan

if TYPE_CHECKING:
    from controller.network.intents import Intent
    from controller.network.state import NetworkState

__all__ = ["TunnelKey", "Tunnels"]

TunnelKey = tuple[str, tuple[int, ...], int]
"""a tunnel segment: (its switch, the links from it to the egress switch, egress host port)"""


class Tunnels:
    """The tunnel segments in use, written into ``plan`` (owner: the segment's label)."""

    def __init__(self, state: NetworkState, plan: OwnerPlan) -> None:
        self.state = state
        self.plan = plan
        self._labels: dict[TunnelKey, int] = {}
        """segment -> its label"""
        self._keys: dict[int, TunnelKey] = {}
        """label -> its segment (the reverse of ``_labels``)"""
        self._next: dict[int, int | None] = {}
        """label -> the label its switch swaps to (None: the last segment, which pops)"""
        self._refs: dict[int, int] = {}
        """label -> intents entering the tunnel at this segment + segments swapping to it"""
        self._heads: dict[int, set[int]] = {}
        """label -> ids of the intents whose ingress pushes it"""
        self._intent_label: dict[int, int] = {}
        """intent id -> the label its ingress pushes"""
        self._chains: dict[int, tuple[int, ...]] = {}
        """label -> the labels a packet pushed with it carries, switch by switch (fixed while
        the label lives: a segment's next segment never changes)"""
        self._idle: set[int] = set()
        """labels whose references dropped to 0 (removed by :meth:`drop_idle`)"""

    def attach(self, intent: Intent) -> int | None:
        """Put ``intent`` on the tunnel it should ride (its segments made if new), off the one
        it rode; the label its ingress pushes, or None (protected, single-switch or unrouted
        intents ride none). Segments left without references are removed by
        :meth:`drop_idle`, so an intent attached later in the same refresh can still take them
        over. Sets the intent's ``mpls_label`` and ``mpls_labels``."""
        iid = intent.id
        path, links = intent.path, intent.links
        old = self._intent_label.get(iid)
        label = None
        chain: tuple[int, ...] = ()
        spec = intent.spec
        if path is not None and links is not None and len(path) > 1 \
                and not spec.protection:
            hosts = self.state.hosts
            dst = hosts.get(spec.dst)
            if dst is not None and spec.src in hosts:
                label = self._labels.get((path[1], links[1:], dst.port_no))
                if label is not None and label == old:
                    # the same tunnel (a refresh for another reason): nothing moves
                    intent.mpls_label = label
                    chain = intent.mpls_labels = self._chains[label]
                    return label
                if old is not None:
                    self._let_go(iid, old)
                if label is None:
                    label = self._segment(path, links, 1, dst.port_no)
                self._refs[label] += 1
                heads = self._heads.get(label)
                if heads is None:
                    heads = self._heads[label] = set()
                heads.add(iid)
                self._intent_label[iid] = label
                chain = self._chains[label]
                intent.mpls_label = label
                intent.mpls_labels = chain
                return label
        if old is not None:
            self._let_go(iid, old)
        intent.mpls_label = label
        intent.mpls_labels = chain
        return label

    def _let_go(self, intent_id: int, label: int) -> None:
        """``intent_id``'s ingress pushes ``label`` no more."""
        del self._intent_label[intent_id]
        self._heads[label].discard(intent_id)
        self._unref(label)

    def detach(self, intent_id: int) -> None:
        """``intent_id``'s ingress pushes no label any more."""
        label = self._intent_label.get(intent_id)
        if label is not None:
            self._let_go(intent_id, label)

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
        self._next[label] = nxt
        self._chains[label] = (label,) if nxt is None else (label,) + self._chains[nxt]
        if nxt is None:
            inst: Instructions = (("pop_mpls", ETH_TYPE_IPV4), ("output", egress_port))
        else:
            self._refs[nxt] += 1
            inst = (("set_field", ("mpls_label", nxt)), ("output", st.out_port(path[k], links[k])))
        cookie = make_cookie(OWNER_TUNNEL, label)
        self.plan.set_owner(cookie, {st.wiring.node_dpid[path[k]]: frozenset({FlowEntry(
            TABLE_INTENTS, PRIORITY_TUNNEL, (("eth_type", ETH_TYPE_MPLS), ("mpls_label", label)),
            inst, cookie)})})
        return label

    def _new_label(self, tkey: TunnelKey) -> int:
        """A free label for a new segment: a stable hash of the segment (so a restarted
        controller picks the same labels and adopts the switches' flows unchanged), moved on
        to the next free one in the rare case of a collision."""
        taken = self._refs
        label = MPLS_LABEL_MIN + zlib.crc32(repr(tkey).encode()) % MPLS_LABEL_SPACE
        for _ in range(MPLS_LABEL_SPACE):
            if label not in taken:
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
                    continue  # taken over by an intent refreshed later
                del self._refs[label]
                self._heads.pop(label, None)
                del self._labels[self._keys.pop(label)]
                del self._chains[label]
                self.plan.set_owner(make_cookie(OWNER_TUNNEL, label), {})
                nxt = self._next.pop(label)
                if nxt is not None:
                    self._unref(nxt)

    def riders(self) -> dict[int, list[int]]:
        """label -> ids of the intents whose traffic carries it (the intents whose ingress
        pushes it and those of every segment that swaps to it)."""
        riders: dict[int, set[int]] = {label: set() for label in self._refs}
        for head, ids in self._heads.items():
            for label in self._chains[head]:
                riders[label] |= ids
        return {label: sorted(ids) for label, ids in sorted(riders.items())}
