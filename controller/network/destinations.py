"""Table 2: the least-latency destination flows toward every known host.

Each host gets one owner (its destination cookie) and a least-latency reverse shortest-path
tree toward its switch: every switch that can reach it forwards ``ipv4_dst`` = the host's
address to its next hop on the tree (at the host's own switch: out of its host port).

Flows are aggregated by a **default route** per switch, without changing any path: a switch
whose tree next hops toward many hosts leave by the same port (on a carrier map most switches
have two or three links, so most hosts are reached through one of them) gets one
lower-priority flow for the hosts' address block (the smallest prefix holding every host
address) out of that port, and an exact flow only for the hosts whose next hop differs. A
host's packets still take its tree's next hop at every switch: either its exact flow or the
default, which is the same port. Packets to an address no host has follow the default routes,
which form no loop (a cycle of defaults is broken at one switch, which keeps exact flows for
all its hosts), until a switch without a default sends them to the controller (the table-2
miss, as before; a packet-in from a link port teaches no host). On the 754-switch Kdl map this
takes table 2 from 754 flows per switch to tens (``benchmarks/bench_scale.py``).

Trees are kept between changes by pathcore's :class:`~pathcore.ReverseTrees` (one reverse
least-latency tree per host switch, the next hops ``Graph.shortest_path_arrays`` gives), which
answers each change of links with only the next hops that moved: it keeps the trees the
change cannot touch (a link that went down and is no switch's next hop, a link that came up
and offers its end only a longer path), extends in place a tree a switch joined as a leaf, and
recomputes the others in parallel. A cut on the 754-switch Kdl map thus costs the Python side
the few next hops per tree that moved, not 754 per tree. Only hosts whose tree (or own record)
changed, and the switches whose default moved, get new flows, and only at the switches where
they changed. Trees and defaults are a function of the state alone, so a restarted controller
computes the same flows.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from controller.network.flows import (
    ETH_TYPE_IPV4,
    OWNER_DESTINATION,
    OWNER_ID_MASK,
    PRIORITY_DESTINATION,
    TABLE_DESTINATIONS,
    Action,
    FlowEntry,
    Match,
    destination_cookie,
    make_cookie,
)
from controller.network.plan import OwnerPlan
from controller.topology.wiring import LinkPeer
from pathcore import ReverseTrees

if TYPE_CHECKING:
    from controller.network.state import NetworkState

__all__ = ["DEFAULT_ROUTE_COOKIE", "DEFAULT_ROUTE_MIN_HOSTS", "PRIORITY_DEFAULT_ROUTE",
           "Destinations", "covering_prefix", "default_routes"]

DEFAULT_ROUTE_MIN_HOSTS = 2
"""a switch gets a default route when at least this many hosts' next hops share its port (with
one, the default would replace one exact flow by one default flow)"""
PRIORITY_DEFAULT_ROUTE = 50
"""below the hosts' exact flows (:data:`PRIORITY_DESTINATION`), above the table miss"""
DEFAULT_ROUTE_COOKIE = make_cookie(OWNER_DESTINATION, 0)
"""owner of the default routes (0.0.0.0 is no host's address)"""
_Sources = list[tuple[Any, dict[int, int]]]
"""the hosts of one destination cookie with their trees (two hosts may share an address)"""


def covering_prefix(addresses: Iterable[int]) -> tuple[str, int] | None:
    """The smallest IPv4 prefix holding every address (as integers), as ``(network, prefix
    length)``; None for no address."""
    ints = list(addresses)
    if not ints:
        return None
    length = 32 - (min(ints) ^ max(ints)).bit_length()
    mask = ((1 << 32) - 1) ^ ((1 << (32 - length)) - 1)
    return str(ipaddress.IPv4Address(min(ints) & mask)), length


