"""Segment routing fields of topology files: what is refused (with file:line:field), what the
shipped SR files hold, and that the generator writes what is committed."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import TopologyError
from controller.topology.files import topology_file
from controller.topology.loader import load_topology, parse_topology

REPO = Path(__file__).resolve().parents[2]

# Line numbers below refer to this text (1-based).
BASE = """\
name: sr
nodes:
  - {name: a, router_id: 10.0.0.1, node_sid_index: 1}
  - {name: b, router_id: 10.0.0.2, node_sid_index: 2, srgb: {start: 20000, size: 100}}
  - {name: c, router_id: 10.0.0.3, node_sid_index: 3}
links:
  - {a: a, b: b, latency_ms: 1, igp_metric: 10, a_address: 10.1.0.1, b_address: 10.1.0.2,
     a_adj_sid: 24001, b_adj_sid: 24002}
  - {a: b, b: c, latency_ms: 1, igp_metric: 10, a_address: 10.1.1.1, b_address: 10.1.1.2,
     a_adj_sid: 24001, b_adj_sid: 24003}
hosts: []
"""


def _error(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, source="sr.yaml")
    return info.value


def test_base_loads_with_its_sids() -> None:
    topo = parse_topology(BASE)
    assert [n.node_sid for n in topo.nodes] == [16001, 20002, 16003]
    assert topo.links[0].a_adj_sid == 24001 and topo.links[1].igp_metric == 10
    # export keeps every SR field: the file parses back to an equal topology
    assert parse_topology(topo.to_yaml()) == topo


@pytest.mark.parametrize(("old", "new", "line", "field", "words"), [
    ("node_sid_index: 2, srgb", "node_sid_index: 100, srgb", 4, "nodes[1].node_sid_index",
     "outside the SRGB [20000, 20099]"),
    ("{name: c, router_id: 10.0.0.3, node_sid_index: 3}",
     "{name: c, router_id: 10.0.0.3, node_sid_index: 1}", 5, "nodes[2].node_sid_index",
     "duplicate node SID index 1 (also nodes[0])"),
    ("{name: c, router_id: 10.0.0.3, node_sid_index: 3}", "{name: c, node_sid_index: 3}", 5,
     "nodes[2].router_id", "missing router_id"),
    ("router_id: 10.0.0.3", "router_id: 10.0.0.1", 5, "nodes[2].router_id",
     "duplicate router_id 10.0.0.1"),
    ("router_id: 10.0.0.3", "router_id: ten", 5, "nodes[2].router_id", "bad IPv4 router id"),
    ("a_adj_sid: 24001, b_adj_sid: 24003", "a_adj_sid: 24002, b_adj_sid: 24003", 10,
     "links[1].a_adj_sid", "duplicate adjacency SID 24002 at 'b'"),
    ("a_adj_sid: 24001, b_adj_sid: 24002", "a_adj_sid: 16005, b_adj_sid: 24002", 8,
     "links[0].a_adj_sid", "inside the SRGB [16000, 23999] of 'a'"),
    ("b_address: 10.1.1.2", "b_address: 10.1.0.1", 9, "links[1].b_address",
     "duplicate address 10.1.0.1 (also links[0].a_address)"),
    ("a_address: 10.1.0.1, b_address: 10.1.0.2,", "a_address: 10.1.0.1,", 7,
     "links[0].b_address", "needs both interface addresses"),
    ("srgb: {start: 20000, size: 100}", "srgb: {start: 1048500, size: 100}", 4,
     "nodes[1].srgb", "passes the last MPLS label"),
    ("a_adj_sid: 24001, b_adj_sid: 24002", "a_adj_sid: 7, b_adj_sid: 24002", 8,
     "links[0].a_adj_sid", "greater than or equal to 16"),
])
def test_bad_sr_input_is_refused_with_line_and_field(old: str, new: str, line: int,
                                                      field: str, words: str) -> None:
    assert old in BASE
    err = _error(BASE.replace(old, new, 1))
    assert (err.source, err.line, err.field) == ("sr.yaml", line, field), str(err)
    assert words in err.message, err.message
    assert str(err).startswith(f"sr.yaml:{line}: {field}: ")


def test_a_file_without_sr_fields_needs_none() -> None:
    topo = load_topology(topology_file("diamond"))
    assert all(n.router_id is None and n.node_sid is None for n in topo.nodes)


def test_shipped_sr_files() -> None:
    diamond = load_topology(topology_file("diamond-sr"))
    assert len(diamond.nodes) == 5 and all(lk.a_adj_sid for lk in diamond.links)
    national = load_topology(topology_file("national-sr"))
    plain = load_topology(topology_file("national"))
    assert [n.name for n in national.nodes] == [n.name for n in plain.nodes]
    assert [(lk.a, lk.b, lk.latency_ms, lk.cost) for lk in national.links] == \
        [(lk.a, lk.b, lk.latency_ms, lk.cost) for lk in plain.links]
    assert len({n.router_id for n in national.nodes}) == len(national.nodes) == 52


def test_generator_writes_what_is_committed(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_sr", REPO / "topologies" / "gen_sr.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    out = tmp_path / "national-sr.yaml"
    assert gen.main([str(topology_file("national")), "-o", str(out)]) == 0
    assert out.read_text() == topology_file("national-sr").read_text()
