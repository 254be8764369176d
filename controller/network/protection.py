"""Protection: a local detour around every link of a protected intent's path.

Only the two switches at the ends of a cut link see it (Open vSwitch's fast-failover groups
skip a bucket whose watch port lost carrier at once), so protection needs a detour at every
switch of the path: the switch before each link gets a fast-failover group (the link, then the
first link of the detour; ``OFPP_IN_PORT`` when the detour leaves by the port the traffic came
in by), and every later switch of the detour a rule keyed by the port the detour enters it by.

Detours of an intent with ``min_bandwidth_mbps`` reserve it too (see docs/controller.md,
"Protection"): a detour only crosses links that have the bandwidth left beside what is
reserved already, and the links the detours use beyond the primary path are the intent's
backup reservation (:attr:`Detours.backup`), taken once per link whatever the number of its
detours crossing it (one failure sends the intent's traffic down one detour).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controller.network.explain import fmt_ms
from controller.network.flows import PORT_IN_PORT, Buckets

if TYPE_CHECKING:
    from controller.network.state import NetworkState

__all__ = ["BackupLink", "Detours", "Shortfall", "plan_detours"]

_EPS_MBPS = 1e-9


@dataclass(frozen=True, slots=True)
class BackupLink:
    """A directed link a protected intent's detours use and its primary path does not: it
    holds the intent's bandwidth as a backup reservation."""

    link_id: int
    """the directed pathcore link id"""
    index: int
    """the link's index in the topology file"""
    a: str
    b: str
    """the direction the detour crosses it: from ``a`` to ``b``"""

    @property
    def name(self) -> str:
        return f"{self.a}-{self.b}"


@dataclass(frozen=True, slots=True)
class Shortfall:
    """A link of the primary path left without a detour for want of bandwidth: the
    least-latency detour around ``around`` crosses ``link`` (directed, ``a-b``), which has
    ``residual_mbps`` of ``bandwidth_mbps`` left, below the intent's reservation."""

    around: str
    link: str
    index: int
    residual_mbps: float
    bandwidth_mbps: float

    def as_bottleneck(self) -> dict[str, object]:
        """The ``bottleneck`` of an :class:`~controller.errors.InsufficientBandwidth`."""
        return {"link": self.link, "index": self.index, "residual_mbps": self.residual_mbps,
                "bandwidth_mbps": self.bandwidth_mbps, "detour_around": self.around}


@dataclass(frozen=True, slots=True)
class Detours:
    """The local repair of one protected intent on its current path (compared by value: an
    unchanged plan leaves the intent's flows alone)."""

    rules: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()
    """per dpid (sorted), the detour rules ``(in port, out port)`` (sorted)"""
    groups: tuple[tuple[int, Buckets], ...] = ()
    """per dpid (sorted), the fast-failover buckets of the intent's group"""
    notes: tuple[str, ...] = ()
    """links without a usable detour and detours over the latency bound"""
    backup: tuple[BackupLink, ...] = ()
    """links the detours use beyond the primary path (reserved at ``bandwidth_mbps``)"""
    bandwidth_mbps: float = 0.0
    """what each backup link holds for the intent (0: the intent reserves nothing)"""
    shortfalls: tuple[Shortfall, ...] = ()
    """links of the path left without a detour for want of bandwidth"""

    @property
    def note(self) -> str:
        """The intent's ``protection_note``: "" when fully protected."""
        return "; ".join(self.notes)


