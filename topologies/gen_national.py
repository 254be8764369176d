#!/usr/bin/env python3
"""Generate ``topologies/national.yaml``: China's national computing backbone.

Run by a developer, never at run time (the controller reads the generated YAML, not the CSV):

    .venv/bin/python topologies/gen_national.py [SITES_CSV] [-o topologies/national.yaml]
    .venv/bin/python topologies/gen_national.py --circles [--doc docs/topology.md]

The first form reads the site list (default ``topologies/data/east-data-west/sites.csv``, as
``controller.topology.files.sites_csv`` finds it) and writes the YAML file. The output depends
only on the CSV, so running it twice gives the same bytes. ``--circles`` loads the committed
national.yaml and prints the latency-circle table (demand cities within 1, 5 and 20 ms of each
national hub); with ``--doc`` it also rewrites the table between the ``<!-- circles:begin -->``
and ``<!-- circles:end -->`` markers of that file.

How links are chosen (docs/topology.md explains why):
- trunks: each direct connection point (DCP) to its 3 nearest DCPs within 1000 km (at least its
  2 nearest, whatever the distance), plus the express Beijing-Shanghai-Guangzhou triangle;
- each data-center cluster to its 2 nearest DCPs;
- each national hub to every cluster of the hub and to its nearest DCP;
- each exchange center to its 2 nearest DCPs;
- each demand city to its 2 nearest DCPs;
- metro links between any two nodes closer than 60 km not already linked (same city).
"""

from __future__ import annotations

import argparse
import csv
import heapq
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

from controller.topology.files import sites_csv, topology_file  # noqa: E402
from controller.topology.geo import great_circle_km  # noqa: E402
from controller.topology.loader import load_topology, topology_from_dict  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

DEFAULT_CSV = sites_csv()
DEFAULT_OUT = topology_file("national")

ROUTE_FACTOR = 1.5
CO_LOCATED_KM = 15.0
"""Ends closer than this get an explicit latency of METRO_LATENCY_MS (metro fibre)."""
METRO_LATENCY_MS = 0.1
METRO_KM = 60.0

# Capacities (Mbps). 1 Tbps = 1_000_000 Mbps.
EXPRESS_TRUNK_MBPS = 4_000_000.0  # 10 x 400G waves
TRUNK_MBPS = 1_200_000.0  # 3 x 400G waves
CLUSTER_UPLINK_MBPS = 800_000.0
HUB_MBPS = 400_000.0
EXCHANGE_MBPS = 400_000.0
CITY_MBPS = 200_000.0
METRO_MBPS = 400_000.0

# Cost = tariff x distance_km / 100 (at least 15 km). Regional trunks are the cheapest per km
# (shared, fully used fibre); the express triangle carries a premium for its directness; access
# links and leased city spurs cost more per km. So least-cost and least-latency routes differ:
# a cheap route rides regional trunks, a fast one pays for the express trunk.
TARIFF = {"express": 2.5, "trunk": 1.0, "access": 1.5, "city": 2.0, "metro": 1.0}

EXPRESS = [("dcp-beijing", "dcp-shanghai"), ("dcp-beijing", "dcp-guangzhou"),
           ("dcp-shanghai", "dcp-guangzhou")]

# Compute: the end-2023 totals (230 EFLOPS, 70 of them intelligent) spread over the 10 clusters.
# The per-cluster split is illustrative (no per-cluster figures were published): weights below.
TOTAL_EFLOPS = 230.0
INTELLIGENT_EFLOPS = 70.0
CLUSTER_WEIGHT = {
    "dc-zhangjiakou": 14, "dc-yrd-demo": 12, "dc-wuhu": 8, "dc-shaoguan": 8, "dc-tianfu": 10,
    "dc-chongqing": 8, "dc-horinger": 12, "dc-guian": 12, "dc-qingyang": 8, "dc-zhongwei": 8,
}
CLUSTER_PLACE = {
    "dc-zhangjiakou": "hebei-zhangjiakou", "dc-yrd-demo": "yrd-demo-zone", "dc-wuhu": "anhui-wuhu",
    "dc-shaoguan": "guangdong-shaoguan", "dc-tianfu": "sichuan-tianfu",
    "dc-chongqing": "chongqing", "dc-horinger": "inner-mongolia-horinger",
    "dc-guian": "guizhou-guian", "dc-qingyang": "gansu-qingyang", "dc-zhongwei": "ningxia-zhongwei",
}
WEST_HUBS = {"nm", "gz", "gs", "nx"}
# Price per EFLOPS-hour, relative units: western hubs have cheaper power; AI computing costs more.
PRICE = {("east", "general"): 1.0, ("west", "general"): 0.6,
         ("east", "intelligent"): 2.0, ("west", "intelligent"): 1.3}

