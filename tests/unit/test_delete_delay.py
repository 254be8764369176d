"""``delete_delay_s`` (``openflow.delete_delay_s``): a Change's deletes (phase 2) wait that long
after its new flows are confirmed, while the traffic already runs on the new flows; then the
switches hold the plan again. Without it the deletes follow the makes at once."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fakeoftable import flow_entries
from test_core_batch import traffic
from test_stalled_switch import RefusingSwitches, running_service

from controller.network.openflow import ofp, parser
from controller.network.service import ControllerService
from controller.topology.model import Topology

HOLD_S = 1.0


def _only_deletes(msgs: Any) -> bool:
    """A phase-2 send: FlowMod deletes and nothing else but the barrier. (A make may carry
    deletes beside its adds: a default route replacing exact destination flows.)"""
    mods = [m for m in msgs if not isinstance(m, parser.OFPBarrierRequest)]
    return bool(mods) and all(isinstance(m, parser.OFPFlowMod) and m.command in (
        ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT) for m in mods)


def _cut_and_watch(diamond: Topology, delete_delay_s: float
                   ) -> tuple[float, list[tuple[str | None, list[tuple[int, int]]]],
                              ControllerService, RefusingSwitches]:
    """Cut s3-s4 (the cheap intent's path) with the switches faked; return the gap between
    the last make sent before the first delete and that delete, and what the cheap intent's
    traffic did just before each delete reached its switch."""
    service, net_switches = running_service(diamond, delete_delay_s=delete_delay_s)
    net, wiring = net_switches.net, service.wiring
    try:
        cheap = next(i for i in service.intents() if i.spec.name == "cheap")
        assert cheap.path == ("s4", "s3", "s1") and cheap.state == "installed"
        sends: list[tuple[float, bool]] = []
        seen: list[tuple[str | None, list[tuple[int, int]]]] = []
        lock = threading.Lock()
        send = net_switches.send

        def watching(handle: Any, msgs: Any) -> Any:
            deletes = _only_deletes(msgs)
            with lock:
                sends.append((time.monotonic(), deletes))
                if deletes:  # what the moved intent's packets do just before the deletes land
                    tr = net.trace("h2", traffic(diamond, cheap.spec))
                    seen.append((tr.delivered_to, list(tr.hops)))
            return send(handle, msgs)

        net_switches.send = watching  # type: ignore[method-assign]
        index = next(k for k, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s3", "s4"})
        net.set_link(index, False)
        for node, port in zip(wiring.link_ends[index], wiring.link_ports[index], strict=True):
            service.port_status(wiring.node_dpid[node], port, False, wiring.node_dpid[node])
        assert service.wait_idle(10)
        assert service.intent(cheap.id).path == ("s4", "s2", "s1")
        first_delete = min(t for t, d in sends if d)
        last_make = max(t for t, d in sends if not d and t <= first_delete)
        return first_delete - last_make, seen, service, net_switches
    except BaseException:
        service.stop()
        raise


@pytest.mark.parametrize("delay", [HOLD_S, 0.0])
def test_the_deletes_wait_while_the_traffic_runs_on_the_new_flows(diamond: Topology,
                                                                  delay: float) -> None:
    gap, seen, service, switches = _cut_and_watch(diamond, delay)
    try:
        if delay:
            assert gap >= HOLD_S, gap  # held back that long after the last make
        else:
            assert gap < HOLD_S, gap  # sent right after the makes were answered
        s2 = service.wiring.node_dpid["s2"]
        assert seen, "the cut's change deleted nothing"
        for delivered, hops in seen:
            # the old flows still there, the packets already go the new way (s4-s2-s1)
            assert delivered == "h1" and any(d == s2 for d, _ in hops), hops
        for dpid in sorted(service.wiring.dpid_node):  # and then the switches hold the plan
            assert sorted(flow_entries(switches.net, dpid)) == service.plan_flows(dpid)[1]
    finally:
        service.stop()


def test_a_later_change_sends_the_held_deletes_at_once(diamond: Topology) -> None:
    """The hold never delays another Change: with deletes held for a minute, a link cut and
    repaired at once has the traffic back on its first path within seconds, the cut's
    deletes sent before the repair's makes on each switch (no planned flow lost to a late
    delete)."""
    service, switches = running_service(diamond, delete_delay_s=60.0)
    net, wiring = switches.net, service.wiring
    try:
        cheap = next(i for i in service.intents() if i.spec.name == "cheap")
        deleted = threading.Event()
        send = switches.send

        def watching(handle: Any, msgs: Any) -> Any:
            if _only_deletes(msgs):
                deleted.set()
            return send(handle, msgs)

        switches.send = watching  # type: ignore[method-assign]
        index = next(k for k, lk in enumerate(diamond.links) if {lk.a, lk.b} == {"s3", "s4"})
        ends = list(zip(wiring.link_ends[index], wiring.link_ports[index], strict=True))

        def via(node: str) -> bool:
            """the cheap intent's traffic reaches h1 over ``node``, and every switch holds
            every flow of the plan"""
            tr = net.trace("h2", traffic(diamond, cheap.spec))
            planned = all(set(service.plan_flows(d)[1]) <= set(flow_entries(net, d))
                          for d in wiring.dpid_node)
            return tr.delivered_to == "h1" and planned \
                and any(d == wiring.node_dpid[node] for d, _ in tr.hops)

        for up, node in ((False, "s2"), (True, "s3")):
            net.set_link(index, up)
            for end, port in ends:
                service.port_status(wiring.node_dpid[end], port, up, wiring.node_dpid[end])
            deadline = time.monotonic() + 10.0  # well before the minute's hold is over
            while not via(node) and time.monotonic() < deadline:
                time.sleep(0.02)
            assert via(node), f"link {'up' if up else 'down'}: traffic not over {node} " \
                "(a held delete kept the change waiting, or removed a planned flow)"
            # the cut's deletes are held now; the repair sends them
            assert deleted.is_set() == up
        assert service.intent(cheap.id).path == ("s4", "s3", "s1")
    finally:
        service.stop()
