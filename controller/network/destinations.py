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

Trees are kept between changes with their distances (one reverse Dijkstra per host switch,
``Graph.shortest_path_arrays``). When links change, a tree is recomputed only if the change
can touch it: a link that went down is the next hop of one of its ends in the tree, or a link
that came up offers one of its ends a path at least as short as its own (a tie too, since the
engine's tie-break could then pick the new link). Otherwise the engine would return the very
same tree: it settles nodes in the order of their final keys (latency, hops, node id) and a
node's next hop is the first link that reached its final key, so links off the tree and
links that reach no node as fast change nothing. A switch connecting on a 754-switch map thus
recomputes a handful of trees instead of 754. A change of switch presence recomputes all.
Only hosts whose tree (or own record) changed, and the switches whose default moved, get new
flows. Trees and defaults are a function of the state alone, so a restarted controller
computes the same flows.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from controller.network.flows import (
    ETH_TYPE_IPV4,
    OWNER_DESTINATION,
    OWNER_ID_MASK,
    PRIORITY_DESTINATION,
    TABLE_DESTINATIONS,
    FlowEntry,
    Match,
    destination_cookie,
    make_cookie,
)
from controller.network.plan import OwnerPlan
from controller.topology.wiring import LinkPeer

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

    def __init__(self, state: NetworkState, plan: OwnerPlan) -> None:
        self.state = state
        self.plan = plan
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
        self._dist: dict[str, list[float]] = {}
        """root node -> distance of every node (by engine node id) to it, as its tree has"""
        self._pred: dict[str, list[int]] = {}
        """root node -> next-hop link id of every node (by engine node id), -1 for none"""
        self._link_up: list[bool] = []
        self._present: dict[str, bool] = {}
        g = state.graph
        node_ids = {n: i for i, n in enumerate(g.nodes())}
        node_dpid = state.wiring.node_dpid
        self._hop: dict[int, tuple[str, int, int]] = {}
        """engine link id -> (its tail node, the tail's dpid, the tail's out port)"""
        self._ends: list[tuple[int, int, int, int, float, float]] = []
        """per topology link: (id of end a, id of end b, link id a->b, link id b->a,
        latency a->b, latency b->a)"""
        self._node_links: dict[int, list[int]] = {}
        """engine node id -> its topology links"""
        for i in range(len(state.topology.links)):
            fwd = g.link(state.link_ids[i])
            rev_id = fwd.reverse if fwd.reverse is not None else fwd.id
            rev = g.link(rev_id)
            self._ends.append((node_ids[fwd.u], node_ids[fwd.v], fwd.id, rev_id,
                               fwd.latency_ms, rev.latency_ms))
            for end in (fwd.u, fwd.v):
                self._node_links.setdefault(node_ids[end], []).append(i)
            for lk in (fwd, rev):
                self._hop[lk.id] = (lk.u, node_dpid[lk.u], state.out_port(lk.u, lk.id))

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
        if self._trees_version != st.graph_version:
            self._trees_version = st.graph_version
            self._forget_touched_trees(present)
        sources: dict[int, _Sources] = {}
        for name in sorted(st.hosts):
            if not st.host_usable(name):
                continue
            h = st.hosts[name]
            if not present[h.node]:
                continue
            tree = self._trees.get(h.node)
            if tree is None:
                tree = self._trees[h.node] = self.tree(h.node, present)
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
                # a tree moved: count only what changed (a switch joining changes one entry
                # of every tree)
                before, after = prev[0][1], src[0][1]
                left, came = before.items() - after.items(), after.items() - before.items()
                self._count_items(left, -1)
                self._count_items(came, +1)
                moves[cookie] = {d for d, _ in left} | {d for d, _ in came}
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
            revisit = moved.intersection(src[0][1]) | moves.get(cookie, set())
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
        for dpid, port_no in self._defaults.items():
            es = frozenset({FlowEntry(TABLE_DESTINATIONS, PRIORITY_DEFAULT_ROUTE, match,
                                      (("output", port_no),), DEFAULT_ROUTE_COOKIE)})
            flows[dpid] = old[dpid] if old.get(dpid) == es else es
        self.plan.set_owner(DEFAULT_ROUTE_COOKIE, flows)

    def _rebuild(self, cookie: int, src: _Sources, dpids: Collection[int] | None) -> None:
        """Set the flows of ``cookie`` at ``dpids`` (None: everywhere) from its hosts' trees:
        an exact flow where the next hop is not the switch's default (always at the host's
        own switch). A switch's unchanged set is kept as is (set_owner skips it)."""
        defaults = self._defaults
        per: dict[int, set[FlowEntry]] = {}
        for h, tree in src:
            match = (("eth_type", ETH_TYPE_IPV4), ("ipv4_dst", h.ip))
            items: Iterable[tuple[int, int]] = tree.items() if dpids is None else (
                (d, tree[d]) for d in dpids if d in tree)
            for dpid, port_no in items:
                if defaults.get(dpid) != port_no:
                    per.setdefault(dpid, set()).add(FlowEntry(
                        TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                        (("output", port_no),), cookie))
            if dpids is None or h.dpid in dpids:
                per.setdefault(h.dpid, set()).add(FlowEntry(
                    TABLE_DESTINATIONS, PRIORITY_DESTINATION, match,
                    (("output", h.port_no),), cookie))
        old = self.plan.owner(cookie)
        flows = {} if dpids is None else {d: es for d, es in old.items() if d not in dpids}
        for dpid, es in per.items():
            # keep the old set object where a switch's flows did not change: a cut changes
            # the next hop of a few switches per tree, and set_owner skips an identical set
            flows[dpid] = old[dpid] if dpid in old and old[dpid] == es else frozenset(es)
        self.plan.set_owner(cookie, flows)

    def _forget_touched_trees(self, present: Mapping[str, bool]) -> None:
        """Bring the kept trees up to date with the graph's change since the last refresh
        (see the module docstring): keep the untouched ones, extend those a switch joined as a
        leaf, drop the others (recomputed when asked for). Presence needs nothing of its own:
        an absent switch's links are down, so its change is a change of links."""
        self._present = dict(present)
        link_up = list(self.state.link_up)
        if len(link_up) != len(self._link_up):
            self._trees.clear()
            self._dist.clear()
            self._pred.clear()
        else:
            changed = [(i, up) for i, (was, up)
                       in enumerate(zip(self._link_up, link_up, strict=True)) if was != up]
            if changed:
                for root in list(self._trees):
                    if not self._update_tree(root, changed, link_up):
                        del self._trees[root], self._dist[root], self._pred[root]
        self._link_up = link_up

    def _update_tree(self, root: str, changed: list[tuple[int, bool]],
                     link_up: list[bool]) -> bool:
        """False when the tree of ``root`` must be recomputed; True when it is kept as is, or
        was extended by a switch ``u`` that joined it as a leaf: ``u`` was unreachable, all
        its links lead to switches of the tree, one of them gives it a strictly shortest path
        and none gives another switch a path as short as its own through ``u``. The engine
        would then settle every other switch as before and give ``u`` that link."""
        dist, pred = self._dist[root], self._pred[root]
        inf = float("inf")
        joined: int | None = None
        for i, up in changed:
            a, b, ab, ba, w_ab, w_ba = self._ends[i]
            if not up:
                if pred[a] == ab or pred[b] == ba:
                    return False
                continue
            da, db = dist[a], dist[b]
            if da == db:
                if da != inf and min(w_ab, w_ba) == 0.0:
                    return False  # a zero-latency link between equals: a tie
                continue
            if db + w_ab > da and da + w_ba > db:
                continue
            # a shorter path, or a tie the new link could win: only a leaf joining is cheap
            u = a if da == inf else b if db == inf else None
            if u is None or joined not in (None, u):
                return False
            joined = u
        if joined is None:
            return True
        best: tuple[float, int] | None = None
        second = inf
        links = []
        for i in self._node_links[joined]:
            if not link_up[i]:
                continue
            a, b, ab, ba, w_ab, w_ba = self._ends[i]
            v, out, w_out, w_in = (b, ab, w_ab, w_ba) if a == joined else (a, ba, w_ba, w_ab)
            if dist[v] == inf:
                return False
            links.append((v, w_in))
            d = dist[v] + w_out
            if best is None or d < best[0]:
                second = inf if best is None else best[0]
                best = (d, out)
            elif d < second:
                second = d
        if best is None or not best[0] < second:
            return False
        d_u, out = best
        if any(not d_u + w_in > dist[v] for v, w_in in links):
            return False
        dist[joined], pred[joined] = d_u, out
        node, dpid, port = self._hop[out]
        if self._present.get(node, True):
            self._trees[root] = {**self._trees[root], dpid: port}
        return True

    def tree(self, node: str, present: Mapping[str, bool] | None = None) -> dict[int, int]:
        """For every other switch that can reach ``node``: dpid -> out port on a least-latency
        path toward it. One reverse Dijkstra from pathcore (``Graph.shortest_path_arrays``,
        the next hops ``shortest_path_tree`` gives): each switch's next hop leads to a switch
        settled before it, so the next hops form a tree (no loops even with equal-latency
        alternatives or zero-latency links). ``present``: node -> switch present, when the
        caller has it for every node already."""
        st = self.state
        dist, pred = st.graph.shortest_path_arrays(node, "latency", reverse=True)
        self._dist[node], self._pred[node] = dist, pred
        hop = self._hop
        hops = [hop[lid] for lid in pred if lid >= 0]
        if present is None:
            present = {u: st.node_present(u) for u, _, _ in hops}
        return {dpid: port for u, dpid, port in hops if present[u]}