# Example intents: (name, src city, dst cluster, max_latency_ms, min_bandwidth_mbps, match, prot)
INTENTS = [
    ("shenzhen-shaoguan", "city-shenzhen", "dc-shaoguan", 5.0, 0.0, None, False),
    ("tianjin-zhangjiakou", "city-tianjin", "dc-zhangjiakou", 5.0, 0.0, None, False),
    ("hefei-wuhu", "city-hefei", "dc-wuhu", 5.0, 0.0, None, False),
    ("kunming-guian", "city-kunming", "dc-guian", 5.0, 0.0, None, False),
    ("harbin-horinger", "city-harbin", "dc-horinger", 20.0, 0.0, None, True),
    ("qingdao-qingyang-https", "city-qingdao", "dc-qingyang", 20.0, 10_000.0,
     {"ip_proto": 6, "dst_port": 443}, False),
    ("lhasa-tianfu", "city-lhasa", "dc-tianfu", 20.0, 0.0, None, False),
]


@dataclass(frozen=True)
class Site:
    id: str
    name: str
    kind: str
    hub: str
    lat: float
    lon: float


def read_sites(path: Path) -> list[Site]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [Site(r["id"], r["name"], r["kind"], r["hub"], float(r["lat"]), float(r["lon"]))
                for r in csv.DictReader(fh)]


def build_document(sites: Sequence[Site]) -> dict:
    """The national backbone as a topology document (plain dict)."""
    by_id = {s.id: s for s in sites}
    of_kind = {k: [s for s in sites if s.kind == k] for k in
               ("national_hub", "dc_cluster", "direct_connection_point", "exchange_center",
                "city")}
    dcps = of_kind["direct_connection_point"]

    def km(a: str, b: str) -> float:
        sa, sb = by_id[a], by_id[b]
        return great_circle_km(sa.lat, sa.lon, sb.lat, sb.lon)

    def nearest_dcps(node: str, n: int) -> list[str]:
        ranked = sorted((km(node, d.id), d.id) for d in dcps if d.id != node)
        return [d for _, d in ranked[:n]]

    links: dict[frozenset[str], tuple[str, str, str]] = {}

    def add(a: str, b: str, klass: str) -> None:
        key = frozenset((a, b))
        if key not in links:
            links[key] = (a, b, klass)

    for a, b in EXPRESS:
        add(a, b, "express")
    for dcp in dcps:
        ranked = sorted((km(dcp.id, o.id), o.id) for o in dcps if o.id != dcp.id)
        for i, (dist, other) in enumerate(ranked[:3]):
            if i < 2 or dist <= 1000.0:
                add(dcp.id, other, "trunk")
    for c in of_kind["dc_cluster"]:
        for d in nearest_dcps(c.id, 2):
            add(c.id, d, "access")
    for h in of_kind["national_hub"]:
        for c in of_kind["dc_cluster"]:
            if c.hub == h.hub:
                add(h.id, c.id, "access")
        add(h.id, nearest_dcps(h.id, 1)[0], "access")
    for x in of_kind["exchange_center"]:
        for d in nearest_dcps(x.id, 2):
            add(x.id, d, "access")
    for c in of_kind["city"]:
        for d in nearest_dcps(c.id, 2):
            add(c.id, d, "city")
    for i, site in enumerate(sites):
        for other_site in sites[i + 1:]:
            if km(site.id, other_site.id) < METRO_KM:
                add(site.id, other_site.id, "metro")

    bandwidth = {"express": EXPRESS_TRUNK_MBPS, "trunk": TRUNK_MBPS, "city": CITY_MBPS,
                 "metro": METRO_MBPS}
    link_docs = []
    for a, b, klass in links.values():
        kinds = {by_id[a].kind, by_id[b].kind}
        if klass == "access":
            if "dc_cluster" in kinds and "direct_connection_point" in kinds:
                bw = CLUSTER_UPLINK_MBPS
            elif "exchange_center" in kinds:
                bw = EXCHANGE_MBPS
            else:
                bw = HUB_MBPS
        else:
            bw = bandwidth[klass]
        dist = km(a, b)
        doc: dict = {"a": a, "b": b}
        if dist < CO_LOCATED_KM:
            doc["latency_ms"] = METRO_LATENCY_MS
        doc["bandwidth_mbps"] = bw
        doc["cost"] = round(TARIFF[klass] * max(dist, CO_LOCATED_KM) / 100.0, 2)
        link_docs.append(doc)

    nodes = [{"name": s.id, "kind": s.kind, "label": s.name, "lat": s.lat, "lon": s.lon}
             for s in sites]

    total_w = sum(CLUSTER_WEIGHT.values())
    general_eflops = TOTAL_EFLOPS - INTELLIGENT_EFLOPS
    compute_sites = []
    for c in of_kind["dc_cluster"]:
        side = "west" if c.hub in WEST_HUBS else "east"
        w = CLUSTER_WEIGHT[c.id] / total_w
        place = CLUSTER_PLACE[c.id]
        for kind, total, tag in (("general", general_eflops, "gen-01"),
                                 ("intelligent", INTELLIGENT_EFLOPS, "ai-01")):
            compute_sites.append({"id": f"cs:{place}:{tag}", "node": c.id, "kind": kind,
                                  "capacity": round(total * w, 3), "unit": "EFLOPS",
                                  "price": PRICE[(side, kind)], "host": f"h-{c.id}"})

    intents = []
    for name, src, dst, bound, bw, match, prot in INTENTS:
        it: dict = {"name": name, "src": f"h-{src}", "dst": f"h-{dst}", "max_latency_ms": bound}
        if bw:
            it["min_bandwidth_mbps"] = bw
        if match:
            it["match"] = match
        if prot:
            it["protection"] = True
        intents.append(it)

    return {
        "name": "national",
        "description": ("China's national computing backbone (East Data, West Computing): 8 "
                        "national hubs, 10 data-center clusters, 13 backbone direct connection "
                        "points, 3 new-type internet exchange centers, 18 demand cities. "
                        "Generated by topologies/gen_national.py; see docs/topology.md."),
        "route_factor": ROUTE_FACTOR,
        "nodes": nodes,
        "links": link_docs,
        "compute_sites": compute_sites,
        "intents": intents,
    }


