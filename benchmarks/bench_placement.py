"""Placement benchmark: 10,000 placement requests against the national model.

Each request has a random demand city, kind (general or intelligent), demand (0.05-1.00
EFLOPS), latency tier (local 1 ms, regional 5 ms, national 20 ms) and policy (nearest,
cheapest, least-loaded). Placements are released as the run goes (at most ``--live`` held at
once, oldest released first) so capacity does not run out; some requests are refused all the
same (no site of the kind within 1 ms of most cities), and a refusal is part of the work.

Two implementations handle the same request stream in the same process:

* ``placement.Scheduler.place`` / ``release``: one pathcore ``within_latency`` call,
  the policy, then ``constrained_path(..., weight="cost")`` for the path the controller would
  install; reserves capacity in the registry; a refusal builds the per-site reasons;
* plain networkx: ``single_source_dijkstra_path_length(cutoff=bound)``, the same selection in
  Python over a dict of free capacities, and ``dijkstra_path`` (least latency) for the path.
  It does less than ours (no least-cost-within-bound path, no reasons), so the ratio is
  conservative.

Both must choose the same site for every request (checked; a mismatch is printed). Prints the
times, the per-request time, the ratio (networkx / ours; above 1 means ours is faster) and the
target (<= 1 s for 10,000). Nothing is asserted on time.

    .venv/bin/python benchmarks/bench_placement.py [--requests 10000] [--repeats 3] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import networkx as nx  # noqa: E402

from controller.compute.placement import STATIC_POLICIES, TIERS_MS, Scheduler  # noqa: E402
from controller.compute.sites import ComputeRegistry  # noqa: E402
from controller.errors import NoCapacity  # noqa: E402
from controller.topology.files import topology_file  # noqa: E402
from controller.topology.loader import load_topology  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

TARGET_S = 1.0

Request = tuple[str, str, float, str, str]


def requests(topo: Topology, n: int, seed: int) -> list[Request]:
    rng = random.Random(seed)
    cities = [c.name for c in topo.nodes_of_kind("city")]
    return [(rng.choice(cities), rng.choice(("general", "intelligent")),
             rng.randint(5, 100) / 100, rng.choice(list(TIERS_MS)), rng.choice(STATIC_POLICIES))
            for _ in range(n)]


def run_ours(topo: Topology, reqs: list[Request], live: int) -> tuple[float, list[str | None]]:
    graph, _ = topo.to_graph()
    sched = Scheduler(ComputeRegistry.from_topology(topo), graph)
    held: deque[str] = deque()
    chosen: list[str | None] = []
    t0 = time.perf_counter()
    for src, kind, demand, tier, policy in reqs:
        try:
            p = sched.place(src, demand, kind, tier=tier, policy=policy)
        except NoCapacity:
            chosen.append(None)
            continue
        chosen.append(p.site_id)
        held.append(p.id)
        if len(held) > live:
            sched.release(held.popleft())
    elapsed = time.perf_counter() - t0
    return elapsed, chosen


def nx_place(g: nx.Graph, src: str, sites: list[dict[str, Any]], need: int, bound_ms: float,
             key: Callable[[dict[str, Any], float], tuple[Any, ...] | None],
             held: deque[tuple[dict[str, Any], int]], live: int) -> str | None:
    """The networkx peer's one placement: latencies from ``src`` within ``bound_ms``
    (Dijkstra), the site with the least ``key(site, latency)`` among those with ``need``
    free (``key`` None: not a candidate), its path, and its reservation held (the oldest
    released beyond ``live``). The chosen site's id, or None."""
    dist = nx.single_source_dijkstra_path_length(g, src, cutoff=bound_ms, weight="latency")
    best: tuple[Any, ...] | None = None
    best_site = None
    for s in sites:
        lat = dist.get(s["node"])
        if lat is None or s["free"] < need:
            continue
        k = key(s, lat)
        if k is not None and (best is None or k < best):
            best, best_site = k, s
    if best_site is None:
        return None
    nx.dijkstra_path(g, src, best_site["node"], weight="latency")
    best_site["free"] -= need
    held.append((best_site, need))
    if len(held) > live:
        site, amount = held.popleft()
        site["free"] += amount
    return str(best_site["id"])


def run_networkx(topo: Topology, reqs: list[Request], live: int) -> tuple[float,
                                                                            list[str | None]]:
    g = nx.Graph()
    for lk in topo.links:
        old = g.get_edge_data(lk.a, lk.b)
        if old is None or lk.latency_ms < old["latency"]:
            g.add_edge(lk.a, lk.b, latency=lk.latency_ms, cost=lk.cost)
    # Integer micro-units here too, so both sides agree exactly on "free >= demand".
    sites: list[dict[str, Any]] = [
        {"id": s.id, "node": s.node, "kind": s.kind, "price": s.price,
         "capacity": round(s.capacity * 1_000_000), "free": round(s.capacity * 1_000_000)}
        for s in topo.compute_sites]
    held: deque[tuple[dict[str, Any], int]] = deque()
    chosen: list[str | None] = []
    t0 = time.perf_counter()
    for src, kind, demand, tier, policy in reqs:
        need = round(demand * 1_000_000)

        def key(s: dict[str, Any], lat: float, kind: str = kind, policy: str = policy,
                demand: float = demand, need: int = need) -> tuple[Any, ...] | None:
            if s["kind"] != kind:
                return None
            if policy == "nearest":
                return (lat, s["price"], s["id"])
            if policy == "cheapest":
                return (s["price"] * demand, lat, s["id"])
            return (-(s["free"] - need) / s["capacity"], lat, s["id"])

        chosen.append(nx_place(g, src, sites, need, TIERS_MS[tier], key, held, live))
    elapsed = time.perf_counter() - t0
    return elapsed, chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--live", type=int, default=100,
                        help="placements held at once before the oldest is released")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--topology", default=str(topology_file("national")))
    args = parser.parse_args(argv)
    topo = load_topology(args.topology)
    reqs = requests(topo, args.requests, args.seed)
    ours_t, nx_t = [], []
    ours_c: list[str | None] = []
    nx_c: list[str | None] = []
    for _ in range(args.repeats):
        t, ours_c = run_ours(topo, reqs, args.live)
        ours_t.append(t)
        t, nx_c = run_networkx(topo, reqs, args.live)
        nx_t.append(t)
    ours, peer = min(ours_t), min(nx_t)
    agree = sum(a == b for a, b in zip(ours_c, nx_c, strict=True))
    refused = sum(c is None for c in ours_c)
    n = args.requests
    print(f"placement benchmark: {n} requests on {topo.name} ({len(topo.nodes)} nodes, "
          f"{len(topo.compute_sites)} sites), {refused} refused, at most {args.live} held; "
          f"best of {args.repeats}")
    print("| implementation | total s | per request us |")
    print("|---|---|---|")
    print(f"| ours (pathcore + registry) | {ours:.3f} | {ours / n * 1e6:.1f} |")
    print(f"| plain networkx | {peer:.3f} | {peer / n * 1e6:.1f} |")
    print(f"ratio networkx / ours: {peer / ours:.1f}x; target <= {TARGET_S:g} s for 10,000: "
          f"{'met' if ours * 10_000 / n <= TARGET_S else 'MISSED'}")
    print(f"same site chosen by both: {agree} of {n}")
    if agree != n:
        first = next(i for i, (a, b) in enumerate(zip(ours_c, nx_c, strict=True)) if a != b)
        print(f"first mismatch: request {first} {reqs[first]}: ours {ours_c[first]}, "
              f"networkx {nx_c[first]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
