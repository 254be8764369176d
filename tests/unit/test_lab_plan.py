"""The lab's pure parts: names, port plan, loop detection, ping-pair sampling, parsing.

No switches: these run without root. The Mininet side is in tests/integration/test_lab*.py.
"""

from __future__ import annotations

import itertools

import networkx as nx
import pytest

from controller.errors import LabError, NotFound
from controller.lab.build import ControllerAddress, parse_controller
from controller.lab.cleanup import (
    LINK_GROUP_BASE,
    LINK_GROUP_STRIDE,
    LINK_GROUP_TRIES,
    choose_link_group,
)
from controller.lab.ovs import require_root
from controller.lab.ping import PingMatrix, PingResult, parse_ping_lines, plan_ping_pairs
from controller.lab.plan import LabPlan
from controller.topology.files import topology_file
from controller.topology.loader import load_topology, topology_from_dict


def _topo(links: list[tuple[str, str]], nodes: list[str] | None = None, hosts=None):
    names = nodes or sorted({n for lk in links for n in lk})
    doc = {
        "name": "t",
        "nodes": [{"name": n} for n in names],
        "links": [{"a": a, "b": b, "latency_ms": 1.0} for a, b in links],
    }
    if hosts is not None:
        doc["hosts"] = hosts
    return topology_from_dict(doc)


def test_names_are_short_and_map_both_ways() -> None:
    topo = load_topology(topology_file("national"))
    plan = LabPlan.from_topology(topo)
    for i, node in enumerate(topo.nodes, start=1):
        assert plan.switch(node.name) == f"s{i}"
        assert plan.node_of(f"s{i}") == node.name
    for i, h in enumerate(topo.hosts, start=1):
        assert plan.host(h.name) == f"h{i}"
        assert plan.host_of(f"h{i}") == h.name
    # every interface name fits Linux's 15 characters
    for ifaces in plan.switch_interfaces().values():
        for iface, _port in ifaces:
            assert len(iface) <= 15
    with pytest.raises(NotFound):
        plan.switch("atlantis")


def test_ports_links_in_file_order_then_hosts() -> None:
    topo = _topo(
        [("a", "b"), ("a", "c"), ("b", "c"), ("a", "b")],
        hosts=[{"name": "x", "node": "a"}, {"name": "y", "node": "a"}, {"name": "z", "node": "c"}],
    )
    plan = LabPlan.from_topology(topo)
    assert plan.link_ports == [(1, 1), (2, 1), (2, 2), (3, 3)]
    assert plan.host_ports == {"x": 4, "y": 5, "z": 3}
    assert plan.links_between("b", "a") == [0, 3]  # parallel links kept apart
    assert plan.link_interfaces(3) == ("s1-eth3", "s2-eth3")
    # ports on each switch are distinct and dense from 1
    for ifaces in plan.switch_interfaces().values():
        ports = sorted(p for _i, p in ifaces)
        assert ports == list(range(1, len(ports) + 1))


@pytest.mark.parametrize("name", ["triangle", "diamond", "ring", "national"])
def test_loop_and_diameter_match_networkx(name: str) -> None:
    topo = load_topology(topology_file(name))
    plan = LabPlan.from_topology(topo)
    g = nx.MultiGraph()
    g.add_nodes_from(n.name for n in topo.nodes)
    g.add_edges_from((lk.a, lk.b) for lk in topo.links)
    has_cycle = g.number_of_edges() > g.number_of_nodes() - nx.number_connected_components(g)
    assert plan.has_loop() == has_cycle
    assert plan.diameter_hops() == max(
        nx.diameter(g.subgraph(c)) for c in nx.connected_components(g)
    )


def test_tree_and_parallel_link_loops() -> None:
    assert not LabPlan.from_topology(_topo([("a", "b"), ("b", "c"), ("b", "d")])).has_loop()
    assert LabPlan.from_topology(_topo([("a", "b"), ("a", "b")])).has_loop()


def test_ping_pairs_all_for_small_networks() -> None:
    hosts = [f"h{i}" for i in range(5)]
    pairs, text = plan_ping_pairs(hosts)
    assert sorted(pairs) == sorted(itertools.permutations(hosts, 2))
    assert text == "all 20 ordered pairs of 5 hosts"