def least_latency_ms(topo: Topology, src: str) -> dict[str, float]:
    """Plain Dijkstra on link latency from node ``src`` (the pathcore-free reference)."""
    adj: dict[str, list[tuple[str, float]]] = {n.name: [] for n in topo.nodes}
    for lk in topo.links:
        adj[lk.a].append((lk.b, lk.latency_ms))
        adj[lk.b].append((lk.a, lk.latency_ms))
    dist = {src: 0.0}
    heap = [(0.0, src)]
    while heap:
        d, u = heapq.heappop(heap)
        if d > dist.get(u, math.inf):
            continue
        for v, w in adj[u]:
            if d + w < dist.get(v, math.inf):
                dist[v] = d + w
                heapq.heappush(heap, (d + w, v))
    return dist


def check(topo: Topology) -> None:
    """Refuse to write a file whose example intents are infeasible."""
    for it in topo.intents:
        src, dst = topo.host(it.src).node, topo.host(it.dst).node
        best = least_latency_ms(topo, src).get(dst, math.inf)
        if best > it.max_latency_ms:
            raise SystemExit(f"intent {it.name}: best latency {best:.2f} ms > bound "
                             f"{it.max_latency_ms} ms")


def summary(topo: Topology) -> str:
    counts = {k: len(topo.nodes_of_kind(k)) for k in
              ("national_hub", "dc_cluster", "direct_connection_point", "exchange_center", "city")}
    trunk = sum(lk.bandwidth_mbps for lk in topo.links
                if topo.node(lk.a).kind == topo.node(lk.b).kind == "direct_connection_point")
    compute = sum(s.capacity for s in topo.compute_sites)
    return (f"{len(topo.nodes)} nodes {counts}, {len(topo.links)} links, {len(topo.hosts)} hosts; "
            f"trunk capacity {trunk / 1e6:g} Tbps, all links {topo.total_bandwidth_mbps / 1e6:g} "
            f"Tbps; compute {compute:g} EFLOPS in {len(topo.compute_sites)} sites")


