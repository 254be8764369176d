"""Pure-core benchmark: ``ControllerCore`` on the national backbone, no switches, no os-ken app.

The same scenario as ``bench_controller.py`` without the network: every switch connected and
reconciled from an empty table, then 1, 100 (x repeats) and 1,000 intents between random
city/cluster hosts, each crossing the link most city/cluster paths use and with a detour within
its bound; then that link is cut (port-status down on both ends) and restored, ``--cuts``
times. Times are the core's compute (``Change.compute_ms``: re-route, plan, diff and building
the OpenFlow messages); the ONOS 1.0 anchors (15.5 ms for 1 intent, 48 ms for 1,000, end to
end on one node) and the 100 ms restoration target are printed as ratios anchor / ours (above
1: faster). Sending and barriers are not included: see ``bench_controller.py``.

    .venv/bin/python benchmarks/bench_core.py [--seed 1] [--repeats 3] [--cuts 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.core import Change, ControllerCore  # noqa: E402
from controller.topology import IntentSpec, Match, Topology, load_topology  # noqa: E402

ONOS_1_INTENT_MS = 15.5
ONOS_1000_INTENTS_MS = 48.0
RESTORE_TARGET_MS = 100.0
TOPOLOGY = REPO / "topologies" / "national.yaml"


class Specs:
    """Random city/cluster intents with a bound the network meets (best latency x 1.3..2.5
    + 1 ms), all crossing ``via_link`` and with a detour within the bound without it (as in
    ``bench_controller.py``)."""

    def __init__(self, topology: Topology, seed: int) -> None:
        self.rng = random.Random(seed)
        self.graph, self.link_ids = topology.to_graph()
        self.cities = [h for h in topology.hosts if h.name.startswith("h-city-")]
        self.clusters = [h for h in topology.hosts if h.name.startswith("h-dc-")]
        self.used: set[tuple[str, str]] = {(i.src, i.dst) for i in topology.intents}
        self.port = 20000
        self.via_link = self.busiest_link()
        lid = self.link_ids[self.via_link]
        rev = self.graph.reverse_link(lid)
        self.cut = [lid] + ([rev] if rev is not None else [])

    def busiest_link(self) -> int:
        use: Counter[int] = Counter()
        index_of = {lid: i for i, lid in self.link_ids.items()}
        for i, lid in self.link_ids.items():
            rev = self.graph.reverse_link(lid)
            if rev is not None:
                index_of[rev] = i
        for a in self.cities:
            for b in self.clusters:
                path = self.graph.shortest_path(a.node, b.node)
                for lid in path.links if path is not None else ():
                    use[index_of[lid]] += 1
        return use.most_common(1)[0][0]

    def _ok(self, a: str, b: str, bound: float) -> bool:
        path = self.graph.constrained_path(a, b, max_latency_ms=bound, weight="cost")
        if path is None or not set(path.links) & set(self.cut):
            return False
        return self.graph.constrained_path(a, b, max_latency_ms=bound,
                                           exclude_links=self.cut) is not None

    def make(self, n: int) -> list[IntentSpec]:
        out: list[IntentSpec] = []
        for _ in range(200 * n + 10_000):
            if len(out) == n:
                break
            a, b = self.rng.choice(self.cities), self.rng.choice(self.clusters)
            if self.rng.random() < 0.5:
                a, b = b, a
            best = self.graph.shortest_path(a.node, b.node)
            assert best is not None
            bound = round(best.latency_ms * self.rng.uniform(1.3, 2.5) + 1.0, 2)
            if not self._ok(a.node, b.node, bound):
                continue
            match, priority = None, 100
            if (a.name, b.name) in self.used:
                self.port += 1
                match, priority = Match(ip_proto=6, dst_port=self.port), 200
            self.used.add((a.name, b.name))
            out.append(IntentSpec(src=a.name, dst=b.name, max_latency_ms=bound,
                                  match=match, priority=priority))
        if len(out) < n:
            raise SystemExit(f"found only {len(out)} of {n} intents crossing the link")
        return out


def bring_up(core: ControllerCore, now: float) -> None:
    """Connect every switch with all its wired ports live and reconcile it from an empty
    table (the first start of a lab); every Change is confirmed at once."""
    for dpid in core.state.dpids():
        ports = dict.fromkeys(core.wiring.ports_of(dpid), True)
        core.confirm(core.switch_connected(dpid, ports, now), now)
        core.confirm(core.reconcile(dpid, [], now), now)


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) * 1000.0


def run(seed: int, repeats: int, cuts: int, profile: cProfile.Profile | None
        ) -> dict[str, Any]:
    topology = load_topology(TOPOLOGY)
    specs = Specs(topology, seed)
    now = 1.0
    core, start_ms = timed(lambda: ControllerCore(topology, now=0.0, startup_grace_s=0.0))
    _, up_ms = timed(lambda: bring_up(core, now))
    res: dict[str, Any] = {"start_ms": start_ms, "bring_up_ms": up_ms, "install": {},
                           "cuts": []}
    for n, reps in ((1, max(3, repeats)), (100, repeats), (1000, 1)):
        runs = []
        for _ in range(reps):
            batch = specs.make(n)
            if profile is not None and n == 1000:
                profile.enable()
            if n == 1:
                (_, change), ms = timed(lambda b=batch: core.add_intent(b[0], now))
            else:
                (_, change), ms = timed(lambda b=batch: core.add_intents(b, now))
            if profile is not None:
                profile.disable()
            core.confirm(change, now)
            runs.append({"ms": ms, "messages": change.message_count()})
        res["install"][n] = runs
    lk = topology.links[specs.via_link]
    pa, pb = core.wiring.link_ports[specs.via_link]
    da, db = core.wiring.node_dpid[lk.a], core.wiring.node_dpid[lk.b]
    crossing = sum(1 for i in core.intents() if i.path and any(
        {u, v} == {lk.a, lk.b} for u, v in zip(i.path, i.path[1:], strict=False)))
    res["link"], res["crossing"] = f"{lk.a}-{lk.b}", crossing
    for _ in range(cuts):
        cut = {}
        for up in (False, True):
            if profile is not None:
                profile.enable()
            changes: list[Change] = []
            _, ms = timed(lambda u=up, out=changes: out.extend(
                (core.port_status(da, pa, u, now), core.port_status(db, pb, u, now))))
            if profile is not None:
                profile.disable()
            for c in changes:
                core.confirm(c, now)
            cut["up" if up else "down"] = {
                "ms": ms, "messages": sum(c.message_count() for c in changes),
                "states": dict(Counter(i.state for i in core.intents()))}
        res["cuts"].append(cut)
    return res


def report(res: dict[str, Any]) -> str:
    lines = ["## ControllerCore on the national backbone (52 switches; compute only, no "
             "switches)", "",
             f"Core start {res['start_ms']:.0f} ms; 52 switches connected and reconciled "
             f"from empty tables {res['bring_up_ms']:.0f} ms.", "",
             "| intents | compute, median (ms) | runs | messages | ONOS 1.0 (ms, end to end) "
             "| ONOS / ours |", "|---:|---:|---:|---:|---:|---:|"]
    for n, runs in res["install"].items():
        med = statistics.median(r["ms"] for r in runs)
        anchor = {1: ONOS_1_INTENT_MS, 1000: ONOS_1000_INTENTS_MS}.get(n)
        ratio = f"{anchor / med:.1f}" if anchor else "-"
        lines.append(f"| {n} | {med:.1f} | {len(runs)} | {runs[-1]['messages']} | "
                     f"{anchor if anchor else '-'} | {ratio} |")
    lines += ["", f"Link {res['link']} cut and restored, {res['crossing']} intents crossing "
              "it (both port-status events; compute only):", "",
              "| cut | down (ms) | messages | up (ms) | messages | target (ms) | "
              "target / down |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for k, c in enumerate(res["cuts"], 1):
        d, u = c["down"], c["up"]
        lines.append(f"| {k} | {d['ms']:.1f} | {d['messages']} | {u['ms']:.1f} | "
                     f"{u['messages']} | {RESTORE_TARGET_MS:.0f} | "
                     f"{RESTORE_TARGET_MS / d['ms']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs of the 1- and 100-intent adds")
    p.add_argument("--cuts", type=int, default=3, help="link cuts to time")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the 1,000-intent add and the cuts; print the top functions")
    args = p.parse_args(argv)
    prof = cProfile.Profile() if args.profile else None
    res = run(args.seed, args.repeats, args.cuts, prof)
    print(report(res))
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    return 0


if __name__ == "__main__":
    sys.exit(main())
