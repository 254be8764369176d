"""CATS benchmarks on the national model: selection with live metrics, and flapping.

**Selection.** 10,000 placements by policy ``cats`` (least network latency + reported
compute delay, within an end-to-end bound; ties by utilisation, price, id), each from a random
city, of a random kind and demand, within 5 or 20 ms end to end, with every site reporting
live metrics (compute delay 0-8 ms, utilisation; one in 20 unhealthy) and one site's report
replaced every 20 requests. Placements are released as the run goes (at most ``--live`` held).
Two implementations handle the same stream in the same process:

* ours: ``Scheduler.place(..., policy="cats")``: one pathcore ``within_latency``, the
  freshness and health of each site's metrics, the ranking, the least-latency path within
  what the compute delay leaves of the bound, the reservation, the explanation of every
  candidate;
* plain networkx: ``single_source_dijkstra_path_length(cutoff=bound)``, the same rule in
  Python over dicts, ``dijkstra_path`` for the path; no explanation (so the ratio is
  conservative).

Both must choose the same site every time (checked). Prints times, the ratio (networkx /
ours) and the target (<= 0.5 s for 10,000).

**Flapping.** Every host of the model is a client of a ``cats`` service (intelligent, 20 ms).
Every intelligent site's compute delay swings around a common level (4 ms +- 2.5 ms, a
sine of period 40-80 s with its own phase, plus noise of sd 0.5 ms), reported every second
for ``--minutes`` simulated minutes; every second the controller looks
(``AnycastServices.rebalance``). Run once with the default dampening (``compute.move_*``
settings: 2 ms and 20 % of gain held 10 s, at most 10 moves a minute per service) and once
without (every strict gain moves at once). Prints moves per minute and the mean end-to-end
delay clients saw in each run, and their ratios.

    .venv/bin/python benchmarks/bench_cats.py [--requests 10000] [--repeats 3] [--minutes 10]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import networkx as nx  # noqa: E402
from bench_placement import nx_place  # noqa: E402

from controller.compute.anycast import AnycastServices, Service  # noqa: E402
from controller.compute.dampening import NO_DAMPENING, Dampener, Dampening  # noqa: E402
from controller.compute.metrics import SiteMetrics  # noqa: E402
from controller.compute.placement import Scheduler  # noqa: E402
from controller.compute.sites import ComputeRegistry  # noqa: E402
from controller.errors import NoCapacity  # noqa: E402
from controller.topology.files import topology_file  # noqa: E402
from controller.topology.loader import load_topology  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

TARGET_S = 0.5
REPORT_EVERY = 20

Request = tuple[str, str, float, float]
Report = tuple[str, float, float, bool]
"""site id, compute delay ms, utilisation, healthy"""


def workload(topo: Topology, n: int, seed: int) -> tuple[list[Report], list[Request],
                                                         list[Report]]:
    """Initial reports of every site, the requests, and one new report every REPORT_EVERY
    requests."""
    rng = random.Random(seed)
    cities = [c.name for c in topo.nodes_of_kind("city")]
    sites = [s.id for s in topo.compute_sites]

    def report(sid: str) -> Report:
        return (sid, round(rng.uniform(0, 8), 3), round(rng.uniform(0, 1), 2),
                rng.random() > 0.05)

    first = [report(s) for s in sites]
    reqs = [(rng.choice(cities), rng.choice(("general", "intelligent")),
             rng.randint(5, 100) / 100, rng.choice((5.0, 20.0))) for _ in range(n)]
    later = [report(rng.choice(sites)) for _ in range(n // REPORT_EVERY + 1)]
    return first, reqs, later


def metrics(r: Report) -> SiteMetrics:
    return SiteMetrics(utilisation=r[2], compute_delay_ms=r[1], free_capacity=None,
                       healthy=r[3], received_at=0.0)


def run_ours(topo: Topology, first: list[Report], reqs: list[Request], later: list[Report],
             live: int) -> tuple[float, list[str | None]]:
    graph, _ = topo.to_graph()
    sched = Scheduler(ComputeRegistry.from_topology(topo), graph, clock=lambda: 0.0)
    for r in first:
        sched.registry.set_metrics(r[0], metrics(r))
    held: deque[str] = deque()
    chosen: list[str | None] = []
    t0 = time.perf_counter()
    for i, (src, kind, demand, bound) in enumerate(reqs):
        if i % REPORT_EVERY == 0:
            r = later[i // REPORT_EVERY]
            sched.registry.set_metrics(r[0], metrics(r))
        try:
            p = sched.place(src, demand, kind, max_latency_ms=bound, policy="cats", now=0.0)
        except NoCapacity:
            chosen.append(None)
            continue
        chosen.append(p.site_id)
        held.append(p.id)
        if len(held) > live:
            sched.release(held.popleft())
    return time.perf_counter() - t0, chosen


def run_networkx(topo: Topology, first: list[Report], reqs: list[Request],
                 later: list[Report], live: int) -> tuple[float, list[str | None]]:
    g = nx.Graph()
    for lk in topo.links:
        old = g.get_edge_data(lk.a, lk.b)
        if old is None or lk.latency_ms < old["latency"]:
            g.add_edge(lk.a, lk.b, latency=lk.latency_ms)
    sites: list[dict[str, Any]] = [
        {"id": s.id, "node": s.node, "kind": s.kind, "price": s.price,
         "free": round((s.free_capacity if s.free_capacity is not None else s.capacity)
                       * 1_000_000)} for s in topo.compute_sites]
    by_id = {s["id"]: s for s in sites}
    for sid, comp, util, healthy in first:
        by_id[sid].update(comp=comp, util=util, healthy=healthy)
    held: deque[tuple[dict[str, Any], int]] = deque()
    chosen: list[str | None] = []
    t0 = time.perf_counter()
    for i, (src, kind, demand, bound) in enumerate(reqs):
        if i % REPORT_EVERY == 0:
            sid, comp, util, healthy = later[i // REPORT_EVERY]
            by_id[sid].update(comp=comp, util=util, healthy=healthy)
        need = round(demand * 1_000_000)

        def key(s: dict[str, Any], lat: float, kind: str = kind, bound: float = bound
                ) -> tuple[Any, ...] | None:
            if s["kind"] != kind or not s["healthy"] or lat + s["comp"] > bound:
                return None
            return (lat + s["comp"], s["util"], s["price"], s["id"])

        chosen.append(nx_place(g, src, sites, need, bound, key, held, live))
    return time.perf_counter() - t0, chosen


def selection(topo: Topology, args: argparse.Namespace) -> bool:
    first, reqs, later = workload(topo, args.requests, args.seed)
    ours_t, nx_t = [], []
    ours_c: list[str | None] = []
    nx_c: list[str | None] = []
    for _ in range(args.repeats):
        t, ours_c = run_ours(topo, first, reqs, later, args.live)
        ours_t.append(t)
        t, nx_c = run_networkx(topo, first, reqs, later, args.live)
        nx_t.append(t)
    ours, peer = min(ours_t), min(nx_t)
    n = args.requests
    agree = sum(a == b for a, b in zip(ours_c, nx_c, strict=True))
    refused = sum(c is None for c in ours_c)
    print(f"cats selection: {n} requests on {topo.name} ({len(topo.nodes)} nodes, "
          f"{len(topo.compute_sites)} sites with live metrics, one report every "
          f"{REPORT_EVERY} requests), {refused} refused; best of {args.repeats}")
    print("| implementation | total s | per request us |")
    print("|---|---|---|")
    print(f"| ours (Scheduler.place, policy cats) | {ours:.3f} | {ours / n * 1e6:.1f} |")
    print(f"| plain networkx | {peer:.3f} | {peer / n * 1e6:.1f} |")
    print(f"ratio networkx / ours: {peer / ours:.1f}x; target <= {TARGET_S:g} s for 10,000: "
          f"{'met' if ours * 10_000 / n <= TARGET_S else 'MISSED'}")
    print(f"same site chosen by both: {agree} of {n}")
    if agree != n:
        i = next(i for i, (a, b) in enumerate(zip(ours_c, nx_c, strict=True)) if a != b)
        print(f"first mismatch: request {i} {reqs[i]}: ours {ours_c[i]}, networkx {nx_c[i]}")
    return agree == n


def flapping(topo: Topology, config: Dampening, minutes: int, seed: int
             ) -> tuple[int, float]:
    """(moves, mean end-to-end delay ms over clients and looks) under ``config``."""
    rng = random.Random(seed)
    graph, _ = topo.to_graph()
    sched = Scheduler(ComputeRegistry.from_topology(topo), graph, metrics_interval_s=1.0)
    svc = AnycastServices(sched, Dampener(config))
    svc.add_service(Service("infer", "10.255.0.1", "intelligent", 0.001, 20.0, policy="cats"))
    swings = {s.id: (rng.uniform(40, 80), rng.uniform(0, 2 * math.pi))
              for s in topo.compute_sites if s.kind == "intelligent"}

    def report(t: float) -> None:
        for sid, (period, phase) in swings.items():
            delay = 4.0 + 2.5 * math.sin(2 * math.pi * t / period + phase) + rng.gauss(0, 0.5)
            sched.registry.set_metrics(sid, SiteMetrics(
                utilisation=0.5, compute_delay_ms=max(0.0, delay), free_capacity=None,
                healthy=True, received_at=t))

    report(0.0)
    for h in topo.hosts:
        svc.assign("infer", h.name, now=0.0)
    moves, total, looks = 0, 0.0, 0
    for step in range(1, minutes * 60 + 1):
        t = float(step)
        report(t)
        moves += len(svc.rebalance(now=t))
        for a in svc.assignments("infer"):
            m = sched.registry.metrics(a.site_id)
            assert m is not None
            total += a.latency_ms + m.compute_delay_ms
            looks += 1
    return moves, total / looks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live", type=int, default=100,
                        help="placements held at once before the oldest is released")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topology", default=str(topology_file("national")))
    args = parser.parse_args(argv)
    topo = load_topology(args.topology)
    ok = selection(topo, args)
    damped, damped_ms = flapping(topo, Dampening(), args.minutes, args.seed)
    free, free_ms = flapping(topo, NO_DAMPENING, args.minutes, args.seed)
    per_min = 1.0 / args.minutes
    print()
    print(f"flapping: {len(topo.hosts)} clients of a cats service, every intelligent site's "
          f"compute delay swinging 4 +- 2.5 ms (+ noise), one look a second for "
          f"{args.minutes} min")
    print("| run | moves per minute | mean end-to-end delay ms |")
    print("|---|---|---|")
    print(f"| dampened (2 ms and 20 % held 10 s, <= 10 moves/min) | {damped * per_min:.1f} | "
          f"{damped_ms:.3f} |")
    print(f"| undamped (every strict gain at once) | {free * per_min:.1f} | {free_ms:.3f} |")
    ratio = free / damped if damped else math.inf
    print(f"moves undamped / dampened: {ratio:.1f}x; mean delay dampened / undamped: "
          f"{damped_ms / free_ms:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
