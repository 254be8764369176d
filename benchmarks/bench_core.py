"""Pure-core benchmark: ``ControllerCore`` on the national backbone (or ``--topology``), no
switches, no os-ken app.

The same scenario as ``bench_controller.py`` without the network: every switch connected and
reconciled from an empty table, then 1, 100 (x repeats), 5,000 (``--big``) and 1,000
(``--batches`` runs) intents between random city/cluster hosts, each crossing the link most
city/cluster paths use and with a detour within its bound (each large batch but the last
1,000 removed again before the next); then that link is cut (port-status down on both ends)
and restored, ``--cuts`` times; last, intents are added up to ``--beside`` and 5 more one by
one. Times are the core's compute (``Change.compute_ms``:
re-route, plan, diff and building the OpenFlow messages); the ONOS 1.0 anchors (15.5 ms for 1
intent, 48 ms for 1,000, 364.6 ms for 5,000, end to end on one node) and the 100 ms
restoration target are printed as ratios anchor / ours (above
1: faster). Sending and barriers are not included: see ``bench_controller.py``.

    .venv/bin/python benchmarks/bench_core.py [--seed 1] [--repeats 3] [--cuts 3] [--profile]
    .venv/bin/python benchmarks/bench_core.py --topology zoo:Cogentco --big 0 --batches 1 \
        --crossing 2000
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from intent_specs import (  # noqa: E402
    ANCHORS_MS,
    RESTORE_TARGET_MS,
    TOPOLOGY,
    Specs,
    python_reference_s,
)

from controller.network.core import Change, ControllerCore  # noqa: E402
from controller.topology.files import load_topology_argument  # noqa: E402


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


def run(seed: int, repeats: int, cuts: int, profile: cProfile.Profile | None,
        batches: int = 5, big: int = 5000, topology_arg: str = str(TOPOLOGY),
        crossing_at_least: int = 0, beside: int = 6000, fast_reroute: bool = False
        ) -> dict[str, Any]:
    topology = load_topology_argument(topology_arg)
    # every intent crosses the busiest link and has a detour within its bound without it
    specs = Specs(topology, seed, via_link=Specs(topology, seed).busiest_link())
    now = 1.0
    core, start_ms = timed(lambda: ControllerCore(topology, now=0.0, startup_grace_s=0.0,
                                                   fast_reroute=fast_reroute))
    core.freeze_gc = True  # as the service runs it (ControllerService sets it)
    _, up_ms = timed(lambda: bring_up(core, now))
    res: dict[str, Any] = {"start_ms": start_ms, "bring_up_ms": up_ms, "install": {},
                           "cuts": []}
    plan = [(1, max(3, repeats), True), (100, repeats, True)]
    if big:
        plan.append((big, 1, False))
    plan.append((1000, max(1, batches), False))
    for n, reps, keep in plan:
        runs = []
        for k in range(reps):
            batch = specs.make(n)
            if profile is not None and n == 1000:
                profile.enable()
            if n == 1:
                (intent, change), ms = timed(lambda b=batch: core.add_intent(b[0], now))
                added = [intent]
            else:
                (added, change), ms = timed(lambda b=batch: core.add_intents(b, now))
            if profile is not None:
                profile.disable()
            core.confirm(change, now)
            runs.append({"ms": ms, "messages": change.message_count()})
            if not keep and not (n == 1000 and k == reps - 1):
                # as bench_controller.py: every batch lands on the same network
                core.confirm(core.apply_intents([], [i.id for i in added], now)[2], now)
                specs.release(batch)
        res["install"][n] = runs
    lk = topology.links[specs.via_link]
    pa, pb = core.wiring.link_ports[specs.via_link]
    da, db = core.wiring.node_dpid[lk.a], core.wiring.node_dpid[lk.b]

    def crossing() -> int:
        return sum(1 for i in core.intents() if i.path and any(
            {u, v} == {lk.a, lk.b} for u, v in zip(i.path, i.path[1:], strict=False)))

    if crossing_at_least > crossing():  # more across the link (not timed)
        core.confirm(core.add_intents(specs.make(crossing_at_least - crossing()), now)[1], now)
    res["link"], res["crossing"] = f"{lk.a}-{lk.b}", crossing()
    res["topology"], res["switches"] = topology.name, len(topology.nodes)
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
    if beside > len(core.intents()):  # one intent at a time beside many (not timed: the rest)
        core.confirm(core.add_intents(specs.make(beside - len(core.intents())), now)[1], now)
    singles = []
    for spec in specs.make(5) if beside else ():
        (_, change), ms = timed(lambda sp=spec: core.add_intent(sp, now))
        core.confirm(change, now)
        singles.append(ms)
    res["beside"] = {"intents": len(core.intents()) - len(singles), "ms": singles}
    return res


def report(res: dict[str, Any]) -> str:
    lines = [f"## ControllerCore on {res['topology']} ({res['switches']} switches; compute "
             "only, no switches)", "",
             f"Core start {res['start_ms']:.0f} ms; {res['switches']} switches connected and "
             "reconciled "
             f"from empty tables {res['bring_up_ms']:.0f} ms. Python reference loop "
             f"{res['python_reference_s']:.2f} s (10M additions, best of "
             "3: this hour's speed).", "",
             "| intents | compute, median (ms) | runs | messages | ONOS 1.0 (ms, end to end) "
             "| ONOS / ours |", "|---:|---:|---:|---:|---:|---:|"]
    for n, runs in res["install"].items():
        med = statistics.median(r["ms"] for r in runs)
        anchor = ANCHORS_MS.get(n)
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
    if res["beside"]["ms"]:
        lines += ["", f"One intent added beside {res['beside']['intents']:,}: median "
                      f"{statistics.median(res['beside']['ms']):.2f} ms of compute (5 runs)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default=str(TOPOLOGY),
                   help="topology file or zoo:NAME (default: the national backbone)")
    p.add_argument("--crossing", type=int, default=0,
                   help="add intents across the cut link until this many cross it")
    p.add_argument("--beside", type=int, default=6000,
                   help="at the end, intents added up to this many, then 5 more one by one "
                        "(0: none)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="runs of the 1- and 100-intent adds")
    p.add_argument("--batches", type=int, default=5, help="runs of the 1,000-intent batch")
    p.add_argument("--big", type=int, default=5000,
                   help="intents in the large batch (ONOS's 5,000; 0: none)")
    p.add_argument("--cuts", type=int, default=3, help="link cuts to time")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the 1,000-intent add and the cuts; print the top functions")
    p.add_argument("--fast-reroute", action="store_true",
                   help="the core with a bypass tunnel around every link (network.fast_reroute)")
    args = p.parse_args(argv)
    prof = cProfile.Profile() if args.profile else None
    res = run(args.seed, args.repeats, args.cuts, prof, args.batches, args.big, args.topology,
              args.crossing, args.beside, args.fast_reroute)
    res["python_reference_s"] = python_reference_s()
    print(report(res))
    if prof is not None:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    return 0


if __name__ == "__main__":
    sys.exit(main())