HEADER = """\
China's national computing backbone. GENERATED by topologies/gen_national.py from
topologies/data/east-data-west/sites.csv -- edit the generator, not this file.
Link latency is computed from coordinates (great-circle km x route_factor x 0.0049 ms/km)
unless latency_ms is given (co-located ends: 0.1 ms metro). bandwidth_mbps: 4 Tbps express
trunks, 1.2 Tbps regional trunks, 0.8 Tbps cluster uplinks, 0.4 Tbps hub/exchange/metro links,
0.2 Tbps city spurs. cost = tariff x km / 100. Compute capacity in EFLOPS."""


# ---------------------------------------------------------------------------------------------
# Latency circles
# ---------------------------------------------------------------------------------------------

TIERS_MS = (1.0, 5.0, 20.0)


def circles(topo: Topology) -> tuple[dict[str, dict[str, float]], str]:
    """Latency from each national hub to every demand city, and which engine computed it."""
    cities = {n.name for n in topo.nodes_of_kind("city")}
    out: dict[str, dict[str, float]] = {}
    try:
        graph, _ = topo.to_graph()
        within = graph.within_latency
        engine = "pathcore.Graph.within_latency"
    except (ImportError, AttributeError):
        within, engine = None, "plain Dijkstra (gen_national.least_latency_ms)"
    for hub in topo.nodes_of_kind("national_hub"):
        if within is not None:
            reach = dict(within(hub.name, max(TIERS_MS)))
        else:
            reach = {k: v for k, v in least_latency_ms(topo, hub.name).items()
                     if v <= max(TIERS_MS)}
        out[hub.name] = {c: reach[c] for c in cities if c in reach}
    return out, engine


def circles_markdown(topo: Topology) -> str:
    table, engine = circles(topo)
    cities = sorted(n.name for n in topo.nodes_of_kind("city"))

    def short(name: str) -> str:
        return name.removeprefix("city-")

    lines = [
        "| hub | within 1 ms | 1-5 ms | 5-20 ms | beyond 20 ms | count <=1/<=5/<=20 ms |",
        "|---|---|---|---|---|---|",
    ]
    for hub in topo.nodes_of_kind("national_hub"):
        reach = table[hub.name]
        bands: list[list[str]] = [[], [], [], []]
        for c in cities:
            lat = reach.get(c)
            idx = 3 if lat is None else next(i for i, t in enumerate(TIERS_MS) if lat <= t)
            bands[idx].append(short(c) if lat is None else f"{short(c)} ({lat:.1f})")
        counts = [sum(1 for v in reach.values() if v <= t) for t in TIERS_MS]
        cells = [", ".join(b) or "-" for b in bands]
        lines.append(f"| {hub.name} ({hub.label}) | " + " | ".join(cells)
                     + f" | {counts[0]}/{counts[1]}/{counts[2]} |")
    lines.append("")
    lines.append(f"Least latency in ms over the backbone from the hub's node to the city's node "
                 f"({len(cities)} demand cities), computed with {engine} on "
                 f"topologies/national.yaml by `topologies/gen_national.py --circles`.")
    return "\n".join(lines) + "\n"


def write_doc(doc_path: Path, table: str) -> None:
    text = doc_path.read_text(encoding="utf-8")
    pattern = re.compile(r"(<!-- circles:begin -->\n).*?(<!-- circles:end -->)", re.S)
    if not pattern.search(text):
        raise SystemExit(f"{doc_path}: no <!-- circles:begin --> ... <!-- circles:end --> markers")
    doc_path.write_text(pattern.sub(lambda m: m.group(1) + table + m.group(2), text),
                        encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sites_csv", nargs="?", type=Path, default=DEFAULT_CSV)
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--circles", action="store_true",
                        help="print the latency-circle table of the committed national.yaml")
    parser.add_argument("--doc", type=Path, help="with --circles: rewrite the table in this file")
    args = parser.parse_args(argv)

    if args.circles:
        topo = load_topology(args.output)
        table = circles_markdown(topo)
        print(table, end="")
        if args.doc:
            write_doc(args.doc, table)
        return 0

    topo = topology_from_dict(build_document(read_sites(args.sites_csv)),
                              source=str(args.sites_csv))
    check(topo)
    args.output.write_text(topo.to_yaml(header=HEADER), encoding="utf-8")
    again = load_topology(args.output)
    if again != topo:
        raise SystemExit("written file does not load back to the same topology")
    print(f"wrote {args.output}: {summary(topo)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
