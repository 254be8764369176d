"""Fast reroute: bypass tunnels around every link, taken by the switch itself when a port goes
down (facility backup, RFC 4090, with MPLS label stacking).

When ``fast_reroute`` is on, every switch holds one fast-failover group per port toward
another switch (group id ``BYPASS_GROUP_BASE`` + port): its first bucket outputs on the port
while the port is up; its second pushes a bypass label and outputs on the first link of the
*bypass* of that link: the least-latency path from the switch to the link's other end that
does not use the link (and sets the packet's ``in_port`` to the failed port, so a packet may
go back the way it came). Every switch of the bypass between the two ends forwards by the bypass
label (swap, output); the far end pops it in its table 0 and sets the packet's ``in_port`` to
its own port of the failed link before going on to table 1 (an Open vSwitch extension of
OpenFlow 1.3), so the packet carries on along its tunnel exactly as if it had come over the
link, also when the tunnel leaves the far end by the port the bypass came in on (a switch
never sends a packet back out of its ``in_port``). Every tunnel flow toward the next switch
(segments, heads, and the ingress flows that push a tunnel's first label) outputs through that
group, so a port going down moves every tunnel across it onto the bypass in the switch,
without waiting for the controller; the controller's re-routing then moves the intents onto
their best paths as usual and the bypass carries nothing again.

Plain IPv4 packets (the destination flows' best-effort traffic) take the same bypass through a
second group per port (``BYPASS_IP_GROUP_BASE`` + port) whose labels are a second set: the far
end pops them to IPv4 instead of to the tunnel label beneath. (One group pushing an explicit
null label under the bypass label would need two pushes in a bucket, and Open vSwitch keeps
only the last push of a group bucket.) Protected intents, with detours of their own, keep
their own forwarding.

A bypass is a function of the topology and the links' states: it is recomputed when the graph
changes (a link down on a bypass moves that bypass; a link down on no bypass changes none), and
its labels are a stable hash of the bypass hop in the top ``BYPASS_LABEL_SPACE`` labels (the
intents' tunnels use the labels below), so a restarted controller computes the same flows.
A link without a bypass (a bridge) keeps a group with the first bucket alone.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, NamedTuple

from controller.network.flows import (
    BYPASS_GROUP_BASE,
    BYPASS_IP_GROUP_BASE,
    BYPASS_LABEL_MIN,
    BYPASS_LABEL_SPACE,
    ETH_TYPE_IPV4,
    ETH_TYPE_MPLS,
    OWNER_BYPASS,
    PRIORITY_BYPASS_EXIT,
    PRIORITY_TUNNEL,
    TABLE_CLASSIFIER,
    TABLE_INTENTS,
    Action,
    Buckets,
    FlowEntry,
    make_cookie,
)

if TYPE_CHECKING:
    from controller.network.plan import OwnerPlan
    from controller.network.state import NetworkState

__all__ = ["Bypass", "Bypasses"]

class Bypass(NamedTuple):
    """The bypass of one direction of a link: from ``node`` (out of ``port``) to the link's
    other end without the link."""

    node: str
    port: int
    path: tuple[str, ...]
    """the switches from ``node`` to the far end (both included)"""
    links: tuple[int, ...]
    """the topology link indices it crosses, in order"""
    labels: tuple[int, ...]
    """the bypass label at each switch after ``node`` (``path[1:]``)"""
    latency_ms: float
    ip_labels: tuple[int, ...] = ()
    """the same for plain IPv4 packets (popped to IPv4 at the far end)"""


class Bypasses:
    """The bypass groups and hops of every link, written into ``plan`` (owner: the hop's
    label) when ``enabled``."""

    def __init__(self, state: NetworkState, plan: OwnerPlan, *, enabled: bool = False) -> None:
        self.state = state
        self.plan = plan
        self.enabled = enabled
        self._version: int | None = None
        self._bypasses: dict[tuple[int, int], Bypass | None] = {}
        """(dpid, port) -> its bypass (None: the link has none)"""
        self._groups: dict[int, dict[int, Buckets]] = {}
        self._hops: dict[int, tuple[int, FlowEntry, tuple[int, int]]] = {}
        """label -> (dpid, its flow, the (dpid, port) whose bypass it is a hop of)"""
        self._link_up: tuple[bool, ...] | None = None
        """the links' states at the last refresh"""

    def action(self, node: str, link_id: int) -> Action:
        """How a tunnel flow at ``node`` sends a packet over pathcore link ``link_id``: out of
        its port, or through the port's bypass group when fast reroute is on."""
        port = self.state.out_port(node, link_id)
        return ("group", BYPASS_GROUP_BASE + port) if self.enabled else ("output", port)

    def ip_action(self, port: int) -> Action:
        """How a destination flow sends a plain IPv4 packet out of ``port``, a port toward
        another switch: through the port's IPv4 bypass group when fast reroute is on."""
        return ("group", BYPASS_IP_GROUP_BASE + port) if self.enabled else ("output", port)

    def groups(self) -> dict[int, dict[int, Buckets]]:
        """dpid -> {group id: buckets} (live: do not modify; call :meth:`refresh` first)."""
        return self._groups

    def bypass(self, dpid: int, port: int) -> Bypass | None:
        """The bypass of the link out of ``port`` of ``dpid`` (None: none, or off)."""
        return self._bypasses.get((dpid, port))

    def refresh(self) -> None:
        """Bring the bypasses up to date with the graph. After links went down (and none
        came up) only the bypasses that crossed them are recomputed: a cut's change carries
        what it must and no more. Anything else (a link up, a switch back) recomputes every
        bypass in link order, as a fresh controller does."""
        st = self.state
        if not self.enabled or self._version == st.graph_version:
            return
        self._version = st.graph_version
        now_up, before = tuple(st.link_up), self._link_up
        self._link_up = now_up
        if before is None or any(u and not b for u, b in zip(now_up, before, strict=True)):
            redo = None  # every bypass, from scratch
            bypasses: dict[tuple[int, int], Bypass | None] = {}
            groups: dict[int, dict[int, Buckets]] = {}
            hops: dict[int, tuple[int, FlowEntry, tuple[int, int]]] = {}
        else:
            down = {i for i, (u, b) in enumerate(zip(now_up, before, strict=True))
                    if b and not u}
            redo = {key for key, bp in self._bypasses.items()
                    if bp is not None and not down.isdisjoint(bp.links)}
            if not redo:
                return
            bypasses = dict(self._bypasses)
            groups = {d: dict(g) for d, g in self._groups.items()}
            hops = {label: hop for label, hop in self._hops.items()
                    if hop[2] not in redo}
        used = set(hops)
        wiring, graph = st.wiring, st.graph
        for i, lid in sorted(st.link_ids.items()):
            rev = graph.reverse_link(lid)
            a, b = wiring.link_ends[i]
            for node, far, link_id in ((a, b, lid), (b, a, rev)):
                if link_id is None:
                    continue
                key = (wiring.node_dpid[node], st.out_port(node, link_id))
                if redo is not None and key not in redo:
                    continue
                bypass, buckets, ip_buckets = self._compute(
                    i, node, far, key[1], [lid] if rev is None else [lid, rev], used, hops)
                bypasses[key] = bypass
                at = groups.setdefault(key[0], {})
                at[BYPASS_GROUP_BASE + key[1]] = buckets
                at[BYPASS_IP_GROUP_BASE + key[1]] = ip_buckets
        set_owner = self.plan.set_owner
        for label in self._hops.keys() - hops.keys():
            set_owner(make_cookie(OWNER_BYPASS, label), {})
        for label, hop in hops.items():
            if self._hops.get(label) != hop:
                set_owner(hop[1].cookie, {hop[0]: frozenset((hop[1],))})
        self._bypasses, self._groups, self._hops = bypasses, groups, hops

    def _compute(self, i: int, node: str, far: str, port: int, avoid: list[int],
                 used: set[int], hops: dict[int, tuple[int, FlowEntry, tuple[int, int]]]
                 ) -> tuple[Bypass | None, Buckets, Buckets]:
        """The bypass of link ``i`` from ``node`` (out of ``port``) to ``far`` and the
        buckets of its two groups (tunnels, plain IPv4); its hops' flows go into ``hops``."""
        st = self.state
        wiring = st.wiring
        found = st.graph.shortest_path(node, far, "latency", exclude_links=avoid)
        if found is None or len(found.nodes) < 2:
            return None, ((port, port),), ((port, port),)
        path, links = tuple(found.nodes), tuple(found.links)
        owner = (wiring.node_dpid[node], port)
        first = st.out_port(node, links[0])
        far_port = wiring.link_port(i, far)
        out = [st.out_port(path[k], links[k]) for k in range(1, len(links))]
        sets = []
        for inner, tag in ((ETH_TYPE_MPLS, ()), (ETH_TYPE_IPV4, ("ip",))):
            labels = tuple(_label(used, (node, port, x, *tag)) for x in path[1:])
            sets.append(labels)
            for k, label in enumerate(labels, start=1):
                cookie = make_cookie(OWNER_BYPASS, label)
                match = (("eth_type", ETH_TYPE_MPLS), ("mpls_label", label))
                if k < len(labels):  # on the way: swap, output
                    entry = FlowEntry(TABLE_INTENTS, PRIORITY_TUNNEL, match, (
                        ("set_field", ("mpls_label", labels[k])),
                        ("output", out[k - 1])), cookie)
                else:  # the far end: as if it came over the link
                    entry = FlowEntry(TABLE_CLASSIFIER, PRIORITY_BYPASS_EXIT, match, (
                        ("pop_mpls", inner), ("set_field", ("in_port_nxm", far_port)),
                        ("goto_table", TABLE_INTENTS)), cookie)
                hops[label] = (wiring.node_dpid[path[k]], entry, owner)
        labels, ip_labels = sets
        bypass = Bypass(node, port, path, tuple(map(st.link_index, links)), labels,
                        found.latency_ms, ip_labels)
        return (bypass, ((port, port), (first, first, labels[0], port)),
                ((port, port), (first, first, ip_labels[0], port)))


def _label(used: set[int], key: tuple[object, ...]) -> int:
    """A free bypass label for the hop ``key``: a stable hash of it, moved on to the next free
    one in the rare case of a collision (hops are labelled in link order)."""
    label = BYPASS_LABEL_MIN + zlib.crc32(repr(key).encode()) % BYPASS_LABEL_SPACE
    for _ in range(BYPASS_LABEL_SPACE):
        if label not in used:
            used.add(label)
            return label
        label = BYPASS_LABEL_MIN + (label - BYPASS_LABEL_MIN + 1) % BYPASS_LABEL_SPACE
    raise RuntimeError("every bypass label is in use")