def test_ping_pairs_sample_is_bounded_covering_and_deterministic() -> None:
    hosts = [f"h{i}" for i in range(52)]
    pairs, text = plan_ping_pairs(hosts, sample_pairs=150)
    assert len(pairs) == 150 and len(set(pairs)) == 150
    assert all(a != b and a in hosts and b in hosts for a, b in pairs)
    assert {a for a, _ in pairs} == set(hosts) and {b for _, b in pairs} == set(hosts)
    assert "sample of 150 of 2652" in text
    assert plan_ping_pairs(hosts, sample_pairs=150) == (pairs, text)
    everything, _ = plan_ping_pairs(hosts, force_all=True)
    assert len(everything) == 52 * 51


def test_parse_ping_output() -> None:
    out = (
        "@@ 10.0.0.2 0 1 packets transmitted, 1 received, 0% packet loss, time 0ms "
        "rtt min/avg/max/mdev = 0.101/0.250/0.400/0.010 ms \n"
        "@@ 10.0.0.3 1 2 packets transmitted, 0 received, 100% packet loss, time 1001ms \n"
        "noise\n"
    )
    assert parse_ping_lines(out) == {"10.0.0.2": (1, 1, 0.25), "10.0.0.3": (2, 0, None)}


def test_ping_matrix_summary_counts_loss() -> None:
    m = PingMatrix(
        [PingResult("a", "b", 2, 2, 0.5), PingResult("b", "a", 2, 1, 0.7)],
        "2 given pairs",
        ["a", "b"],
    )
    assert m.sent == 4 and m.received == 3 and m.loss_percent == 25.0
    assert [(r.src, r.dst) for r in m.failed] == [("b", "a")]
    table = m.summary_table()
    assert table.splitlines()[-1].split()[:6] == ["total", "2", "4", "3", "25%", "0.600"]
    assert "LOSS" in m.matrix_table()


@pytest.mark.parametrize(
    "text, want",
    [
        ("tcp:127.0.0.1:6653", ControllerAddress("127.0.0.1", 6653, "tcp")),
        ("127.0.0.1:6633", ControllerAddress("127.0.0.1", 6633, "tcp")),
        ("ctl.local", ControllerAddress("ctl.local", 6653, "tcp")),
    ],
)
def test_parse_controller(text: str, want: ControllerAddress) -> None:
    assert parse_controller(text) == want


@pytest.mark.parametrize("text", ["tcp:", "tcp:host:port", "tcp:h:0", "tcp:h:70000", "a:b:c:d"])
def test_parse_controller_rejects(text: str) -> None:
    with pytest.raises(LabError, match="bad controller"):
        parse_controller(text)


def test_require_root_by_euid() -> None:
    with pytest.raises(LabError, match="must run as root"):
        require_root(euid=1000)
    require_root(euid=0)


def test_link_group_is_the_pids_own_and_steps_past_taken_ones() -> None:
    assert choose_link_group(4242, {0}) == LINK_GROUP_BASE + 4242
    taken = {LINK_GROUP_BASE + 4242, LINK_GROUP_BASE + 4242 + LINK_GROUP_STRIDE}
    assert choose_link_group(4242, taken) == LINK_GROUP_BASE + 4242 + 2 * LINK_GROUP_STRIDE
    # every pid Linux hands out gets a group of its own, within the 32 bits of a link group
    ends = [choose_link_group(pid, set()) for pid in (1, LINK_GROUP_STRIDE - 1)]
    assert ends[0] != ends[1]
    assert LINK_GROUP_BASE + (LINK_GROUP_TRIES + 1) * LINK_GROUP_STRIDE < 2**32


def test_link_group_refuses_when_all_candidates_are_taken_or_the_pid_is_odd() -> None:
    taken = {LINK_GROUP_BASE + 7 + k * LINK_GROUP_STRIDE for k in range(LINK_GROUP_TRIES)}
    with pytest.raises(LabError, match="all in use"):
        choose_link_group(7, taken)
    for pid in (0, LINK_GROUP_STRIDE):
        with pytest.raises(LabError, match="outside"):
            choose_link_group(pid, set())
