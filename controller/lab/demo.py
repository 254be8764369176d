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
from controller.lab import process
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


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(unreadable: {exc.strerror or exc})"


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
        process.stop(ctl)


def _spawn(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "controller.main", *args], stdout=log,
                                stderr=subprocess.STDOUT)


def live_cluster(topo_path: str, topo: Topology, *, members: int, api_port: int,
                 interactive: bool, workdir: Path) -> int:
    """A local etcd over TLS (client certificates required) and ``members`` controllers
    sharing the network (every switch connects to all of them), each with its own etcd
    client certificate; show the mastership, kill the member mastering the most switches
    and show the takeover with the routes still installed."""
    from controller.cluster.etcdproc import EtcdServer
    from controller.lab.build import ControllerAddress
    from controller.lab.network import LabNetwork
    from controller.lab.ovs import require_root
    from controller.lab.pki import make_etcd_pki, server_tls

    require_root()
    member_ids = [f"m{i}" for i in range(1, members + 1)]
    pki = make_etcd_pki(workdir / "pki", member_ids).files
    etcd = EtcdServer(workdir=workdir / "etcd", tls=server_tls(workdir / "pki"))
    etcd.start()
    print(f"etcd {etcd.client_url} (TLS, client certificates of the etcd CA in {pki.dir} "
          f"required; data in {etcd.data_dir})", flush=True)
    procs: list[subprocess.Popen[bytes]] = []
    urls: dict[str, str] = {}
    ofps: list[ControllerAddress] = []
    try:
        for i in range(1, members + 1):
            mid = f"m{i}"
            ofp_port, port = _free_port(6653 + i - 1), _free_port(api_port + i - 1)
            urls[mid] = f"http://127.0.0.1:{port}"
            ofps.append(ControllerAddress("127.0.0.1", ofp_port))
            log_path = workdir / f"{mid}.log"
            print(f"starting member {mid}: OpenFlow 127.0.0.1:{ofp_port}, REST {urls[mid]}, "
                  f"log {log_path}", flush=True)
            procs.append(_spawn(["--topology", topo_path, "--ofp-port", str(ofp_port),
                                 "--api-port", str(port), "--state-dir",
                                 str(workdir / mid), "--log-file", str(log_path),
                                 "--cluster", etcd.client_url, "--member-id", mid,
                                 "--etcd-ca", str(pki.ca_cert),
                                 "--etcd-cert", str(pki.client_cert(mid)),
                                 "--etcd-key", str(pki.client_key(mid))], log_path))
        def answers(url: str) -> Callable[[], bool]:
            return lambda: bool(_get_json(f"{url}/api/v1/cluster"))

        def synced(url: str) -> Callable[[], bool]:
            def check() -> bool:
                health = _get_json(f"{url}/api/v1/health")
                assert isinstance(health, dict)
                return bool(health["switches_synced"] == len(topo.nodes))
            return check

        for (mid, url), proc in zip(urls.items(), procs, strict=True):
            try:
                _wait(f"member {mid}'s REST API", answers(url), 60)
            except LabError as exc:
                state = ("still running" if proc.poll() is None
                         else f"exited with status {proc.returncode}")
                raise LabError(f"{exc} ({state}); the end of its log "
                               f"{workdir / f'{mid}.log'}:\n"
                               f"{_log_tail(workdir / f'{mid}.log')}") from None
        cpnctl = [sys.executable, "-m", "controller.api.cli"]
        t0 = time.monotonic()
        with LabNetwork(topo, controllers=ofps) as lab:
            print(f"Mininet: {len(topo.nodes)} OVS switches, each connected to {members} "
                  "controllers\n", flush=True)

            def mastered(url: str, alive: set[str]) -> bool:
                view = _get_json(f"{url}/api/v1/cluster")
                assert isinstance(view, dict)
                return all(s["master"] in alive for s in view["switches"])

            for url in urls.values():
                _wait("every switch programmed", synced(url), 90)
            _wait("every switch mastered", lambda: mastered(urls["m1"], set(urls)), 30)
            print(f"every switch mastered and programmed {time.monotonic() - t0:.1f} s after "
                  "the lab started\n", flush=True)
            env = {**os.environ, "CPN_URL": urls["m1"]}
            print("$ cpnctl cluster", flush=True)
            subprocess.run([*cpnctl, "cluster"], env=env, check=False, timeout=30)
            pairs = [(i.src, i.dst) for i in topo.intents]
            for src, dst in pairs:
                lab.wait_until_reachable(src, dst, timeout_s=15)
            view = _get_json(f"{urls['m1']}/api/v1/cluster")
            assert isinstance(view, dict)
            counts: dict[str, int] = {}
            for s in view["switches"]:
                counts[s["master"]] = counts.get(s["master"], 0) + 1
            victim = max(sorted(counts), key=lambda m: counts[m])
            survivors = {m: u for m, u in urls.items() if m != victim}
            watch = next(iter(survivors.values()))
            print(f"\nkilling member {victim} (SIGKILL), master of {counts[victim]} "
                  "switches", flush=True)
            t_kill = time.monotonic()
            procs[list(urls).index(victim)].kill()
            deadline = t_kill + 10.0
            while not mastered(watch, set(survivors)) and time.monotonic() < deadline:
                time.sleep(0.02)
            took = time.monotonic() - t_kill
            print(f"its switches were mastered by the survivors {took * 1000:.0f} ms after "
                  "the kill (polled every 20 ms)\n", flush=True)
            env["CPN_URL"] = watch
            for args in (["cluster"], ["intents", "list"]):
                print(f"$ cpnctl {' '.join(args)}", flush=True)
                subprocess.run([*cpnctl, *args], env=env, check=False, timeout=30)
                print(flush=True)
            ok = [lab.ping(src, dst, count=3) for src, dst in pairs]
            print(f"pings along the intents after the takeover: "
                  f"{sum(r.received for r in ok)}/{sum(r.sent for r in ok)} answered\n",
                  flush=True)
            if interactive:
                print(f"Mininet CLI (exit to stop). Elsewhere: CPN_URL={watch} cpnctl cluster",
                      flush=True)
                lab.cli()
            return 0 if all(r.ok for r in ok) and took < 10.0 else 1
    finally:
        process.stop(procs)
        etcd.stop()


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
    parser.add_argument("--cluster", type=int, metavar="N", default=0,
                        help="run N controllers sharing the network through a local etcd "
                             "(each switch mastered by one), then kill one and show the "
                             "takeover")
    args = parser.parse_args(argv)
    try:
        topo = load_topology_argument(args.topology)
        offline(topo)
        if args.offline:
            return 0
        print()
        with tempfile.TemporaryDirectory(prefix="cpn-demo-") as workdir:
            if args.cluster:
                if args.cluster < 2:
                    raise CpnError("--cluster needs at least 2 members")
                return live_cluster(args.topology, topo, members=args.cluster,
                                    api_port=args.api_port, workdir=Path(workdir),
                                    interactive=sys.stdin.isatty() and not args.no_cli)
            return live(args.topology, topo, api_port=args.api_port, workdir=Path(workdir),
                        interactive=sys.stdin.isatty() and not args.no_cli)
    except CpnError as exc:
        print(f"cpn-demo: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
