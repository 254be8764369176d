"""The wanted flows of every switch, kept per owner (Faucet's managers writing one plan).

Every contributor of flows (the pipeline, destination trees, intents, tunnel segments, anycast
NAT flows) owns its flows under one cookie and replaces them with :meth:`OwnerPlan.set_owner`.
The plan keeps, per switch, the union of all owners' flows, how many wanted flows hold each
flow key, and what left and joined since the last :meth:`OwnerPlan.take_delta`, so a change
diffs only what moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from controller.network.flows import FlowEntry, FlowPlan, Match

__all__ = ["OwnerPlan"]

_EMPTY: frozenset[FlowEntry] = frozenset()


class OwnerPlan:
    """owner (cookie; 0 for the pipeline) -> dpid -> that owner's flows there, and their
    union per switch."""

    def __init__(self) -> None:
        self._owners: dict[int, dict[int, frozenset[FlowEntry]]] = {}
        self._want: dict[int, set[FlowEntry]] = {}
        self._want_keys: dict[int, dict[tuple[int, int, Match], int]] = {}
        self._delta: dict[int, tuple[set[FlowEntry], set[FlowEntry]]] = {}

    def owner(self, owner: int) -> dict[int, frozenset[FlowEntry]]:
        """The flows of ``owner`` per dpid (live: do not modify)."""
        return self._owners.get(owner, {})

    def owners(self) -> list[int]:
        return list(self._owners)

    def wanted(self, dpid: int) -> set[FlowEntry]:
        """The flows ``dpid`` should hold (live: do not modify)."""
        return self._want.get(dpid, set())

    def wanted_keys(self, dpid: int) -> Mapping[tuple[int, int, Match], int]:
        """Keys of :meth:`wanted` with the number of wanted flows holding each."""
        return self._want_keys.get(dpid, {})

    def snapshot(self) -> FlowPlan:
        return FlowPlan({dpid: frozenset(es) for dpid, es in self._want.items()})

    def take_delta(self) -> dict[int, tuple[set[FlowEntry], set[FlowEntry]]]:
        """Per dpid ``(removed, added)``: the flows that left and joined the plan since the
        last call (net: a flow removed and added back is in neither)."""
        delta, self._delta = self._delta, {}
        return {dpid: d for dpid, d in delta.items() if d[0] or d[1]}

    def set_owner(self, owner: int, flows: dict[int, frozenset[FlowEntry]]) -> None:
        """Replace the flows of ``owner`` (empty: it owns nothing any more). Pass the same
        frozenset objects for switches whose flows did not change: they are skipped."""
        old = self._owners.get(owner)
        if old is flows:
            return
        dpids: Iterable[int]
        if not old:
            old, dpids = {}, flows
        elif not flows or old.keys() == flows.keys():
            # the common moves: an owner gone, or new flows on the same switches (a
            # rerouted intent's ingress)
            dpids = old
        else:
            dpids = old.keys() | flows.keys()
        for dpid in dpids:
            was = old.get(dpid, _EMPTY)
            now = flows.get(dpid, _EMPTY)
            if was is not now and was != now:
                self._move(dpid, was, now)
        if flows:
            self._owners[owner] = flows
        else:
            self._owners.pop(owner, None)

    def set_owner_at(self, owner: int, flows: Mapping[int, frozenset[FlowEntry]]) -> None:
        """Replace the flows of ``owner`` at the switches of ``flows`` only (an empty set:
        none there any more), keeping its flows elsewhere: a change that moves an owner's
        flows at a few of many switches costs those few. The owner's flows are updated in
        place (:meth:`owner` of ``owner`` must not be held as a caller's own)."""
        cur = self._owners.get(owner)
        if cur is None:
            cur = {}
        for dpid, now in flows.items():
            was = cur.get(dpid, _EMPTY)
            if was is not now and was != now:
                self._move(dpid, was, now)
            if now:
                cur[dpid] = now
            else:
                cur.pop(dpid, None)
        if cur:
            self._owners[owner] = cur
        else:
            self._owners.pop(owner, None)

    def _move(self, dpid: int, was: frozenset[FlowEntry], now: frozenset[FlowEntry]) -> None:
        """One switch's flows of one owner go from ``was`` to ``now``: update the union, the
        key counts and the delta."""
        want_of, keys_of, delta_of = self._want, self._want_keys, self._delta
        want = want_of.get(dpid)
        if want is None:
            want = want_of[dpid] = set()
            keys_of[dpid] = {}
        keys = keys_of[dpid]
        d = delta_of.get(dpid)
        if d is None:
            d = delta_of[dpid] = (set(), set())
        removed, added = d
        if len(was) == 1 and len(now) == 1:
            (gone,), (came,) = was, now
            if gone.key == came.key:
                # one flow replaced by another with the same key (a rerouted intent's
                # ingress, a moved destination): the key counts stay as they are
                want.discard(gone)
                want.add(came)
                if gone in added:
                    added.discard(gone)
                else:
                    removed.add(gone)
                if came in removed:
                    removed.discard(came)
                else:
                    added.add(came)
                return
        for e in (was - now) if now else was:
            want.discard(e)
            k = e.key
            n = keys[k]
            if n == 1:
                del keys[k]
            else:
                keys[k] = n - 1
            if e in added:
                added.discard(e)
            else:
                removed.add(e)
        for e in (now - was) if was else now:
            want.add(e)
            k = e.key
            keys[k] = keys.get(k, 0) + 1
            if e in removed:
                removed.discard(e)
            else:
                added.add(e)
