"""The expected wiring: port numbers from the topology file, by the documented rule."""

from __future__ import annotations

import pytest

from controller.topology.files import topology_file
from controller.topology.loader import load_topology, topology_from_dict
from controller.topology.wiring import port_plan


def test_diamond_ports_follow_the_rule() -> None:
    w = port_plan(load_topology(topology_file("diamond")))
    # links: 0 s1-s2, 1 s2-s4, 2 s1-s3, 3 s3-s4; then h1 at s1, h2 at s4
    assert w.link_ports == ((1, 1), (2, 1), (2, 1), (2, 2))
    assert w.host_port == {"h1": ("s1", 3), "h2": ("s4", 3)}
    s1, s2, s4 = w.node_dpid["s1"], w.node_dpid["s2"], w.node_dpid["s4"]
    assert w.peer(s1, 1) == ("link", 0, s2, 1)
    assert w.peer(s2, 2) == ("link", 1, s4, 1)
    assert w.peer(s4, 3) == ("host", "h2")
    assert w.peer(s2, 3) is None
    assert w.ports_of(s1) == [1, 2, 3]
    assert w.ports_of(s2) == [1, 2]
    assert w.ports_of(12345) == []


def test_parallel_links_get_their_own_ports() -> None:
    t = topology_from_dict(
        {
            "name": "par",
            "nodes": [{"name": "a"}, {"name": "b"}],
            "links": [
                {"a": "a", "b": "b", "latency_ms": 1.0},
                {"a": "b", "b": "a", "latency_ms": 2.0},
            ],
            "hosts": [{"name": "ha", "node": "a"}],
        }
    )
    w = port_plan(t)
    assert w.link_ports == ((1, 1), (2, 2))
    assert w.host_port["ha"] == ("a", 3)
    a, b = w.node_dpid["a"], w.node_dpid["b"]
    assert w.peer(a, 2) == ("link", 1, b, 2)
    assert w.link_port(1, "b") == 2


@pytest.mark.parametrize("name", ["diamond", "triangle", "ring", "national"])
def test_wiring_is_consistent(name: str) -> None:
    t = load_topology(topology_file(name))
    w = port_plan(t)
    assert port_plan(t) == w  # deterministic
    for dpid in w.node_dpid.values():
        ports = w.ports_of(dpid)
        assert ports == list(range(1, len(ports) + 1))  # contiguous from 1, no reuse
    for i, lk in enumerate(t.links):
        pa, pb = w.link_ports[i]
        da, db = w.node_dpid[lk.a], w.node_dpid[lk.b]
        assert w.peer(da, pa) == ("link", i, db, pb)
        assert w.peer(db, pb) == ("link", i, da, pa)
    for h in t.hosts:
        node, port_no = w.host_port[h.name]
        assert node == h.node
        assert w.peer(w.node_dpid[node], port_no) == ("host", h.name)
    total = sum(len(w.ports_of(d)) for d in w.node_dpid.values())
    assert total == 2 * len(t.links) + len(t.hosts)
