"""The chaos soak (docs/soak.md): seeded random faults on a real lab with the real controller,
invariants checked after each quiet period. Needs root and Open vSwitch.

    flock /tmp/cpn-lab.lock .venv/bin/python benchmarks/soak.py \\
        --topology topologies/national.yaml --minutes 10 --seed 7 [--report out.md]

Exit code 0 when no invariant broke, 1 at the first violation (printed with the seed and the
event log), 2 on bad usage. The last line of the output is always
``soak: N events, C checks, V violations, L pings lost``.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from pathlib import Path

from controller.errors import CpnError
from controller.lab.soak import DEFAULT_WEIGHTS, EVENT_KINDS, SoakConfig, run_soak
from controller.topology.files import load_topology_argument, topology_file


def _weights(text: str | None) -> dict[str, float] | None:
    """``kind=w,kind=w`` over the defaults."""
    if not text:
        return None
    out = dict(DEFAULT_WEIGHTS)
    for part in text.split(","):
        kind, _, w = part.partition("=")
        if kind not in EVENT_KINDS:
            raise argparse.ArgumentTypeError(f"unknown event kind {kind!r}; known: "
                                             f"{', '.join(EVENT_KINDS)}")
        out[kind] = float(w)
    return out


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the soak, return its exit code."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topology", default=str(topology_file("national")),
                   help="a topology file or zoo:NAME (default: the national backbone)")
    p.add_argument("--minutes", type=float, default=2.0, help="how long events are injected")
    p.add_argument("--events", type=int, default=None,
                   help="stop after this many events, even before --minutes are over")
    p.add_argument("--seed", type=int, default=1, help="the schedule's seed (reproduces a run)")
    p.add_argument("--members", type=int, choices=(1, 3), default=1,
                   help="controllers: 1 (its SQLite store) or 3 (cluster members on an etcd "
                   "child process; kills hit members)")
    p.add_argument("--weights", type=_weights, default=None,
                   help=f"event weights over the defaults, e.g. controller_kill=0,link_flap=2 "
                   f"(kinds: {', '.join(EVENT_KINDS)})")
    p.add_argument("--report", type=Path, default=None,
                   help="write a summary here: JSON for a .json name, else markdown")
    p.add_argument("--keep-going", action="store_true",
                   help="log violations and go on instead of stopping at the first")
    p.add_argument("--fast-reroute", action="store_true",
                   help="run the controllers with --fast-reroute (bypass groups expected)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="controller log, store and token (default: a new temporary dir)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        topology = load_topology_argument(args.topology)
    except CpnError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    # a file, or zoo:NAME: the controller takes the same argument
    path = Path(args.topology)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cpn-soak-"))
    config = SoakConfig(topology_path=path, topology=topology, minutes=args.minutes,
                        seed=args.seed, workdir=workdir, weights=args.weights,
                        max_events=args.events,
                        members=args.members, report=args.report,
                        stop_on_violation=not args.keep_going,
                        fast_reroute=args.fast_reroute)
    # SIGTERM unwinds like Ctrl-C: the lab, the controllers and etcd are stopped on the way
    # out (the default action would leave a controller running, holding its ports)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return run_soak(config).exit_code
    except CpnError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        print("soak: 0 events, 0 checks, 1 violations, 0 pings lost")
        return 1


if __name__ == "__main__":
    sys.exit(main())
