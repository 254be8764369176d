"""The topology model and YAML loader: validation with line and field, derivation, round trip."""

from __future__ import annotations

import ipaddress
import json
import math
from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import NotFound, TopologyError
from controller.topology.files import topologies_dir, topology_file
from controller.topology.loader import load_topology, parse_topology
from controller.topology.model import MAX_DPID, Topology
from controller.topology.schema import TopologyDocument

REPO = Path(__file__).resolve().parents[2]

# Line numbers below refer to this text (1-based): keep it as it is.
BASE = """\
name: t
nodes:
  - {name: a, lat: 30.0, lon: 110.0}
  - {name: b, lat: 31.0, lon: 111.0}
  - name: c
    dpid: 7
links:
  - {a: a, b: b}
  - {a: b, b: c, latency_ms: 2}
hosts:
  - {name: ha, node: a}
  - {name: hc, node: c, ip: 10.1.2.3}
compute_sites:
  - {id: "cs:x:gen-01", node: a, capacity: 10, host: ha}
intents:
  - {name: i1, src: ha, dst: hc, max_latency_ms: 20}
"""


def _with(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _error(text: str, source: str = "f.yaml") -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, source=source)
    return info.value


def test_base_loads() -> None:
    topo = parse_topology(BASE, "f.yaml")
    assert [n.name for n in topo.nodes] == ["a", "b", "c"]
    assert [n.dpid for n in topo.nodes] == [1, 2, 7]
    assert topo.links[0].latency_computed and not topo.links[1].latency_computed
    assert topo.links[1].latency_ms == 2.0
    assert topo.host("hc").ip == "10.1.2.3"
    assert topo.compute_sites[0].unit == "PFLOPS"
    assert topo.intents[0].protection is False


