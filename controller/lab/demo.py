"""``cpn-demo``: the national backbone in Mininet, programmed by cpn-controller.

First the engine's view of the file (for each intent, the least-cost path that meets its
latency bound next to the least-latency path; the 1/5/20 ms latency circles around each national
hub), then the live network: cpn-controller starts with its REST API, the lab brings the
topology up on Open vSwitch, the controller programs every switch, pings run along the
intents, and ``cpnctl`` shows the installed routes and the latency circles. With a terminal the
Mininet CLI opens at the end; everything is torn down on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from controller.errors import CpnError, LabError
from controller.tables import format_table
from controller.topology.files import ZOO_PREFIX, load_topology_argument, topology_file
from controller.topology.model import Topology

DEFAULT_TOPOLOGY = topology_file("national")
CIRCLE_TIERS_MS = (1.0, 5.0, 20.0)


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


def offline(topo: Topology) -> None:
    """Print the engine's routes and circles for ``topo`` (no switches)."""
    print(f"{topo.name}: {len(topo.nodes)} switches, {len(topo.links)} links, "
          f"{len(topo.hosts)} hosts, {topo.total_bandwidth_mbps / 1e6:.1f} Tbps of links\n")
    if topo.intents:
        print("Latency-bounded routes (least cost within the bound):")
        print(format_table([["intent", "hosts", "bound", "chosen path", "least latency"],
                            *route_rows(topo)]))
        print()
    rows = circle_rows(topo)
    if rows:
        print("Latency circles around the national hubs:")
        print(format_table([["hub", *(f"<= {t:g} ms" for t in CIRCLE_TIERS_MS)], *rows]))


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise LabError("no free TCP port on 127.0.0.1")


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own loopback API
        return json.loads(resp.read())


def _wait(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except OSError:
            pass  # not listening yet
        if time.monotonic() > deadline:
            raise LabError(f"{what} not within {timeout_s:g} s")
        time.sleep(0.3)


def live(topo_path: str, topo: Topology, *, api_port: int, interactive: bool,
         workdir: Path) -> int:
    """Controller + Mininet lab: bring the network up, show routes with cpnctl."""
    from controller.lab.build import ControllerAddress
    from controller.lab.network import LabNetwork
    from controller.lab.ovs import require_root

    require_root()
    ofp_port = _free_port(6653)
    api_port = _free_port(api_port)
    url = f"http://127.0.0.1:{api_port}"
    log_path = workdir / "controller.log"
    print(f"starting cpn-controller (OpenFlow 127.0.0.1:{ofp_port}, REST {url}, "
          f"log {log_path})", flush=True)
    with open(log_path, "ab") as log:
        ctl = subprocess.Popen(
            [sys.executable, "-m", "controller.main", "--topology", topo_path,
             "--ofp-port", str(ofp_port), "--api-port", str(api_port),
             "--state-dir", str(workdir / "state"), "--log-file", str(log_path)],
            stdout=log, stderr=subprocess.STDOUT)
    env = {**os.environ, "CPN_URL": url}
    cpnctl = [sys.executable, "-m", "controller.api.cli"]
    try:
        _wait("the controller's REST API", lambda: ctl.poll() is None
              and bool(_get_json(f"{url}/api/v1/health")), 30)
        t0 = time.monotonic()
        with LabNetwork(topo, controllers=[ControllerAddress("127.0.0.1", ofp_port)]) as lab:
            up = lab.bring_up
            assert up is not None
            print(f"Mininet: {len(topo.nodes)} OVS switches, {len(topo.hosts)} hosts up in "
                  f"{up.total_s:.1f} s", flush=True)

            def all_synced() -> bool:
                health = _get_json(f"{url}/api/v1/health")
                assert isinstance(health, dict)
                return bool(health["switches_synced"] == len(topo.nodes))

            _wait("every switch connected and programmed", all_synced, 60)
            print(f"controller programmed every switch {time.monotonic() - t0:.1f} s after "
                  "the lab started\n", flush=True)
            pairs = [(i.src, i.dst) for i in topo.intents]
            for src, dst in pairs:
                lab.wait_until_reachable(src, dst, timeout_s=15)
            ok = [lab.ping(src, dst, count=3) for src, dst in pairs]
            print(f"pings along the intents: {sum(r.received for r in ok)}/"
                  f"{sum(r.sent for r in ok)} answered\n", flush=True)
            for args in (["intents", "list"],):
                print(f"$ cpnctl {' '.join(args)}", flush=True)
                subprocess.run([*cpnctl, *args], env=env, check=False, timeout=30)
                print(flush=True)
            if interactive:
                print(f"Mininet CLI (exit to stop). Elsewhere: CPN_URL={url} cpnctl routes",
                      flush=True)
                lab.cli()
            return 0 if all(r.ok for r in ok) else 1
    finally:
        ctl.terminate()
        try:
            ctl.wait(timeout=10)
        except subprocess.TimeoutExpired:
            ctl.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cpn-demo", description=__doc__.splitlines()[0])
    parser.add_argument("topology", nargs="?", default=str(DEFAULT_TOPOLOGY),
                        help=f"topology YAML or {ZOO_PREFIX}NAME (default: the national backbone)")
    parser.add_argument("--offline", action="store_true",
                        help="only the path engine on the file: no controller, no Mininet")
    parser.add_argument("--no-cli", action="store_true",
                        help="do not open the Mininet CLI at the end (default: open it when "
                             "standard input is a terminal)")
    parser.add_argument("--api-port", type=int, default=8080,
                        help="REST API port (8080; another free one if taken)")
    args = parser.parse_args(argv)
    try:
        topo = load_topology_argument(args.topology)
        offline(topo)
        if args.offline:
            return 0
        print()
        with tempfile.TemporaryDirectory(prefix="cpn-demo-") as workdir:
            return live(args.topology, topo, api_port=args.api_port, workdir=Path(workdir),
                        interactive=sys.stdin.isatty() and not args.no_cli)
    except CpnError as exc:
        print(f"cpn-demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
