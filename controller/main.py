"""``cpn-controller``: run the CPN controller (os-ken, OpenFlow 1.3) for a topology file.

    cpn-controller --topology topologies/national.yaml [--ofp-port 6653]
                   [--ofp-host 127.0.0.1] [--fallback best_effort|drop] [--log-level info]
                   [--log-file FILE]
    cpn-controller --config controller.yaml [--print-config]

Settings come from :mod:`controller.settings`: defaults < ``--config FILE`` (YAML) <
``CPN_<SECTION>_<KEY>`` environment variables < flags; ``--print-config`` prints the effective
settings with the source of each and exits.

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
from controller.settings import FLAGS, LoggingSettings, Settings, SettingsError, load_settings
from controller.topology.files import load_topology_argument

__all__ = ["StructuredFormatter", "build_service", "configure_logging", "main", "run"]

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
    p = argparse.ArgumentParser(
        prog="cpn-controller", description="Run the CPN OpenFlow 1.3 controller (os-ken).",
        epilog="Every setting can also come from the config file (section.key) or the "
               "environment (CPN_<SECTION>_<KEY>); flags win over both. See --print-config.")
    p.add_argument("--config", metavar="FILE",
                   help="YAML config file: settings by section, as --print-config shows them")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective settings and where each came from, then exit")

    def flag(path: str, **kwargs: Any) -> None:
        default = Settings.default(path)
        shown = "" if default is None else f" (default {default})"
        p.add_argument(FLAGS[path], dest=path, default=argparse.SUPPRESS,
                       help=f"{Settings.describe(path)}{shown}", **kwargs)

    flag("topology.file", metavar="FILE")
    flag("openflow.port", type=int, metavar="PORT")
    flag("openflow.host", metavar="ADDR")
    flag("network.fallback", choices=("best_effort", "drop"))
    flag("network.startup_grace_s", type=float, metavar="S")
    flag("logging.level", choices=("debug", "info", "warning", "error"))
    flag("logging.file", metavar="FILE")
    flag("api.host", metavar="ADDR")
    flag("api.port", type=int, metavar="PORT")
    flag("network.port_stats_interval_s", type=float, metavar="S")
    flag("state.dir", metavar="DIR")
    flag("api.token_file", metavar="FILE")
    flag("state.snapshot_file", metavar="FILE")
    return p


def configure_logging(settings: LoggingSettings) -> None:
    """One handler on the root logger (``settings.file``, else stderr) with the
    :class:`StructuredFormatter`, at ``settings.level``."""
    handler: logging.Handler = (logging.FileHandler(settings.file) if settings.file
                                else logging.StreamHandler())
    handler.setFormatter(StructuredFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())


def build_service(settings: Settings) -> ControllerService:
    """Load ``settings.topology.file`` and build the service with the settings' values
    (raises :class:`CpnError` on a bad file)."""
    if settings.topology.file is None:
        raise CpnError("no topology file: give --topology FILE, topology.file in the "
                       "--config file, or CPN_TOPOLOGY_FILE")
    net = settings.network
    return ControllerService(load_topology_argument(settings.topology.file),
                             fallback=net.fallback,
                             startup_grace_s=net.startup_grace_s,
                             lldp_timeout_s=net.lldp_timeout_s,
                             lldp_interval_s=net.lldp_interval_s,
                             barrier_timeout_s=settings.openflow.barrier_timeout_s,
                             port_stats_interval_s=net.port_stats_interval_s,
                             gc_reclaim_interval_s=net.gc_reclaim_interval_s,
                             state_file=settings.state.snapshot_file)


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


def _error(message: object) -> int:
    for line in str(message).splitlines():
        print(f"cpn-controller: error: {line}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cpn-controller`` command; returns the exit status (2 on bad settings or a bad
    topology, with nothing started)."""
    args = _parser().parse_args(argv)
    flags = {path: value for path, value in vars(args).items() if path in FLAGS}
    try:
        settings = load_settings(args.config, flags=flags)
    except SettingsError as exc:
        return _error(exc)
    if args.print_config:
        sys.stdout.write(settings.to_yaml())
        return 0
    configure_logging(settings.logging)
    log = logging.getLogger("controller.main")
    try:
        service = build_service(settings)
    except (CpnError, OSError) as exc:
        return _error(exc)
    topo = service.topology
    ofp = settings.openflow
    log.info(f"topology {topo.name}: {len(topo.nodes)} switches, {len(topo.links)} links, "
             f"{len(topo.hosts)} hosts, {len(topo.intents)} intents; listening on "
             f"{ofp.host}:{ofp.port}, fallback {settings.network.fallback}",
             extra={"event": "start"})

    def _term(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    # The API starts before the OpenFlow side: it reloads the stored intents with their ids,
    # so switches that reconnect are reconciled against the same plan and cookies as before.
    from controller.api.rest import start_api

    try:
        api = start_api(service, state_dir=settings.state.dir, host=settings.api.host,
                        port=settings.api.port, token_file=settings.api.token_file,
                        intent_timeout_s=settings.api.intent_timeout_s)
    except (CpnError, OSError) as exc:
        return _error(exc)
    signal.signal(signal.SIGTERM, _term)
    try:
        run(service, ofp.host, ofp.port)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping", extra={"event": "stop"})
        api.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