ERROR_CASES = [
    # (id, text, line, field, words in the message)
    ("yaml syntax", _with("lon: 111.0}", "lon: 111.0}}"), 4, None, "YAML syntax"),
    # libyaml notices the bad indent of line 8 when line 9 goes back to the list indent.
    ("yaml bad indent", _with("  - {a: a, b: b}", "   - {a: a, b: b}"), 9, None, "YAML syntax"),
    ("unknown node in link", _with("{a: b, b: c,", "{a: b, b: zz,"), 9, "links[1].b",
     "unknown node 'zz'"),
    ("unknown node in link a", _with("{a: a, b: b}", "{a: q, b: b}"), 8, "links[0].a",
     "unknown node 'q'"),
    ("unknown node in host", _with("{name: ha, node: a}", "{name: ha, node: x}"), 11,
     "hosts[0].node", "unknown node 'x'"),
    ("unknown node in site", _with("node: a, capacity", "node: y, capacity"), 14,
     "compute_sites[0].node", "unknown node 'y'"),
    ("unknown host in intent", _with("dst: hc,", "dst: hz,"), 16, "intents[0].dst",
     "unknown host 'hz'"),
    ("unknown host in site", _with("host: ha}", "host: hq}"), 14, "compute_sites[0].host",
     "unknown host 'hq'"),
    ("duplicate node", _with("  - name: c\n", "  - name: a\n"), 5, "nodes[2].name",
     "duplicate node name 'a'"),
    ("duplicate host", _with("{name: hc, node: c", "{name: ha, node: c"), 12, "hosts[1].name",
     "duplicate host name 'ha'"),
    ("host named like node", _with("{name: hc, node: c", "{name: b, node: c"), 12,
     "hosts[1].name", "also a node name"),
    ("duplicate site", BASE.replace("intents:", '  - {id: "cs:x:gen-01", node: b, capacity: 1}\n'
                                    "intents:"), 15, "compute_sites[1].id",
     "duplicate compute site id"),
    ("duplicate intent name", BASE + "  - {name: i1, src: hc, dst: ha, max_latency_ms: 5}\n", 17,
     "intents[1].name", "duplicate intent name"),
    ("duplicate dpid", _with("    dpid: 7\n", "    dpid: 7\n  - {name: d, dpid: 7}\n"), 7,
     "nodes[3].dpid", "duplicate dpid 7"),
    ("dpid zero", _with("dpid: 7", "dpid: 0"), 6, "nodes[2].dpid", "between 1 and 2^64-1"),
    ("dpid negative", _with("dpid: 7", "dpid: -3"), 6, "nodes[2].dpid", "between 1 and 2^64-1"),
    ("dpid too big", _with("dpid: 7", f"dpid: {MAX_DPID + 1}"), 6, "nodes[2].dpid",
     "between 1 and 2^64-1"),
    ("dpid float", _with("dpid: 7", "dpid: 1.5"), 6, "nodes[2].dpid", "valid integer"),
    ("dpid bool", _with("dpid: 7", "dpid: true"), 6, "nodes[2].dpid", "valid integer"),
    ("dpid bad hex", _with("dpid: 7", "dpid: '0xgg'"), 6, "nodes[2].dpid", "hex string"),
    ("negative latency", _with("latency_ms: 2", "latency_ms: -2"), 9, "links[1].latency_ms",
     "greater than or equal to 0"),
    ("nan latency", _with("latency_ms: 2", "latency_ms: .nan"), 9, "links[1].latency_ms",
     "finite"),
    ("infinite latency", _with("latency_ms: 2", "latency_ms: .inf"), 9, "links[1].latency_ms",
     "finite"),
    ("no latency no coordinates", _with("latency_ms: 2", "cost: 3"), 9, "links[1].latency_ms",
     "node 'c' has no coordinates"),
    ("unknown kind", _with("{name: a, lat", "{name: a, kind: core, lat"), 3, "nodes[0].kind",
     "'national_hub'"),
    ("unknown field in node", _with("{name: b, lat", "{name: b, colour: red, lat"), 4,
     "nodes[1].colour", "unknown field 'colour'"),
    ("unknown top-level field", "flavour: x\n" + BASE, 1, "flavour", "unknown field 'flavour'"),
    ("unknown field in match", _with("max_latency_ms: 20}", "max_latency_ms: 20, match: {tos: 1}}"),
     16, "intents[0].match.tos", "unknown field 'tos'"),
    ("bad ip", _with("ip: 10.1.2.3", "ip: 10.1.2.300"), 12, "hosts[1].ip", "bad IPv4 address"),
    ("ipv6 ip", _with("ip: 10.1.2.3", "ip: '::1'"), 12, "hosts[1].ip", "bad IPv4 address"),
    ("duplicate ip", _with("{name: ha, node: a}", "{name: ha, node: a, ip: 10.1.2.3}"), 12,
     "hosts[1].ip", "duplicate IP"),
    ("bad mac", _with("ip: 10.1.2.3", "ip: 10.1.2.3, mac: '02:00:00:00:00'"), 12, "hosts[1].mac",
     "bad MAC"),
    ("multicast mac", _with("ip: 10.1.2.3", "ip: 10.1.2.3, mac: '01:00:00:00:00:01'"), 12,
     "hosts[1].mac", "multicast"),
    ("self loop", _with("{a: b, b: c,", "{a: c, b: c,"), 9, "links[1].b", "self-loop"),
    ("missing field", _with("{a: a, b: b}", "{a: a}"), 8, "links[0].b", "required"),
    ("lat without lon", _with("{name: b, lat: 31.0, lon: 111.0}", "{name: b, lat: 31.0}"), 4,
     "nodes[1].lon", "both lat and lon"),
    ("latitude out of range", _with("lat: 31.0", "lat: 91.0"), 4, "nodes[1].lat", "less than"),
    ("bad node name", _with("{name: b,", "{name: 'b c',"), 4, "nodes[1].name", "names start"),
    ("control character in label", _with("{name: b,", '{name: b, label: "x\\ty",'), 4,
     "nodes[1].label", "control characters"),
    ("string for number", _with("latency_ms: 2", "latency_ms: '2'"), 9, "links[1].latency_ms",
     "valid number"),
    ("zero bandwidth", _with("{a: a, b: b}", "{a: a, b: b, bandwidth_mbps: 0}"), 8,
     "links[0].bandwidth_mbps", "greater than 0"),
    ("route factor below one", _with("{a: a, b: b}", "{a: a, b: b, route_factor: 0.5}"), 8,
     "links[0].route_factor", "greater than or equal to 1"),
    ("bad site id", _with('"cs:x:gen-01"', '"site-1"'), 14, "compute_sites[0].id",
     "bad compute site id"),
    ("free above capacity", _with("capacity: 10,", "capacity: 10, free_capacity: 11,"), 14,
     "compute_sites[0].free_capacity", "exceeds capacity"),
    ("site host elsewhere", _with("host: ha}", "host: hc}"), 14, "compute_sites[0].host",
     "attached to 'c'"),
    ("intent to itself", _with("dst: hc,", "dst: ha,"), 16, "intents[0].dst", "same host"),
    ("ports without proto",
     _with("max_latency_ms: 20}", "max_latency_ms: 20, match: {dst_port: 80}}"), 16,
     "intents[0].match", "ip_proto"),
    ("zero latency bound", _with("max_latency_ms: 20", "max_latency_ms: 0"), 16,
     "intents[0].max_latency_ms", "greater than 0"),
    ("duplicate key", BASE + "name: again\n", 17, "name", "duplicate key"),
    ("no nodes", "name: t\nnodes: []\n", 2, "nodes", "at least 1"),
    ("bad host network", "host_network: 10.0.0.1/8\n" + BASE, 1, "host_network", "bad IPv4"),
]


