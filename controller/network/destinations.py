"""Table 2: the least-latency destination flows toward every known host.

Each host gets one owner (its destination cookie) with a flow at every switch that can reach
it: ``ipv4_dst`` = the host's address -> the next hop of a reverse shortest-path tree (at the
host's own switch: its host port). Trees are recomputed when the graph or switch presence
changes; only hosts whose tree (or own record) changed get new flows, and a tree that moved
changes only the switches whose next hop moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from controller.network.flows import (
    ETH_TYPE_IPV4,
    PRIORITY_DESTINATION,
    TABLE_DESTINATIONS,
    FlowEntry,
    destination_cookie,
)
from controller.network.plan import OwnerPlan

if TYPE_CHECKING:
    from controller.network.state import NetworkState

__all__ = ["Destinations"]


class Destinations:
    """The destination flows of every host, written into ``plan``."""

    def __init__(self, state: NetworkState, plan: OwnerPlan) -> None:
        self.state = state
        self.plan = plan
        self._trees: dict[str, dict[int, int]] = {}
        self._trees_version = -1
        self._version = -1
        self._sources: dict[int, list[tuple[Any, dict[int, int]]]] = {}
        """destination cookie -> [(host, its tree)] (two hosts may share an address)"""

    def refresh(self) -> None:
        """Bring the destination flows up to date (nothing to do if the state is unchanged)."""
        st = self.state
        if self._version == st.version:
            return
        self._version = st.version
        if self._trees_version != st.graph_version:
            self._trees = {}
            self._trees_version = st.graph_version
        # switch presence, asked once per switch for all the trees below
        present = {n: st.node_present(n) for n in st.wiring.node_dpid}
        sources: dict[int, list[tuple[Any, dict[int, int]]]] = {}
        for name in sorted(st.hosts):
            if not st.host_usable(name):
                continue
            h = st.hosts[name]
            if not present[h.node]:
                continue
            tree = self._trees.get(h.node)
            if tree is None:
                tree = self._trees[h.node] = self.tree(h.node, present)
            sources.setdefault(destination_cookie(h.ip), []).append((h, tree))
        plan = self.plan
        for cookie in [c for c in self._sources if c not in sources]:
            del self._sources[cookie]
            plan.set_owner(cookie, {})
        for cookie, src in sources.items():
            prev = self._sources.get(cookie)
            if prev == src:
                continue
            self._sources[cookie] = src
            if prev is not None and len(src) == 1 and len(prev) == 1 and prev[0][0] == src[0][0]:
                self._move(cookie, src[0][0], prev[0][1], src[0][1])
                continue
            per: dict[int, set[FlowEntry]] = {}
            for h, tree in src:
                match = (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip))
                for dpid, port_no in tree.items():
                    per.setdefault(dpid, set()).add(FlowEntry(
                        TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                        (("output", port_no),), cookie))
                per.setdefault(h.dpid, set()).add(FlowEntry(
                    TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                    (("output", h.port_no),), cookie))
            # keep the old set object where a switch's flows did not change: a cut changes
            # the next hop of a few switches per tree, and set_owner skips an identical set
            old = plan.owner(cookie)
            plan.set_owner(cookie, {dpid: old[dpid] if dpid in old and old[dpid] == es
                                    else frozenset(es) for dpid, es in per.items()})

    def _move(self, cookie: int, h: Any, before: dict[int, int],
              after: dict[int, int]) -> None:
        """The destination flows of host ``h`` (the only host of ``cookie``) when its tree
        changed from ``before`` to ``after``: new flows only where the next hop changed (a cut
        moves a few switches of each tree)."""
        flows = dict(self.plan.owner(cookie))
        for dpid in before.keys() - after.keys():
            flows.pop(dpid, None)
        match = (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip))
        for dpid, port_no in after.items():
            if before.get(dpid) != port_no or dpid not in flows:
                flows[dpid] = frozenset({FlowEntry(TABLE_DESTINATIONS, PRIORITY_DESTINATION,
                                                   match, (("output", port_no),), cookie)})
        self.plan.set_owner(cookie, flows)

    def tree(self, node: str, present: Mapping[str, bool] | None = None) -> dict[int, int]:
        """For every other switch that can reach ``node``: dpid -> out port on a least-latency
        path toward it. One reverse shortest-path tree from pathcore
        (``Graph.shortest_path_tree``): each switch's next hop leads to a switch settled
        before it, so the next hops form a tree (no loops even with equal-latency
        alternatives or zero-latency links). ``present``: node -> switch present, when the
        caller has it for every node already."""
        st = self.state
        node_dpid = st.wiring.node_dpid
        return {node_dpid[u]: st.out_port(u, lid)
                for u, lid in st.graph.shortest_path_tree(node, "latency").items()
                if (present[u] if present is not None else st.node_present(u))}
