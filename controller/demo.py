"""``cpn-demo``: load a topology and print the latency-bounded routes pathcore chooses.

This is the offline half of the main demo: no switches, just the engine on the file's data.
For each intent in the file it prints the least-cost path that meets the latency bound next to
the least-latency path, then the 1/5/20 ms latency circles around each national hub.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from controller.errors import CpnError
from controller.topology import Topology, load_topology

DEFAULT_TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "national.yaml"
CIRCLE_TIERS_MS = (1.0, 5.0, 20.0)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def route_rows(topo: Topology) -> list[list[str]]:
    """One row per intent: bound, chosen path (least cost within the bound), least latency."""
    graph, _ = topo.to_graph()
    rows = []
    for i, intent in enumerate(topo.intents):
        src, dst = topo.host(intent.src).node, topo.host(intent.dst).node
        best = graph.shortest_path(src, dst, weight="latency")
        path = graph.constrained_path(src, dst, max_latency_ms=intent.max_latency_ms,
                                      min_bandwidth_mbps=intent.min_bandwidth_mbps)
        chosen = ("INFEASIBLE: best latency "
                  f"{best.latency_ms:.2f} ms" if best else "INFEASIBLE: disconnected")
        if path is not None:
            chosen = f"{' > '.join(path.nodes)}  ({path.latency_ms:.2f} ms, cost {path.cost:g})"
        rows.append([intent.name or f"#{i}", f"{intent.src} > {intent.dst}",
                     f"{intent.max_latency_ms:g} ms", chosen,
                     f"{best.latency_ms:.2f} ms" if best else "-"])
    return rows


def circle_rows(topo: Topology) -> list[list[str]]:
    """Per national hub: how many nodes (and which cities) lie within each latency tier."""
    graph, _ = topo.to_graph()
    rows = []
    for hub in topo.nodes_of_kind("national_hub"):
        reach = graph.within_latency(hub.name, max(CIRCLE_TIERS_MS))
        cells = []
        for tier in CIRCLE_TIERS_MS:
            cities = sorted(n for n, ms in reach.items()
                            if ms <= tier and topo.node(n).kind == "city")
            cells.append(f"{len(cities)} cities")
        rows.append([hub.label or hub.name, *cells])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpn-demo", description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY),
                        help="topology YAML (default: the national backbone)")
    args = parser.parse_args(argv)
    try:
        topo = load_topology(args.topology)
    except CpnError as exc:
        print(f"cpn-demo: {exc}", file=sys.stderr)
        return 2
    print(f"{topo.name}: {len(topo.nodes)} switches, {len(topo.links)} links, "
          f"{len(topo.hosts)} hosts, {topo.total_bandwidth_mbps / 1e6:.1f} Tbps of links\n")
    if topo.intents:
        print("Latency-bounded routes (least cost within the bound):")
        print(_table(["intent", "hosts", "bound", "chosen path", "least latency"],
                     route_rows(topo)))
        print()
    rows = circle_rows(topo)
    if rows:
        print("Latency circles around the national hubs:")
        print(_table(["hub", *(f"<= {t:g} ms" for t in CIRCLE_TIERS_MS)], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