def plan_detours(state: NetworkState, path: tuple[str, ...], links: tuple[int, ...],
                 ingress_port: int, max_latency_ms: float,
                 bandwidth_mbps: float = 0.0,
                 residual_mbps: Mapping[int, float] | None = None) -> Detours:
    """Local repair for a protected intent (see docs/controller.md, "Protection").

    For each link ``l_i`` of the primary path ``n_0 .. n_k`` the detour ``D_i`` is the
    least-latency path from ``n_i`` to ``n_k`` without ``l_i`` (both directions) and, when
    ``bandwidth_mbps`` > 0, without the links off the primary path whose residual is below
    it. ``n_i`` gets a fast-failover group: bucket 1 watches and uses ``l_i``, bucket 2 the
    first link of ``D_i`` (``OFPP_IN_PORT`` when that is the port the traffic came in by).
    Every later switch of ``D_i`` gets a rule keyed by the port the detour enters it by (one
    priority above the intent's own flows). Reserves nothing: the caller takes
    ``bandwidth_mbps`` on every link of :attr:`Detours.backup`. ``residual_mbps``: the
    graph's residual per directed link id, when the caller keeps it (read from the graph
    otherwise)."""
    st = state
    g = st.graph
    node_dpid = st.wiring.node_dpid
    primary = frozenset(links)
    # where the primary traffic enters and leaves each switch of the path
    prim_in = {path[0]: ingress_port}
    prim_out = {}
    for i, lid in enumerate(links):
        prim_out[path[i]] = st.out_port(path[i], lid)
        prim_in[path[i + 1]] = st.out_port(path[i + 1], lid)
    # links a detour may not use for want of bandwidth (the primary's own links hold the
    # intent's reservation already)
    full: list[int] = []
    if bandwidth_mbps > 0:
        if residual_mbps is None:
            residual_mbps = {lk.id: lk.residual_mbps for lk in g.links()}
        need = bandwidth_mbps - _EPS_MBPS
        full = [lid for lid, r in residual_mbps.items() if r < need and lid not in primary]
    rules: dict[int, dict[int, int]] = {}
    groups: dict[int, Buckets] = {}
    notes: list[str] = []
    backup: dict[int, None] = {}  # ordered set of directed link ids
    shortfalls: list[Shortfall] = []
    prefix_ms = 0.0
    for i, lid in enumerate(links):
        u = path[i]
        name = f"{u}-{path[i + 1]}"
        reverse = g.reverse_link(lid)
        cut = [lid] if reverse is None else [lid, reverse]
        d = g.shortest_path(u, path[-1], weight="latency", exclude_links=cut + full)
        lat_ms = prefix_ms + (d.latency_ms if d is not None else 0.0)
        prefix_ms += g.link(lid).latency_ms
        if d is None:
            short = _shortfall(st, u, path[-1], cut, primary, name, bandwidth_mbps) \
                if full else None
            if short is None:
                notes.append(f"no detour around {name}")
            else:
                shortfalls.append(short)
                notes.append(f"no detour around {name} with {bandwidth_mbps:g} Mbps: link "
                              f"{short.link} has {short.residual_mbps:g} of "
                              f"{short.bandwidth_mbps:g} Mbps left")
            continue
        want: list[tuple[int, int, int]] = []  # (dpid, in port, out port)
        clash = ""
        for j in range(1, len(d.nodes) - 1):
            x = d.nodes[j]
            pin, pout = st.out_port(x, d.links[j - 1]), st.out_port(x, d.links[j])
            dpid = node_dpid[x]
            if prim_in.get(x) == pin and prim_out.get(x) != pout:
                clash = f"the detour around {name} enters {x} where the path does"
                break
            have = rules.get(dpid, {}).get(pin)
            if have is not None and have != pout:
                clash = f"the detour around {name} crosses another detour at {x}"
                break
            if prim_in.get(x) != pin:
                want.append((dpid, pin, pout))
        if clash:
            notes.append(f"no detour around {name}: {clash}")
            continue
        for dpid, pin, pout in want:
            rules.setdefault(dpid, {})[pin] = pout
        for dl in d.links:
            if dl not in primary:
                backup[dl] = None
        first = st.out_port(u, d.links[0])
        out_backup = PORT_IN_PORT if first == prim_in[u] else first
        groups[node_dpid[u]] = ((prim_out[u], prim_out[u]), (first, out_backup))
        if lat_ms > max_latency_ms + 1e-9:
            notes.append(f"the detour around {name} takes {fmt_ms(lat_ms)}, over the "
                         f"bound {max_latency_ms:g} ms")
    backups = []
    for dl in backup:
        lk = g.link(dl)
        backups.append(BackupLink(dl, st.link_index(dl), lk.u, lk.v))
    return Detours(
        rules=tuple((dpid, tuple(sorted(per.items()))) for dpid, per in sorted(rules.items())),
        groups=tuple(sorted(groups.items())), notes=tuple(notes),
        backup=tuple(backups) if bandwidth_mbps > 0 else (),
        bandwidth_mbps=bandwidth_mbps if backups else 0.0, shortfalls=tuple(shortfalls))


def _shortfall(st: NetworkState, src: str, dst: str, cut: list[int], primary: frozenset[int],
               around: str, bandwidth_mbps: float) -> Shortfall | None:
    """Why there is no detour around ``around`` with the bandwidth: the tightest link off
    the primary path of the least-latency detour without the bandwidth rule (None: there is
    no detour at all)."""
    g = st.graph
    d = g.shortest_path(src, dst, weight="latency", exclude_links=cut)
    if d is None:
        return None
    off = [g.link(dl) for dl in d.links if dl not in primary]
    tight = min(off, key=lambda lk: lk.residual_mbps)
    return Shortfall(around, f"{tight.u}-{tight.v}", st.link_index(tight.id),
                     tight.residual_mbps, tight.bandwidth_mbps)
