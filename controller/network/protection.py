"""Protection: a local detour around every link of a protected intent's path.

Only the two switches at the ends of a cut link see it (Open vSwitch's fast-failover groups
skip a bucket whose watch port lost carrier at once), so protection needs a detour at every
switch of the path: the switch before each link gets a fast-failover group (the link, then the
first link of the detour; ``OFPP_IN_PORT`` when the detour leaves by the port the traffic came
in by), and every later switch of the detour a rule keyed by the port the detour enters it by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from controller.network.explain import fmt_ms
from controller.network.flows import PORT_IN_PORT, Buckets

if TYPE_CHECKING:
    from controller.network.intents import Intent
    from controller.network.state import NetworkState

__all__ = ["detours"]


def detours(state: NetworkState, intent: Intent, ingress_port: int,
            groups: dict[int, Buckets], notes: list[str]) -> dict[int, dict[int, int]]:
    """Local repair for a protected intent (see docs/controller.md, "Protection").

    For each link ``l_i`` of the primary path ``n_0 .. n_k`` the detour ``D_i`` is the
    least-latency path from ``n_i`` to ``n_k`` without ``l_i``. ``n_i`` gets a
    fast-failover group: bucket 1 watches and uses ``l_i``, bucket 2 the first link of
    ``D_i`` (``OFPP_IN_PORT`` when that is the port the traffic came in by). Every later
    switch of ``D_i`` gets a rule keyed by the port the detour enters it by (one priority
    above the intent's own flows). Returns dpid -> {in port: out port}; fills ``groups``
    (dpid -> buckets) and ``notes`` (links without a usable detour, detours over the
    latency bound)."""
    st = state
    g = st.graph
    path, links = intent.path, intent.links
    assert path is not None and links is not None
    node_dpid = st.wiring.node_dpid
    # where the primary traffic enters and leaves each switch of the path
    prim_in = {path[0]: ingress_port}
    prim_out = {}
    for i, lid in enumerate(links):
        prim_out[path[i]] = st.out_port(path[i], lid)
        prim_in[path[i + 1]] = st.out_port(path[i + 1], lid)
    rules: dict[int, dict[int, int]] = {}
    prefix_ms = 0.0
    bound = intent.spec.max_latency_ms
    for i, lid in enumerate(links):
        u = path[i]
        name = f"{u}-{path[i + 1]}"
        reverse = g.reverse_link(lid)
        cut = [lid] if reverse is None else [lid, reverse]
        d = g.shortest_path(u, path[-1], weight="latency", exclude_links=cut)
        lat_ms = prefix_ms + (d.latency_ms if d is not None else 0.0)
        prefix_ms += g.link(lid).latency_ms
        if d is None:
            notes.append(f"no detour around {name}")
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
        first = st.out_port(u, d.links[0])
        backup = PORT_IN_PORT if first == prim_in[u] else first
        groups[node_dpid[u]] = ((prim_out[u], prim_out[u]), (first, backup))
        if lat_ms > bound + 1e-9:
            notes.append(f"the detour around {name} takes {fmt_ms(lat_ms)}, over the "
                         f"bound {bound:g} ms")
    return rules
