"""What the layers outside the network core may see of it: immutable snapshots, one read view
used under the service's lock, and the path queries.

:class:`~controller.network.service.ControllerService` builds these; nothing outside
``controller/network`` touches the core or its lock:

* :class:`SwitchView`, :class:`LinkView` and :class:`NetworkSnapshot` are copies taken under
  the lock (one acquisition for a whole :class:`NetworkSnapshot`, so its parts agree): safe to
  keep and serialise from any thread.
* :class:`NetworkView` is for code that must compute on the live graph while the core cannot
  change it (compute steering's placements): the service hands it out only inside
  ``with service.network() as net:``, and it offers reads only.
* :func:`query_paths` answers ``GET /paths``: what the engine would choose, installing
  nothing, and which bound fails when nothing meets them.
* :class:`RoleView` and :class:`RoleEvent` are the OpenFlow roles of this controller on each
  switch (a cluster member writes only to the switches it masters) and what the switches
  answered about them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from controller.errors import InfeasibleRoute
from controller.network.explain import fmt_bound, fmt_ms, fmt_path, why_no_path

if TYPE_CHECKING:
    import pathcore
    from controller.network.intents import Intent
    from controller.network.state import HostRecord, NetworkState
    from controller.topology.wiring import Wiring

__all__ = ["LinkView", "NetworkSnapshot", "NetworkView", "RoleEvent", "RoleView", "SwitchView",
           "query_paths"]


@dataclass(frozen=True, slots=True)
class SwitchView:
    """One switch of the topology as the controller sees it."""

    name: str
    dpid: int
    connected: bool
    synced: bool
    """the controller has read its flow table since it connected (its view is exact) and
    the switch has answered every Change sent to it (``pending_changes`` is 0)"""
    ports: Mapping[int, bool] | None
    """port_no -> live as the switch last reported; None until it connects"""
    pending_changes: int = 0
    """phases of Changes in flight still to be sent to it or answered by it (0: it has
    answered everything sent)"""
    behind_s: float | None = None
    """how long the oldest of those has waited for it (None: not behind)"""

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dpid": self.dpid, "connected": self.connected,
                "synced": self.synced,
                "ports": dict(self.ports) if self.ports is not None else None,
                "pending_changes": self.pending_changes, "behind_s": self.behind_s}


@dataclass(frozen=True, slots=True)
class RoleView:
    """This controller's OpenFlow role on one switch
    (:meth:`ControllerService.roles <.service.ControllerService.roles>`)."""

    dpid: int
    wanted: str | None
    """``"master"`` or ``"slave"`` as last asked for (``want_role``, ``demote_all``); None
    when never told"""
    role: str
    """as the switch last confirmed it on the current connection: ``"master"``,
    ``"slave"``, ``"equal"`` or ``"unknown"`` (not connected, no answer yet, or standalone)"""
    generation_id: int | None
    """the generation of the wanted role (None when never told)"""
    writable: bool
    """this controller may write to the switch now (standalone: it is connected; cluster
    member: the switch confirmed it as master on the current connection)"""
    since: float | None
    """``time.time()`` of the last change of ``role`` or ``writable`` (None: none yet)"""
    error: str | None
    """the last refusal (a role request refused, a write refused as not master); None once
    the switch confirms a role again"""

    def as_dict(self) -> dict[str, Any]:
        return {"dpid": self.dpid, "wanted": self.wanted, "role": self.role,
                "generation_id": self.generation_id, "writable": self.writable,
                "since": self.since, "error": self.error}


@dataclass(frozen=True, slots=True)
class RoleEvent:
    """What a switch answered about this controller's role (handed to
    ``ControllerService.role_listeners``)."""

    dpid: int
    role: str
    """``"master"``, ``"slave"`` or ``"equal"`` (a role reply), ``"refused"`` (a role
    request refused, e.g. stale generation) or ``"not_master"`` (a write refused: another
    controller masters the switch now)"""
    generation_id: int | None
    """the generation of the reply or of the refused request; for ``"not_master"`` the
    wanted one (None when never told)"""
    requested_at: float | None
    """``time.perf_counter()`` when the last role request to the switch was sent (None:
    none on this connection)"""
    answered_at: float
    """``time.perf_counter()`` when the answer was handled"""
    error: str | None
    """the refusal in words (None for a reply)"""


@dataclass(frozen=True, slots=True)
class LinkView:
    """One link of the topology file (index ``index``) as the controller sees it."""

    index: int
    a: str
    b: str
    latency_ms: float
    bandwidth_mbps: float
    cost: float
    distance_km: float | None
    up: bool
    """usable for routing: both ports live, both switches present, not miswired"""
    reserved_mbps: float
    """bandwidth admitted intents hold on it (a-to-b direction)"""
    load: Mapping[str, Any] | None
    """the latest port-statistics sample: ``a_to_b_mbps``, ``b_to_a_mbps``, ``drops``,
    ``utilisation``, ``time`` (None before two polls)"""
    measured_delay_ms: float | None
    """one-way delay measured by LLDP (None until measured)"""
    reserved_b_to_a_mbps: float = 0.0
    """bandwidth admitted intents hold on it in the b-to-a direction"""
    backup_a_to_b_mbps: float = 0.0
    """the part of ``reserved_mbps`` held by detours of protected intents (backup)"""
    backup_b_to_a_mbps: float = 0.0
    """the part of ``reserved_b_to_a_mbps`` held by detours of protected intents"""
    bypass_a_to_b: tuple[str, ...] | None = None
    """fast reroute: the switches the a-to-b traffic takes when the link fails, from a to b
    (None: fast reroute off, or no other way)"""
    bypass_b_to_a: tuple[str, ...] | None = None

    @property
    def load_mbps(self) -> float | None:
        """Measured load of the busier direction (None before two polls)."""
        load = self.load
        return None if load is None else max(load["a_to_b_mbps"], load["b_to_a_mbps"])

    def as_state(self) -> dict[str, Any]:
        """The plain data of ``GET /links`` and the state file."""
        load = self.load
        return {"index": self.index, "a": self.a, "b": self.b, "latency_ms": self.latency_ms,
                "bandwidth_mbps": self.bandwidth_mbps, "up": self.up,
                "reserved_mbps": self.reserved_mbps,
                "reserved_b_to_a_mbps": self.reserved_b_to_a_mbps,
                "backup_a_to_b_mbps": self.backup_a_to_b_mbps,
                "backup_b_to_a_mbps": self.backup_b_to_a_mbps,
                "bypass_a_to_b": None if self.bypass_a_to_b is None else list(self.bypass_a_to_b),
                "bypass_b_to_a": None if self.bypass_b_to_a is None else list(self.bypass_b_to_a),
                "load_a_to_b_mbps": load["a_to_b_mbps"] if load else None,
                "load_b_to_a_mbps": load["b_to_a_mbps"] if load else None,
                "utilisation": load["utilisation"] if load else None,
                "drops": load["drops"] if load else None,
                "measured_delay_ms": self.measured_delay_ms}


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    """Switches, links, intents and the latest events, all taken at one instant."""

    topology: str
    switches: tuple[SwitchView, ...]
    """in dpid order"""
    links: tuple[LinkView, ...]
    """in file order"""
    intents: tuple[Intent, ...]
    """copies, in id order"""
    events: tuple[dict[str, Any], ...]
    """the most recent events, oldest first (copies)"""
    marker: tuple[Any, ...]
    """:meth:`ControllerService.change_marker` at the same instant"""


class NetworkView:
    """Reads of the live network for code that runs under the service's lock (see the
    module docstring). Never keep it, or anything it returns but immutable records, past
    the ``with`` block that handed it out."""

    __slots__ = ("_state",)

    def __init__(self, state: NetworkState) -> None:
        self._state = state

    @property
    def graph(self) -> pathcore.Graph:
        """The live path graph: links down are down in it, residual bandwidth is what
        admitted intents leave. Read it; never change it."""
        return self._state.graph

    @property
    def wiring(self) -> Wiring:
        return self._state.wiring

    def node_present(self, node: str) -> bool:
        """The node's switch is connected (or not seen yet during the startup grace)."""
        return self._state.node_present(node)

    def host(self, name: str) -> HostRecord | None:
        """A host the controller routes to (from the file or learned), or None."""
        return self._state.hosts.get(name)

    def host_by_ip(self, ip: str) -> HostRecord | None:
        return self._state.host_by_ip(ip)

    def out_port(self, node: str, link_id: int) -> int:
        """The port of ``node`` that pathcore link ``link_id`` leaves by."""
        return self._state.out_port(node, link_id)


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def query_paths(g: pathcore.Graph, a: str, b: str, *, max_latency_ms: float | None = None,
                min_bandwidth_mbps: float | None = None, k: int = 1,
                disjoint: bool = False) -> list[dict[str, Any]]:
    """What the engine would choose between nodes ``a`` and ``b`` of the live graph ``g``,
    installing nothing; the paths as plain data (``nodes``, ``latency_ms``, ``cost``,
    ``hops``, ``bottleneck_mbps``, ``chosen``).

    Without bounds: the least-latency path (what best-effort traffic takes), then the next
    ``k-1`` by latency. With bounds: first the path an intent with those bounds gets (least
    cost within them, as the router computes), then up to ``k-1`` alternatives meeting the
    bounds by latency. ``disjoint``: the least-latency pair of link-disjoint paths, both of
    which must meet the bounds. Raises :class:`InfeasibleRoute` naming the failing bound.
    """
    bw = min_bandwidth_mbps or 0.0
    bounded = max_latency_ms is not None or bw > 0
    bound = max_latency_ms if max_latency_ms is not None else math.inf

    def meets(p: Any) -> bool:
        return p.latency_ms <= bound and (p.hops == 0 or p.bottleneck_mbps >= bw)

    if disjoint:
        pair = g.disjoint_paths(a, b, weight="latency")
        if pair is None:
            best = g.shortest_path(a, b, weight="latency")
            raise InfeasibleRoute(
                f"no two link-disjoint paths between {a} and {b}",
                best_latency_ms=best.latency_ms if best is not None else None)
        for which, p in zip(("first", "second"), pair, strict=True):
            if not meets(p):
                why = (f"latency {fmt_ms(p.latency_ms)} exceeds max_latency_ms "
                       f"{fmt_bound(bound)}" if p.latency_ms > bound else
                       f"bottleneck {p.bottleneck_mbps:g} Mbps is below "
                       f"min_bandwidth_mbps {bw:g}")
                raise InfeasibleRoute(
                    f"the {which} of the best link-disjoint pair ({fmt_path(p.nodes)}): "
                    f"{why}; best single-path latency {fmt_ms(pair[0].latency_ms)}",
                    best_latency_ms=pair[0].latency_ms)
        paths = list(pair)
    else:
        if bounded:
            chosen = g.constrained_path(a, b, max_latency_ms=bound,
                                        min_bandwidth_mbps=bw, weight="cost")
        else:
            chosen = g.shortest_path(a, b, weight="latency")
        if chosen is None:
            no_path = why_no_path(g, a, b, max_latency_ms=max_latency_ms, min_bandwidth_mbps=bw)
            raise InfeasibleRoute(no_path.text, best_latency_ms=no_path.best_latency_ms)
        paths = [chosen]
        if k > 1:
            for p in g.k_shortest_paths(a, b, k + 1, weight="latency",
                                        max_latency_ms=max_latency_ms):
                if len(paths) >= k:
                    break
                if p != chosen and meets(p):
                    paths.append(p)
    return [{"nodes": list(p.nodes), "latency_ms": p.latency_ms, "cost": p.cost,
             "hops": p.hops, "bottleneck_mbps": _finite(p.bottleneck_mbps), "chosen": i == 0}
            for i, p in enumerate(paths)]
