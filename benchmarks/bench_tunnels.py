"""The tunnel table in pathcore against its pure-Python model, inside the core: two
``ControllerCore``\\ s on one map (no switches), one with pathcore's ``TunnelTable`` (as the
controller runs) and one with the plain-Python model the tests hold it to
(``tests/unit/tunnels_reference.py``), given the same work in alternation so the machine's
noise falls on both: 1,000-intent batches (each removed again before the next, as in
``bench_core.py``) and a cut and repair of the link most intents cross, with ``--crossing``
intents across it. Prints, for each, the core's compute (median) and the time inside the
table (``Tunnels.update``, ``ingress`` and ``drop_idle``, writes into the plan included), and
the ratios model / native (above 1: the native table is faster).

    .venv/bin/python benchmarks/bench_tunnels.py [--rounds 15] [--crossing 1001] \
        [--topology zoo:Cogentco] [--no-fast-reroute]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "unit"))

from bench_core import bring_up  # noqa: E402
from intent_specs import TOPOLOGY, Specs, python_reference_s  # noqa: E402
from tunnels_reference import ReferenceTunnels  # noqa: E402

from controller.network import router as router_module  # noqa: E402
from controller.network.core import ControllerCore  # noqa: E402
from controller.network.tunnels import Tunnels  # noqa: E402
from controller.topology.files import load_topology_argument  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

KINDS = {"native": Tunnels, "model": ReferenceTunnels}

_inside: dict[str, float] = defaultdict(float)
"""kind -> seconds spent in the table's methods since the last reset"""


def _timed(kind: str, fn: Any) -> Any:
    def wrapper(*args: Any, **kw: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            _inside[kind] += time.perf_counter() - t0
    return wrapper


for _kind, _cls in KINDS.items():
    for _name in ("update", "ingress", "drop_idle"):
        setattr(_cls, _name, _timed(_kind, getattr(_cls, _name)))


def make_core(kind: str, topology: Topology, fast_reroute: bool) -> ControllerCore:
    """A core whose router builds its tunnel table with ``kind``'s class, every switch up."""
    saved = router_module.Tunnels
    router_module.Tunnels = KINDS[kind]  # type: ignore[misc]
    try:
        core = ControllerCore(topology, now=0.0, startup_grace_s=0.0,
                              fast_reroute=fast_reroute)
    finally:
        router_module.Tunnels = saved  # type: ignore[misc]
    core.freeze_gc = True
    bring_up(core, 1.0)
    return core


def run(topology_arg: str, rounds: int, crossing: int, fast_reroute: bool, seed: int
        ) -> dict[str, Any]:
    topology = load_topology_argument(topology_arg)
    via = Specs(topology, seed).busiest_link()
    cores = {k: make_core(k, topology, fast_reroute) for k in KINDS}
    specs = {k: Specs(topology, seed, via_link=via) for k in KINDS}
    batch: dict[str, list[tuple[float, float]]] = {k: [] for k in KINDS}
    for r in range(rounds + 1):
        for kind, core in cores.items():
            _inside[kind] = 0.0
            made = specs[kind].make(1000)
            added, change = core.add_intents(made, 1.0)
            if r:  # the first round warms both up
                batch[kind].append((change.compute_ms, _inside[kind] * 1000.0))
            core.confirm(change, 1.0)
            core.confirm(core.apply_intents([], [i.id for i in added], 1.0)[2], 1.0)
            specs[kind].release(made)
    lk = topology.links[via]
    for kind, core in cores.items():  # the intents across the link (not timed)
        core.confirm(core.add_intents(specs[kind].make(crossing), 1.0)[1], 1.0)
    cuts: dict[str, dict[bool, list[tuple[float, float]]]] = {
        k: {False: [], True: []} for k in KINDS}
    for r in range(rounds + 1):
        for kind, core in cores.items():
            pa, pb = core.wiring.link_ports[via]
            da, db = core.wiring.node_dpid[lk.a], core.wiring.node_dpid[lk.b]
            for up in (False, True):
                _inside[kind] = 0.0
                t0 = time.perf_counter()
                changes = [core.port_status(da, pa, up, 1.0), core.port_status(db, pb, up, 1.0)]
                ms = (time.perf_counter() - t0) * 1000.0
                if r:
                    cuts[kind][up].append((ms, _inside[kind] * 1000.0))
                for c in changes:
                    core.confirm(c, 1.0)
    return {"topology": topology.name, "switches": len(topology.nodes), "rounds": rounds,
            "link": f"{lk.a}-{lk.b}", "crossing": crossing, "fast_reroute": fast_reroute,
            "batch": batch, "cuts": cuts}


def report(res: dict[str, Any]) -> str:
    def med(rows: list[tuple[float, float]], i: int) -> float:
        return statistics.median(r[i] for r in rows)

    lines = [f"## Tunnel table: pathcore against its Python model, on {res['topology']} "
             f"({res['switches']} switches, fast reroute "
             f"{'on' if res['fast_reroute'] else 'off'})", "",
             f"Python reference loop {res['python_reference_s']:.2f} s (10M additions, best "
             f"of 3: this hour's speed); medians of {res['rounds']} rounds, the two tables "
             "in alternation.", "",
             "| work | compute, native (ms) | compute, model (ms) | model / native | in the "
             "table, native (ms) | in the table, model (ms) | model / native |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    rows = [("1,000-intent batch", res["batch"]["native"], res["batch"]["model"])]
    for up, name in ((False, "cut"), (True, "repair")):
        rows.append((f"{name} of {res['link']}, {res['crossing']:,} crossing",
                     res["cuts"]["native"][up], res["cuts"]["model"][up]))
    for name, native, model in rows:
        lines.append(f"| {name} | {med(native, 0):.1f} | {med(model, 0):.1f} | "
                     f"{med(model, 0) / med(native, 0):.2f} | {med(native, 1):.1f} | "
                     f"{med(model, 1):.1f} | {med(model, 1) / med(native, 1):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topology", default=str(TOPOLOGY),
                   help="topology file or zoo:NAME (default: the national backbone)")
    p.add_argument("--rounds", type=int, default=15, help="rounds of each work, per table")
    p.add_argument("--crossing", type=int, default=1001,
                   help="intents across the cut link during the cuts")
    p.add_argument("--no-fast-reroute", action="store_true",
                   help="the cores without bypass tunnels (network.fast_reroute off)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    res = run(args.topology, max(1, args.rounds), args.crossing, not args.no_fast_reroute,
              args.seed)
    res["python_reference_s"] = python_reference_s()
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