def default_routes(counts: Mapping[int, Mapping[int, int]],
                   next_switch: Mapping[tuple[int, int], int]) -> dict[int, int]:
    """The default port of each switch: the port most of its tree next hops use (ties: the
    lowest port), where at least :data:`DEFAULT_ROUTE_MIN_HOSTS` do; then loop-free: the defaults
    are followed from every switch and a cycle is broken at its switch with the fewest
    hosts behind its default (ties: the lowest dpid).

    ``counts``: dpid -> out port -> how many hosts' next hop it is; ``next_switch``:
    (dpid, port) -> the switch at the other end of the link."""
    chosen: dict[int, int] = {}
    for dpid, per_port in counts.items():
        best = max(per_port.items(), key=lambda kv: (kv[1], -kv[0]), default=None)
        if best is not None and best[1] >= DEFAULT_ROUTE_MIN_HOSTS \
                and (dpid, best[0]) in next_switch:
            chosen[dpid] = best[0]
    done: set[int] = set()
    for start in sorted(chosen):
        walk: list[int] = []
        on_walk: set[int] = set()
        u: int | None = start
        while u is not None and u in chosen and u not in done:
            if u in on_walk:  # a cycle: the part of the walk from u on
                cycle = walk[walk.index(u):]
                del chosen[min(cycle, key=lambda d: (counts[d][chosen[d]], d))]
                break
            walk.append(u)
            on_walk.add(u)
            u = next_switch[(u, chosen[u])]
        done.update(walk)
    return chosen