@pytest.mark.parametrize(("text", "line", "field", "words"),
                         [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors_name_line_and_field(text: str, line: int, field: str | None, words: str) -> None:
    err = _error(text)
    assert err.source == "f.yaml"
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert words in err.message, str(err)
    assert str(err).startswith(f"f.yaml:{line}: ")


def test_empty_and_non_mapping_files() -> None:
    assert _error("").line == 1
    assert "mapping" in _error("- a\n- b\n").message
    assert "mapping" in _error("just text\n").message


def test_yaml_error_line_comes_from_the_parser() -> None:
    text = "name: t\nnodes:\n  - {name: a}\n  - {name: b\n\nlinks: []\n"
    err = _error(text)
    assert err.field is None
    # libyaml reports the unclosed flow mapping where it gave up, after line 4.
    assert err.line is not None and err.line >= 4


def test_several_errors_report_the_first_by_line() -> None:
    text = _with("{name: a, lat", "{name: a, kind: core, lat")
    text = _with("latency_ms: 2", "latency_ms: -2", text)
    err = _error(text)
    assert (err.line, err.field) == (3, "nodes[0].kind")
    assert "1 more error" in err.message


def test_hex_dpid_and_max_dpid_accepted() -> None:
    topo = parse_topology(_with("dpid: 7", "dpid: '0x1A'"))
    assert topo.node("c").dpid == 26
    topo = parse_topology(_with("dpid: 7", f"dpid: {MAX_DPID}"))
    assert topo.node("c").dpid == MAX_DPID


def test_derived_dpids_skip_explicit_ones_and_are_stable() -> None:
    text = ("name: t\nnodes:\n  - {name: a}\n  - {name: b, dpid: 1}\n  - {name: c}\n"
            "  - {name: d, dpid: 3}\n  - {name: e}\nlinks: []\n")
    first = parse_topology(text)
    dpids = {n.name: n.dpid for n in first.nodes}
    assert dpids == {"a": 2, "b": 1, "c": 4, "d": 3, "e": 5}
    assert parse_topology(text) == first
    # With no explicit dpids, the dpid is the 1-based position in the file.
    plain = parse_topology("name: t\nnodes:\n" + "".join(f"  - {{name: n{i}}}\n" for i in range(9)))
    assert [n.dpid for n in plain.nodes] == list(range(1, 10))


def test_derived_hosts_one_per_node_unique_and_stable() -> None:
    text = "name: t\nnodes:\n" + "".join(f"  - {{name: s{i}}}\n" for i in range(300))
    topo = parse_topology(text)
    assert [h.node for h in topo.hosts] == [n.name for n in topo.nodes]
    assert [h.name for h in topo.hosts] == [f"h-{n.name}" for n in topo.nodes]
    ips = [ipaddress.IPv4Address(h.ip) for h in topo.hosts]
    net = ipaddress.IPv4Network("10.0.0.0/8")
    assert len(set(ips)) == 300 and all(ip in net for ip in ips)
    assert net.network_address not in ips and net.broadcast_address not in ips
    macs = [h.mac for h in topo.hosts]
    assert len(set(macs)) == 300
    for mac in macs:
        first_octet = int(mac.split(":")[0], 16)
        assert first_octet & 1 == 0 and first_octet & 2 == 2  # unicast, locally administered
    assert {h.prefix_len for h in topo.hosts} == {8}
    assert parse_topology(text).hosts == topo.hosts


def test_explicit_addresses_are_never_reused_by_derived_ones() -> None:
    text = ("name: t\nnodes:\n  - {name: a}\n  - {name: b}\nhosts:\n"
            "  - {name: h1, node: a}\n  - {name: h2, node: b, ip: 10.0.0.1}\n"
            "  - {name: h3, node: b, mac: '02:00:0a:00:00:02'}\n  - {name: h4, node: a}\n")
    # h1 derives 10.0.0.2 (h2 holds 10.0.0.1) and MAC 02:00:0a:00:00:02, which h3 repeats.
    err = _error(text)
    assert (err.field, err.line) == ("hosts[2].mac", 8)
    topo = parse_topology(text.replace("02:00:0a:00:00:02", "02:aa:00:00:00:01"))
    assert [h.ip for h in topo.hosts] == ["10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.4"]


def test_empty_hosts_section_means_no_hosts_and_host_network_is_used() -> None:
    topo = parse_topology("name: t\nnodes:\n  - {name: a}\nhosts: []\n")
    assert topo.hosts == []
    topo = parse_topology("name: t\nhost_network: 192.168.7.0/24\nnodes:\n  - {name: a}\n")
    assert (topo.hosts[0].ip, topo.hosts[0].prefix_len) == ("192.168.7.1", 24)
    assert topo.hosts[0].ip_with_prefix == "192.168.7.1/24"
    err = _error("name: t\nhost_network: 192.168.7.0/31\nnodes:\n  - {name: a}\n  - {name: b}\n")
    assert "no room" in err.message


def _independent_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great circle via the angle between unit vectors (not the haversine formula)."""

    def unit(lat: float, lon: float) -> tuple[float, float, float]:
        p, lm = math.radians(lat), math.radians(lon)
        return (math.cos(p) * math.cos(lm), math.cos(p) * math.sin(lm), math.sin(p))

    u, v = unit(lat1, lon1), unit(lat2, lon2)
    cross = (u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0])
    dot = sum(a * b for a, b in zip(u, v, strict=True))
    return 6371.0088 * math.atan2(math.sqrt(sum(c * c for c in cross)), dot)


@pytest.mark.parametrize(("p", "q"), [((39.90, 116.41), (31.23, 121.47)),  # Beijing-Shanghai
                                      ((43.83, 87.62), (22.54, 114.06)),  # Urumqi-Shenzhen
                                      ((51.5, -0.12), (40.71, -74.0)),  # London-New York
                                      ((10.0, 179.5), (-10.0, -179.5))])  # across the date line
def test_latency_from_coordinates_matches_independent_great_circle(p: tuple, q: tuple) -> None:
    text = (f"name: t\nroute_factor: 1.4\nnodes:\n  - {{name: p, lat: {p[0]}, lon: {p[1]}}}\n"
            f"  - {{name: q, lat: {q[0]}, lon: {q[1]}}}\nlinks:\n  - {{a: p, b: q}}\n"
            "  - {a: p, b: q, route_factor: 1.0}\n")
    topo = parse_topology(text)
    km = _independent_km(*p, *q)
    assert topo.links[0].distance_km == pytest.approx(km, rel=1e-9)
    assert topo.links[0].latency_ms == pytest.approx(km * 1.4 * 0.0049, rel=1e-9)
    assert topo.links[1].latency_ms == pytest.approx(km * 1.0 * 0.0049, rel=1e-9)
    assert topo.links[0].latency_computed


def test_default_route_factor_is_one_and_a_half() -> None:
    topo = parse_topology("name: t\nnodes:\n  - {name: p, lat: 0, lon: 0}\n"
                          "  - {name: q, lat: 0, lon: 1}\nlinks:\n  - {a: p, b: q}\n")
    km = _independent_km(0, 0, 0, 1)
    assert topo.route_factor == 1.5
    assert topo.links[0].latency_ms == pytest.approx(km * 1.5 * 0.0049, rel=1e-9)


def test_round_trip_to_yaml_and_back() -> None:
    text = _with("max_latency_ms: 20}", "max_latency_ms: 20, match: {ip_proto: udp, dst_port: 53,"
                 " dscp: 46}, priority: 7, protection: true, min_bandwidth_mbps: 5}")
    topo = parse_topology(text)
    assert topo.intents[0].match is not None and topo.intents[0].match.ip_proto == 17
    again = parse_topology(topo.to_yaml())
    assert again == topo
    assert parse_topology(again.to_yaml()).to_yaml() == topo.to_yaml()


@pytest.mark.parametrize("name", ["triangle", "diamond", "ring", "national"])
def test_shipped_files_round_trip(name: str) -> None:
    topo = load_topology(topology_file(name))
    assert parse_topology(topo.to_yaml()) == topo


def test_load_topology_reports_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(_with("{a: b, b: c,", "{a: b, b: zz,"))
    with pytest.raises(TopologyError) as info:
        load_topology(bad)
    assert info.value.source == str(bad) and info.value.line == 9
    missing = tmp_path / "missing.yaml"
    with pytest.raises(TopologyError) as info:
        load_topology(missing)
    assert info.value.source == str(missing)


def test_a_bad_file_changes_nothing_for_the_next_load(tmp_path: Path) -> None:
    good = parse_topology(BASE)
    _error(_with("  - name: c\n", "  - name: a\n"))
    assert parse_topology(BASE) == good


def test_lookups() -> None:
    topo = parse_topology(BASE)
    assert topo.node("b").lat == 31.0
    with pytest.raises(NotFound):
        topo.node("nope")
    with pytest.raises(NotFound):
        topo.host("nope")
    assert topo.node_by_dpid(7).name == "c"
    assert topo.neighbors("b") == ["a", "c"]
    assert [h.name for h in topo.hosts_at("c")] == ["hc"]
    assert topo.compute_site("cs:x:gen-01").capacity == 10.0


def test_small_labs_shapes() -> None:
    tri = load_topology(topology_file("triangle"))
    assert (len(tri.nodes), len(tri.links), len(tri.hosts)) == (3, 3, 3)
    ring = load_topology(topology_file("ring"))
    g = nx.Graph([(lk.a, lk.b) for lk in ring.links])
    assert all(d == 2 for _, d in g.degree()) and nx.is_connected(g) and len(g) == 6


def test_diamond_tight_bound_takes_fast_path_loose_bound_the_cheap_one() -> None:
    """Brute force over the simple paths: least cost subject to the latency bound."""
    topo = load_topology(topology_file("diamond"))
    g = nx.Graph()
    for lk in topo.links:
        g.add_edge(lk.a, lk.b, latency=lk.latency_ms, cost=lk.cost)

    def total(path: list[str], key: str) -> float:
        return sum(g[u][v][key] for u, v in nx.utils.pairwise(path))

    def best(src: str, dst: str, bound: float) -> list[str]:
        paths = [p for p in nx.all_simple_paths(g, src, dst) if total(p, "latency") <= bound]
        return min(paths, key=lambda p: total(p, "cost"))

    fast, cheap = topo.intents
    src, dst = topo.host(fast.src).node, topo.host(fast.dst).node
    assert best(src, dst, fast.max_latency_ms) == ["s1", "s2", "s4"]
    src, dst = topo.host(cheap.src).node, topo.host(cheap.dst).node
    assert best(src, dst, cheap.max_latency_ms) == ["s4", "s3", "s1"]


def test_json_schema_file_is_current() -> None:
    committed = json.loads((topologies_dir() / "schema.json").read_text())
    assert committed == TopologyDocument.model_json_schema()


def test_topology_is_immutable() -> None:
    topo = parse_topology(BASE)
    with pytest.raises(AttributeError):
        topo.name = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        topo.nodes[0].dpid = 9  # type: ignore[misc]
    assert isinstance(topo, Topology)


def test_the_documented_example_loads() -> None:
    text = (REPO / "docs" / "topology.md").read_text()
    example = text.split("### Example\n\n```yaml\n", 1)[1].split("```", 1)[0]
    topo = parse_topology(example, "docs/topology.md")
    assert topo.node("sh").dpid == 2
    assert topo.links[0].latency_ms == pytest.approx(7.84, abs=0.005)
    assert [(h.ip, h.mac) for h in topo.hosts] == [("10.0.0.1", "02:00:0a:00:00:01"),
                                                   ("10.9.0.1", "02:00:0a:09:00:01")]
    assert topo.intents[0].match is not None and topo.intents[0].match.ip_proto == 6


def test_derived_host_name_clashing_with_a_node_points_at_the_node() -> None:
    err = _error("name: t\nnodes:\n  - {name: a}\n  - {name: h-a}\n")
    assert (err.line, err.field) == (3, "nodes[0]")
    assert "also a node name" in err.message


@st.composite
def _documents(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 8))
    names = draw(st.lists(st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True), min_size=n,
                          max_size=n, unique=True))
    coords = st.one_of(st.none(), st.tuples(st.floats(-90, 90), st.floats(-180, 180)))
    dpids = draw(st.lists(st.integers(1, MAX_DPID), min_size=n, max_size=n, unique=True))
    nodes = []
    for i, name in enumerate(names):
        node: dict = {"name": name, "kind": draw(st.sampled_from(
            ["switch", "city", "dc_cluster", "national_hub"]))}
        c = draw(coords)
        if c is not None:
            node["lat"], node["lon"] = c
        if draw(st.booleans()):
            node["dpid"] = dpids[i]
        if draw(st.booleans()):
            node["label"] = draw(st.text(st.characters(exclude_categories=("Cc", "Cs")),
                                                max_size=12))
        nodes.append(node)
    links = []
    if n > 1:
        for _ in range(draw(st.integers(0, 10))):
            a, b = draw(st.lists(st.sampled_from(range(n)), min_size=2, max_size=2, unique=True))
            link: dict = {"a": names[a], "b": names[b],
                          "bandwidth_mbps": draw(st.floats(0.001, 1e7)),
                          "cost": draw(st.floats(0, 1e3))}
            if "lat" not in nodes[a] or "lat" not in nodes[b] or draw(st.booleans()):
                link["latency_ms"] = draw(st.floats(0, 1e3))
            if draw(st.booleans()):
                link["route_factor"] = draw(st.floats(1, 10))
            links.append(link)
    doc: dict = {"name": "gen", "route_factor": draw(st.floats(1, 3)), "nodes": nodes,
                 "links": links}
    if draw(st.booleans()):
        doc["hosts"] = [{"name": f"host{i}", "node": draw(st.sampled_from(names))}
                        for i in range(draw(st.integers(0, 5)))]
    return doc


@settings(max_examples=60, deadline=None)
@given(_documents())
def test_round_trip_property(doc: dict) -> None:
    import yaml

    topo = parse_topology(yaml.safe_dump(doc))
    again = parse_topology(topo.to_yaml())
    assert again == topo
    assert len({n.dpid for n in topo.nodes}) == len(topo.nodes)
    for node, entry in zip(topo.nodes, doc["nodes"], strict=True):
        if "dpid" in entry:
            assert node.dpid == entry["dpid"]
