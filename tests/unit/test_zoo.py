"""Internet Topology Zoo GML and GraphML import (controller.topology.zoo)."""

from __future__ import annotations

import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from controller.errors import TopologyError
from controller.topology.files import zoo_dir
from controller.topology.geo import great_circle_km
from controller.topology.loader import load_topology, parse_topology
from controller.topology.zoo import (
    DEFAULT_LATENCY_MS,
    import_file,
    import_gml,
    import_graphml,
    main,
    slug,
    unique_names,
)

REPO = Path(__file__).resolve().parents[2]
ZOO = zoo_dir()
SMALL_GRAPHML = REPO / "tests" / "data" / "small.graphml"


def _source_table() -> dict[str, dict[str, int]]:
    """The counts table of the dataset's SOURCE.md (written from an independent networkx run)."""
    rows: dict[str, dict[str, int]] = {}
    for line in (ZOO / "SOURCE.md").read_text().splitlines():
        m = re.match(r"\|\s*(\w+\.gml)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|",
                     line)
        if m:
            rows[m.group(1)] = {"nodes": int(m.group(2)), "edges": int(m.group(3)),
                                "pairs": int(m.group(4)), "with_coords": int(m.group(5))}
    return rows


TABLE = _source_table()


def test_source_table_lists_the_fifteen_files() -> None:
    assert len(TABLE) == 15
    assert set(TABLE) == {p.name for p in ZOO.glob("*.gml")}


@pytest.mark.parametrize("filename", sorted(TABLE))
def test_zoo_file_imports_with_its_counts(filename: str) -> None:
    expected = TABLE[filename]
    topo = import_gml(ZOO / filename)
    assert len(topo.nodes) == expected["nodes"]
    assert len(topo.links) == expected["edges"]  # parallel links kept
    assert len({frozenset((lk.a, lk.b)) for lk in topo.links}) == expected["pairs"]
    assert sum(1 for n in topo.nodes if n.has_coordinates) == expected["with_coords"]
    assert len({n.name for n in topo.nodes}) == len(topo.nodes)
    assert len(topo.hosts) == len(topo.nodes)
    # Latency rule: computed from coordinates, else the median of the computed ones, else 1 ms.
    computed = [lk.latency_ms for lk in topo.links if lk.latency_computed]
    fallback = statistics.median(computed) if computed else DEFAULT_LATENCY_MS
    for lk in topo.links:
        ends = topo.node(lk.a), topo.node(lk.b)
        if all(n.has_coordinates for n in ends):
            assert lk.latency_computed
            a, b = ends
            km = great_circle_km(a.lat, a.lon, b.lat, b.lon)  # type: ignore[arg-type]
            assert lk.latency_ms == pytest.approx(km * 1.5 * 0.0049, rel=1e-12)
        else:
            assert not lk.latency_computed and lk.latency_ms == fallback
    # Export and load back: the same topology.
    assert parse_topology(topo.to_yaml(), filename) == topo


def test_zoo_parallel_links_are_kept_for_an_undeclared_multigraph() -> None:
    topo = import_gml(ZOO / "Cernet.gml")
    pairs = Counter(frozenset((lk.a, lk.b)) for lk in topo.links)
    assert sorted(pairs.values())[-1] == 2  # SOURCE.md: Beijing and Xi'an have two links
    assert "multigraph" not in (ZOO / "Cernet.gml").read_text()  # nothing was written back


def test_internet2_has_no_coordinates_and_gets_the_default_latency() -> None:
    topo = import_gml(ZOO / "Internet2.gml")
    assert not any(n.has_coordinates for n in topo.nodes)
    assert {lk.latency_ms for lk in topo.links} == {DEFAULT_LATENCY_MS}


