"""``cpn-controller``: run the CPN controller (os-ken, OpenFlow 1.3) for a topology file.

    cpn-controller --topology topologies/national.yaml [--ofp-port 6653]
                   [--ofp-host 127.0.0.1] [--fallback best_effort|drop] [--log-level info]
                   [--log-file FILE]

Logs are one line per event with structured fields (``event=``, ``dpid=``, ``intent=``,
``duration_ms=``; a sent Change also has ``compute_ms``, ``phase1_ms``, ``phase2_ms``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from controller.errors import CpnError
from controller.network.service import ControllerService
from controller.topology.files import load_topology_argument

__all__ = ["StructuredFormatter", "build_service", "main", "run"]

FIELDS = ("event", "dpid", "intent", "token", "port_no", "duration_ms", "compute_ms",
          "phase0_ms", "phase1_ms", "phase2_ms", "queued_ms", "messages", "switches")
"""``extra`` fields printed as ``key=value`` after the message, in this order."""


class StructuredFormatter(logging.Formatter):
    """``TIME LEVEL logger: message | event=... dpid=0x... duration_ms=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        parts = []
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is None:
                continue
            if key == "dpid" and isinstance(value, int):
                value = f"{value:#x}"
            parts.append(f"{key}={value}")
        return f"{text} | {' '.join(parts)}" if parts else text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpn-controller",
                                description="Run the CPN OpenFlow 1.3 controller (os-ken).")
    p.add_argument("--topology", required=True, metavar="FILE", help="topology file (YAML)")
    p.add_argument("--ofp-port", type=int, default=6653, help="OpenFlow TCP port (6653)")
    p.add_argument("--ofp-host", default="127.0.0.1",
                   help="address to listen on (127.0.0.1; 0.0.0.0 for every interface)")
    p.add_argument("--fallback", choices=("best_effort", "drop"), default="best_effort",
                   help="what an intent's traffic does while no path meets its bounds "
                        "(default best_effort: least-latency forwarding)")
    p.add_argument("--startup-grace", type=float, default=10.0, metavar="S",
                   help="seconds during which switches not yet connected count as present")
    p.add_argument("--log-level", default="info",
                   choices=("debug", "info", "warning", "error"))
    p.add_argument("--log-file", metavar="FILE", help="log here instead of stderr")
    p.add_argument("--api-host", default="127.0.0.1",
                   help="REST API address (127.0.0.1: reads open on loopback only)")
    p.add_argument("--api-port", type=int, default=8080, help="REST API port (8080)")
    p.add_argument("--port-stats-interval", type=float, default=2.0, metavar="S",
                   help="poll port statistics for link load every S seconds (2; 0: never)")
    p.add_argument("--state-dir", metavar="DIR", default=None,
                   help="where intents and the API token persist (default "
                        "$XDG_DATA_HOME/cpn-controller or ~/.local/share/cpn-controller)")
    p.add_argument("--api-token-file", metavar="FILE", default=None,
                   help="bearer token for write calls (default: CPN_API_TOKEN, else a token "
                        "generated into <state-dir>/api-token)")
    p.add_argument("--state-file", metavar="FILE",
                   help="write intents, switches and links as JSON here every second")
    return p


def build_service(topology_file: str, fallback: str = "best_effort",
                  startup_grace_s: float = 10.0) -> ControllerService:
    """Load the topology and build the service (raises :class:`CpnError` on a bad file)."""
    return ControllerService(load_topology_argument(topology_file), fallback=fallback,
                             startup_grace_s=startup_grace_s)


def run(service: ControllerService, ofp_host: str, ofp_port: int) -> None:
    """Start os-ken with the CPN app on ``service`` and block until it stops."""
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    from os_ken.lib import hub

    # registers the ofp_* options; must come after app_manager (circular imports)
    importlib.import_module("os_ken.controller.controller")

    cfg.CONF(args=["--ofp-listen-host", ofp_host, "--ofp-tcp-listen-port", str(ofp_port)],
             project="os_ken")
    manager = AppManager.get_instance()
    manager.load_apps(["controller.network.app"])
    contexts: dict[str, Any] = dict(manager.create_contexts())
    threads = manager.instantiate_apps(cpn_service=service, **contexts)
    try:
        hub.joinall(threads)
    finally:
        manager.close()


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cpn-controller`` command; returns the exit status (2 on a bad topology)."""
    args = _parser().parse_args(argv)
    handler: logging.Handler = (logging.FileHandler(args.log_file) if args.log_file
                                else logging.StreamHandler())
    handler.setFormatter(StructuredFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(args.log_level.upper())
    log = logging.getLogger("controller.main")
    try:
        service = build_service(args.topology, args.fallback, args.startup_grace)
    except (CpnError, OSError) as exc:
        print(f"cpn-controller: error: {exc}", file=sys.stderr)
        return 2
    service.state_file = args.state_file
    service.port_stats_interval_s = args.port_stats_interval
    topo = service.topology
    log.info(f"topology {topo.name}: {len(topo.nodes)} switches, {len(topo.links)} links, "
             f"{len(topo.hosts)} hosts, {len(topo.intents)} intents; listening on "
             f"{args.ofp_host}:{args.ofp_port}, fallback {args.fallback}",
             extra={"event": "start"})

    def _term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # The API starts before the OpenFlow side: it reloads the stored intents with their ids,
    # so switches that reconnect are reconciled against the same plan and cookies as before.
    from controller.api.rest import start_api

    try:
        api = start_api(service, state_dir=args.state_dir, host=args.api_host,
                        port=args.api_port, token_file=args.api_token_file)
    except (CpnError, OSError) as exc:
        print(f"cpn-controller: error: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _term)
    try:
        run(service, args.ofp_host, args.ofp_port)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping", extra={"event": "stop"})
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
