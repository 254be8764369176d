"""What the service shows the layers outside the network core: snapshots taken under its lock,
the plan's flows, path queries, and the read view compute steering computes in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.errors import BadRequest, InfeasibleRoute, NotFound
from controller.network.service import ControllerService
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec


class Done:
    """A barrier that has come back."""

    def wait(self, timeout: float | None = None) -> bool:
        return True


class Switches:
    """Every switch answers every barrier at once (the service's Transport)."""

    def send(self, handle: object, msgs: object) -> Done:
        return Done()

    def alive(self, handle: object) -> bool:
        return True

    def request(self, handle: object, msg: object) -> None:
        return None


HANDLES = {dpid: f"datapath {dpid}" for dpid in (1, 2, 3, 4)}


@pytest.fixture
def service() -> Iterator[ControllerService]:
    """s1-s2-s4 fast (2 ms, cost 20), s1-s3-s4 cheap (10 ms, cost 2); h1 on s1, h2 on s4;
    intents 1 (fast, h1->h2 <= 3 ms) and 2 (cheap, h2->h1 <= 15 ms). No switch connected
    and no startup grace, so every switch is absent. Changes are sent to :class:`Switches`
    (no port statistics polled, no collector thread)."""
    service = ControllerService(load_topology(topology_file("diamond")), startup_grace_s=0.0,
                                port_stats_interval_s=0.0, gc_reclaim_interval_s=0.0)
    service.start(Switches())
    yield service
    service.stop()


def connect_all(service: ControllerService) -> None:
    wiring = service.wiring
    for dpid in sorted(wiring.dpid_node):
        assert service.switch_connected(dpid, {p: True for p in wiring.ports_of(dpid)},
                                        HANDLES[dpid])
    assert service.wait_idle(5)


def test_a_snapshot_is_one_consistent_copy(service: ControllerService) -> None:
    connect_all(service)
    added = service.add_intent(IntentSpec("h1", "h2", 3.0, min_bandwidth_mbps=40.0,
                                          name="gold", priority=300), admit=True)
    net = service.network_snapshot(recent_events=5)
    assert net.topology == "diamond"
    assert [s.dpid for s in net.switches] == [1, 2, 3, 4]
    assert all(s.connected and not s.synced for s in net.switches)
    # the reservation sits on the links of the fast path, a-to-b
    reserved = {(v.a, v.b): v.reserved_mbps for v in net.links}
    assert reserved == {("s1", "s2"): 40.0, ("s2", "s4"): 40.0, ("s1", "s3"): 0.0,
                        ("s3", "s4"): 0.0}
    assert all(v.up and v.load is None and v.load_mbps is None for v in net.links)
    assert [i.id for i in net.intents] == [1, 2, added.id]
    assert len(net.events) == 5 and net.marker == service.change_marker()
    # later changes do not reach into the snapshot
    service.remove_intent(added.id)
    wiring = service.wiring
    service.port_status(1, wiring.link_ports[0][0], False, HANDLES[1])
    assert service.wait_idle(5)
    assert [i.id for i in net.intents] == [1, 2, added.id]
    assert next(v for v in net.links if v.index == 0).up
    again = service.network_snapshot()
    assert not next(v for v in again.links if v.index == 0).up
    assert again.marker != net.marker


def test_the_change_marker_moves_only_with_the_state(service: ControllerService) -> None:
    before = service.change_marker()
    assert service.change_marker() == before
    service.switch_connected(2, {p: True for p in service.wiring.ports_of(2)}, HANDLES[2])
    assert service.change_marker() != before


def test_health_counts_switches_and_intents(service: ControllerService) -> None:
    assert service.health() == {"topology": "diamond", "switches_total": 4,
                                "switches_connected": 0, "switches_synced": 0, "intents": 2}
    connect_all(service)
    service.reconcile(3, [], HANDLES[3])
    assert service.wait_idle(5)
    assert service.health() == {"topology": "diamond", "switches_total": 4,
                                "switches_connected": 4, "switches_synced": 1, "intents": 2}


def test_flows_of_a_switch_and_of_an_intent_come_from_the_plan(service: ControllerService) -> None:
    connect_all(service)
    plan, entries = service.plan_flows(1)
    assert plan == "wanted" and entries == sorted(entries) and entries
    intent, flows = service.intent_flows(1)
    assert intent.id == 1 and intent.path == ("s1", "s2", "s4")
    assert {d for d, _, _ in flows} == {1, 2, 4}
    assert all(not installed for _, _, installed in flows)
    # the ingress flow is the intent's own; the rest belong to its head and the tunnel it
    # rides
    owners = {e.owner for _, e, _ in flows}
    assert ("intent", 1) in owners and ("tunnel", intent.mpls_label) in owners
    assert owners <= {("intent", 1), ("tunnel", intent.mpls_label)} | {
        ("tunnel", label) for label in intent.mpls_labels}
    assert service.installed_intent_flows(1) == 0
    assert service.installed_flow_counts() == {1: 0, 2: 0, 3: 0, 4: 0}
    # a reconciled switch shows its installed flows (here: it held none)
    service.reconcile(1, [], HANDLES[1])
    assert service.wait_idle(5)
    assert service.plan_flows(1)[0] == "installed"
    with pytest.raises(NotFound):
        service.plan_flows(0x99)
    with pytest.raises(NotFound):
        service.intent_flows(77)
    assert service.max_intent_id() == 2


def test_installed_flows_list_every_switch_in_dpid_order(service: ControllerService) -> None:
    rows = service.installed_flows()
    assert [(sw.name, sw.connected, entries) for sw, entries in rows] == [
        ("s1", False, []), ("s2", False, []), ("s3", False, []), ("s4", False, [])]
    assert service.switch(3).name == "s3"
    with pytest.raises(NotFound):
        service.switch(9)


def test_path_queries_resolve_hosts_and_name_the_failing_bound(service: ControllerService) -> None:
    connect_all(service)
    out = service.query_paths("h1", "h2", k=2)
    assert (out["src_node"], out["dst_node"]) == ("s1", "s4")
    assert [p["nodes"] for p in out["paths"]] == [["s1", "s2", "s4"], ["s1", "s3", "s4"]]
    assert [p["chosen"] for p in out["paths"]] == [True, False]
    # with a bound: least cost within it, as an intent would get
    assert service.query_paths("h1", "h2", max_latency_ms=15)["paths"][0]["nodes"] == \
        ["s1", "s3", "s4"]
    with pytest.raises(InfeasibleRoute) as exc:
        service.query_paths("h1", "s4", max_latency_ms=1.0)
    assert exc.value.best_latency_ms == 2.0 and "2.00 ms" in str(exc.value)
    with pytest.raises(BadRequest):
        service.query_paths("h1", "h1")
    with pytest.raises(NotFound):
        service.query_paths("h1", "h9")
    assert service.within_latency(["h1"], 1.5) == {"s1": {"s1": 0.0, "s2": 1.0}}


def test_the_network_view_reads_the_live_state_under_the_lock(service: ControllerService) -> None:
    topo = service.topology
    h1 = topo.host("h1")
    with service.network() as net:
        assert service.lock._is_owned()  # type: ignore[attr-defined]
        assert net.host_by_ip(h1.ip).name == "h1" and net.host("nobody") is None
        assert net.node_present("s1") is False  # no grace, not connected
        lid = net.graph.links_between("s1", "s2")[0]
        assert net.out_port("s1", lid) == net.wiring.link_ports[0][0]
    assert not service.lock._is_owned()  # type: ignore[attr-defined]
    connect_all(service)
    assert service.node_present("s1")
