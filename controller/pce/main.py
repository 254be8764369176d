"""``cpn-pce``: the PCE as its own process, PCEP on one address, its REST API on another.

    cpn-pce --topology topologies/national-sr.yaml --pcep 192.0.2.1:4189 --api 127.0.0.1:8190

It is a process of its own, not a listener of ``cpn-controller``: it computes on the routers'
SR topology (a file), not on the OpenFlow network the controller discovers, and a PCC that
floods it or a crash in it cannot stall the switches' controller. docs/pce.md says more.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from controller.errors import CpnError
from controller.pce.engine import PceEngine
from controller.pce.server import PceServer

__all__ = ["main", "parse_address"]

log = logging.getLogger("controller.pce")


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    """``HOST``, ``HOST:PORT`` or ``[V6]:PORT``; ValueError for a bad port."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    value = int(port) if port else default_port
    if not 0 <= value <= 65535:
        raise ValueError(f"port {value} is outside 0-65535")
    return host, value


def main(argv: Sequence[str] | None = None) -> int:
    from controller.api.pce import create_pce_app
    from controller.api.server import TOKEN_ENV, serve_in_thread
    from controller.topology.files import load_topology_argument

    ap = argparse.ArgumentParser(prog="cpn-pce", description="A stateful PCE for routers "
                                 "(PCEP, segment routing) on pathcore's exact paths.")
    ap.add_argument("--topology", required=True, help="SR topology file (router ids, SIDs)")
    ap.add_argument("--pcep", default="127.0.0.1:4189", help="PCEP address (default "
                    "127.0.0.1:4189; PCCs such as FRR bind 4189 too: give the PCE its own "
                    "address)")
    ap.add_argument("--api", default="127.0.0.1:8190", help="REST API address (port 0: any "
                    "free port; 'off': none)")
    ap.add_argument("--keepalive", type=int, default=30, help="seconds (RFC 5440: 30)")
    ap.add_argument("--dead-timer", type=int, default=120, help="seconds (RFC 5440: 120)")
    ap.add_argument("--request-rate", type=float, default=500.0,
                    help="path requests per second per session before NO-PATH "
                         "'PCE unavailable' (burst: twice this)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    try:
        topo = load_topology_argument(args.topology)
        engine = PceEngine(topo)
        pcep_host, pcep_port = parse_address(args.pcep, 4189)
        server = PceServer(engine, pcep_host, pcep_port, keepalive_s=args.keepalive,
                           dead_timer_s=args.dead_timer, request_rate=args.request_rate,
                           request_burst=max(1, int(2 * args.request_rate)))
        logging.basicConfig(level=args.log_level.upper(),
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        server.start()
    except (CpnError, ValueError, OSError) as exc:
        print(f"cpn-pce: {exc}", file=sys.stderr)
        return 2
    api = None
    if args.api != "off":
        host, port = parse_address(args.api, 8190)
        try:
            api = serve_in_thread(create_pce_app(server, token=os.environ.get(TOKEN_ENV)),
                                  host, port)
        except OSError as exc:
            server.stop()
            print(f"cpn-pce: REST API on {args.api}: {exc}", file=sys.stderr)
            return 2
    print(f"cpn-pce: {topo.name} ({len(topo.nodes)} routers), PCEP on "
          f"{server.host}:{server.port}" + (f", API on {api.url}" if api else ""), flush=True)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass
    if api is not None:
        api.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