class Destinations:
    """The destination flows of every host, written into ``plan``."""

    def __init__(self, state: NetworkState, plan: OwnerPlan,
                 forward: Callable[[int], Action] | None = None) -> None:
        self.state = state
        self.plan = plan
        self._forward = forward
        """how a flow sends a packet out of a port toward another switch (None: output;
        fast reroute: through the port's IPv4 bypass group)"""
        self._trees: dict[str, dict[int, int]] = {}
        self._trees_version = -1
        self._version = -1
        self._sources: dict[int, _Sources] = {}
        """destination cookie -> its hosts and their trees"""
        self._counts: dict[int, Counter[int]] = {}
        """dpid -> out port -> number of trees whose next hop it is"""
        self._defaults: dict[int, int] = {}
        """dpid -> default port (see :func:`default_routes`)"""
        self._prefix: tuple[str, int] | None = None
        self._cookie_of: dict[str, int] = {}
        """host address -> its destination cookie (parsing the address is not free)"""
        self._next_switch: dict[tuple[int, int], int] = {}
        """(dpid, link port) -> the switch at the link's other end"""
        for dpid in state.wiring.node_dpid.values():
            for port in state.wiring.ports_of(dpid):
                peer = state.wiring.peer(dpid, port)
                if peer is not None and peer[0] == "link":
                    self._next_switch[(dpid, port)] = cast(LinkPeer, peer)[2]
        self._forest = ReverseTrees(state.graph, "latency")
        """the trees' next hops by engine node and link ids, kept up to date by pathcore"""
        self._trees_version = -1
        self._roots: list[str] = []
        node_dpid = state.wiring.node_dpid
        self._node_dpid = [node_dpid[n] for n in state.graph.nodes()]
        """engine node id -> its dpid"""
        self._hop: dict[int, tuple[str, int]] = {}
        """engine link id -> (its tail node, the tail's out port)"""
        for lk in state.graph.links():
            self._hop[lk.id] = (lk.u, state.out_port(lk.u, lk.id))

    @property
    def defaults(self) -> dict[int, int]:
        """dpid -> the port of its default route (live: do not modify)."""
        return self._defaults

    def refresh(self) -> None:
        """Bring the destination flows up to date (nothing to do if the state is unchanged)."""
        st = self.state
        if self._version == st.version:
            return
        self._version = st.version
        # switch presence, asked once per switch for all the trees below
        present = {n: st.node_present(n) for n in st.wiring.node_dpid}
        usable = [st.hosts[name] for name in sorted(st.hosts)
                  if st.host_usable(name) and present[st.hosts[name].node]]
        roots = sorted({h.node for h in usable})
        tree_moves: dict[str, list[tuple[int, int | None, int | None]]] = {}
        """root -> (dpid, next-hop port before, after; None: none) where its tree moved"""
        if self._trees_version != st.graph_version or roots != self._roots:
            self._trees_version, self._roots = st.graph_version, roots
            tree_moves = self._update_trees(roots, present)
        sources: dict[int, _Sources] = {}
        for h in usable:
            tree = self._trees[h.node]
            cookie = self._cookie_of.get(h.ip)
            if cookie is None:
                cookie = self._cookie_of[h.ip] = destination_cookie(h.ip)
            sources.setdefault(cookie, []).append((h, tree))
        plan = self.plan
        counts = self._counts
        changed: dict[int, _Sources | None] = {}
        """cookie -> its sources before (None: new); gone cookies are removed at once"""
        gone = [c for c in self._sources if c not in sources]
        for cookie in gone:
            self._count(self._sources.pop(cookie), -1)
            plan.set_owner(cookie, {})
        moves: dict[int, set[int]] = {}
        """cookie of one host whose tree changed -> the switches whose next hop did"""
        for cookie, src in sources.items():
            prev = self._sources.get(cookie)
            if prev == src:
                continue
            if prev is not None and len(src) == len(prev) == 1 and prev[0][0] == src[0][0]:
                # a tree moved: count only what changed (a cut moves a few next hops of a
                # tree, a switch joining one)
                hops = tree_moves.get(src[0][0].node)
                if hops is None:  # the same tree, another dict (e.g. a root held again)
                    before, after = prev[0][1], src[0][1]
                    hops = [(d, before.get(d), after.get(d)) for d in
                            {d for d, _ in before.items() ^ after.items()}]
                self._count_items(((d, p) for d, p, _ in hops if p is not None), -1)
                self._count_items(((d, p) for d, _, p in hops if p is not None), +1)
                moves[cookie] = {d for d, _, _ in hops}
            else:
                if prev is not None:
                    self._count(prev, -1)
                self._count(src, +1)
            self._sources[cookie] = src
            changed[cookie] = prev
        if not gone and not changed:
            return  # no host and no tree changed: neither did the defaults
        old_defaults = self._defaults
        self._defaults = default_routes(counts, self._next_switch)
        moved = {d for d in old_defaults.keys() | self._defaults.keys()
                 if old_defaults.get(d) != self._defaults.get(d)}
        prefix = self._prefix if not gone and all(
            changed[c] is not None for c in changed) else covering_prefix(
            c & OWNER_ID_MASK for c in sources)
        if prefix != self._prefix or moved:
            self._prefix = prefix
            self._set_default_flows()
        for cookie, src in self._sources.items():
            prev = changed.get(cookie, src)
            if cookie not in changed and not moved:
                continue
            if prev is None or len(src) != 1 or len(prev) != 1 or prev[0][0] != src[0][0]:
                self._rebuild(cookie, src, None)
                continue
            tree = src[0][1]
            revisit = {d for d in moved if d in tree} | moves.get(cookie, set())
            if revisit:
                self._rebuild(cookie, src, revisit)

    def _count(self, src: _Sources, sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) the next hops of ``src``'s trees."""
        for _, tree in src:
            self._count_items(tree.items(), sign)

    def _count_items(self, items: Iterable[tuple[int, int]], sign: int) -> None:
        """Add (``sign`` 1) or take away (-1) next hops (dpid, port)."""
        counts = self._counts
        for dpid, port_no in items:
            c = counts.get(dpid)
            if c is None:
                c = counts[dpid] = Counter()
            c[port_no] += sign
            if not c[port_no]:
                del c[port_no]

    def _set_default_flows(self) -> None:
        prefix = self._prefix
        if prefix is None:
            self.plan.set_owner(DEFAULT_ROUTE_COOKIE, {})
            return
        match: Match = (("eth_type", ETH_TYPE_IPV4),)
        if prefix[1] == 32:
            match += (("ipv4_dst", prefix[0]),)
        elif prefix[1]:
            mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix[1]}").netmask)
            match += (("ipv4_dst", (prefix[0], mask)),)
        old = self.plan.owner(DEFAULT_ROUTE_COOKIE)
        flows: dict[int, frozenset[FlowEntry]] = {}
        fwd = self._forward
        for dpid, port_no in self._defaults.items():
            es = frozenset({FlowEntry(TABLE_DESTINATIONS, PRIORITY_DEFAULT_ROUTE, match,
                                      (fwd(port_no) if fwd else ("output", port_no),),
                                      DEFAULT_ROUTE_COOKIE)})
            flows[dpid] = old[dpid] if old.get(dpid) == es else es
        self.plan.set_owner(DEFAULT_ROUTE_COOKIE, flows)

    def _rebuild(self, cookie: int, src: _Sources, dpids: Collection[int] | None) -> None:
        """Set the flows of ``cookie`` at ``dpids`` (None: everywhere) from its hosts' trees:
        an exact flow where the next hop is not the switch's default (always at the host's
        own switch). A switch's unchanged set is kept as is (the plan skips it)."""
        defaults = self._defaults
        fwd = self._forward
        per: dict[int, set[FlowEntry]] = {}
        for h, tree in src:
            match = (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip))
            items: Iterable[tuple[int, int]] = tree.items() if dpids is None else (
                (d, tree[d]) for d in dpids if d in tree)
            for dpid, port_no in items:
                if defaults.get(dpid) != port_no:
                    per.setdefault(dpid, set()).add(FlowEntry(
                        TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                        (fwd(port_no) if fwd else ("output", port_no),), cookie))
            if dpids is None or h.dpid in dpids:
                per.setdefault(h.dpid, set()).add(FlowEntry(
                    TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                    (("output", h.port_no),), cookie))
        old = self.plan.owner(cookie)
        if dpids is None:
            # keep the old set object where a switch's flows did not change: the plan
            # skips an identical set
            self.plan.set_owner(cookie, {
                dpid: old[dpid] if dpid in old and old[dpid] == es else frozenset(es)
                for dpid, es in per.items()})
            return
        # only the switches asked for: a cut moves a few next hops of each of many trees
        empty: frozenset[FlowEntry] = frozenset()
        self.plan.set_owner_at(cookie, {
            dpid: frozenset(per[dpid]) if dpid in per else empty for dpid in dpids})

    def _update_trees(self, roots: list[str], present: Mapping[str, bool]
                      ) -> dict[str, list[tuple[int, int | None, int | None]]]:
        """Bring the trees (root node -> dpid -> out port toward it, for every present switch
        that reaches it) up to date for ``roots`` from pathcore's answer, which names only the
        next hops that moved. Returns root -> (dpid, port before, port after) of its moved
        next hops (None: no next hop), for the roots whose tree changed."""
        for root in self._trees.keys() - set(roots):
            del self._trees[root]
        hop, node_dpid = self._hop, self._node_dpid
        out: dict[str, list[tuple[int, int | None, int | None]]] = {}
        for root, changes in self._forest.update(roots):
            old = self._trees.get(root)
            tree = dict(old) if old else {}
            hops = []
            for node_id, link_id in changes:
                dpid = node_dpid[node_id]
                port: int | None = None
                if link_id >= 0:
                    tail, port = hop[link_id]
                    if not present[tail]:
                        port = None
                was = tree.get(dpid)
                if was == port:
                    continue
                if port is None:
                    del tree[dpid]
                else:
                    tree[dpid] = port
                hops.append((dpid, was, port))
            self._trees[root] = tree
            if hops or old is None:
                out[root] = hops
        return out