def test_zoo_link_speed_becomes_bandwidth() -> None:
    text = (ZOO / "Geant2012.gml").read_text()
    raw = [float(v) for v in re.findall(r"LinkSpeedRaw\s+([0-9.eE+]+)", text)]
    assert raw, "Geant2012 lists link speeds on most edges"
    topo = import_gml(ZOO / "Geant2012.gml")
    expected = [v / 1e6 for v in raw] + [10_000.0] * (len(topo.links) - len(raw))
    assert sorted(lk.bandwidth_mbps for lk in topo.links) == sorted(expected)


def test_names_unique_and_yaml_friendly() -> None:
    names = unique_names([(0, "Zürich"), (1, "New York"), (2, "New York"), (3, None), (4, "!!"),
                          (5, "new-york-2"), (6, "New York")])
    assert names == {0: "zurich", 1: "new-york", 2: "new-york-2", 3: "n3", 4: "n4",
                     5: "new-york-2-2", 6: "new-york-3"}
    assert slug("A" * 100) == "a" * 60


def test_graphml_import() -> None:
    topo = import_graphml(SMALL_GRAPHML)
    assert topo.name == "small"
    assert [n.name for n in topo.nodes] == ["zurich", "milano", "milano-2", "backhaul-site"]
    assert topo.node("zurich").label == "Zürich"
    assert not topo.node("backhaul-site").has_coordinates
    assert len(topo.links) == 5
    zm = [lk for lk in topo.links if {lk.a, lk.b} == {"zurich", "milano"}]
    assert sorted(lk.bandwidth_mbps for lk in zm) == [10_000.0, 100_000.0]
    assert sorted(lk.cost for lk in zm) == [1.0, 5.0]
    km = great_circle_km(47.37, 8.54, 45.46, 9.19)
    assert zm[0].latency_ms == pytest.approx(km * 1.5 * 0.0049, rel=1e-12)
    given = [lk for lk in topo.links if {lk.a, lk.b} == {"backhaul-site", "zurich"}]
    assert [lk.latency_ms for lk in given] == [2.5]
    fallback = [lk for lk in topo.links if {lk.a, lk.b} == {"milano-2", "backhaul-site"}]
    computed = [lk.latency_ms for lk in topo.links if lk.latency_computed]
    assert len(computed) == 3
    assert [lk.latency_ms for lk in fallback] == [statistics.median(computed)]
    assert parse_topology(topo.to_yaml()) == topo


def test_cli_converts_to_yaml_that_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "geant.yaml"
    assert main([str(ZOO / "Geant2012.gml"), "-o", str(out), "--route-factor", "1.3"]) == 0
    loaded = load_topology(out)
    direct = import_file(ZOO / "Geant2012.gml", route_factor=1.3)
    assert loaded == direct and loaded.route_factor == 1.3
    assert main([str(SMALL_GRAPHML), "--name", "lab"]) == 0
    assert parse_topology(capsys.readouterr().out).name == "lab"


def test_a_route_factor_out_of_range_is_refused_before_import(
        capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(TopologyError, match="route_factor must be between 1 and 10") as err:
        import_file(ZOO / "Abilene.gml", route_factor=0.5)
    assert err.value.field == "route_factor"
    assert main([str(ZOO / "Abilene.gml"), "--route-factor", "11"]) != 0
    assert "route_factor must be between 1 and 10, not 11" in capsys.readouterr().err


def test_bad_inputs_raise_topology_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gml"
    bad.write_text("graph [\n  node [ id 0 label \"a\" ]\n  edge [ source 0 target 9 ]\n")
    with pytest.raises(TopologyError) as info:
        import_gml(bad)
    assert info.value.source == str(bad)
    junk = tmp_path / "junk.graphml"
    junk.write_text("<graphml><graph")
    with pytest.raises(TopologyError):
        import_graphml(junk)
    with pytest.raises(TopologyError, match="expected .gml or .graphml"):
        import_file(tmp_path / "x.txt")
    with pytest.raises(TopologyError):
        import_gml(tmp_path / "missing.gml")
    assert main([str(junk)]) == 1
