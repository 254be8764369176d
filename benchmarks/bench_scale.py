"""Scale benchmark: the controller and a lab on the national backbone, Cogentco and Kdl.

For each map, in one run, the controller (a child process, as ``cpn-controller`` runs) and a
lab of the same map connected to it (Open vSwitch in Mininet, userspace datapath):

* start-up: controller process start to its REST API answering;
* bring-up: the lab's build, OVS start and ready times (``LabNetwork.start``);
* reconcile: lab up to every switch connected and reconciled (``/health``);
* first packet: lab up to the first answered ping between the first pair of the ping sample;
* the ping sample of ``cpn-lab check`` (200 pairs above 16 hosts): loss;
* flows per switch as Open vSwitch holds them (``ovs-ofctl dump-aggregate``), all tables and
  table 2 (the destination flows);
* the controller's resident memory (now and peak), per switch and per flow, its threads, and
  its idle CPU (10 s with nothing happening), with ovs-vswitchd's CPU over the same 10 s;
* restoration: links that carry the most least-latency trees (bridges excepted) are cut one
  at a time; the time from the port-status event to the new flows confirmed by barrier, as
  the controller logs it (``duration_ms`` of the change), and whether the far host of the
  first pair behind the cut answers within 10 s.

The peer is the same controller with table 2 per host (no default routes:
``DEFAULT_ROUTE_MIN_HOSTS`` set out of reach), run on the same map in the same run
(``--peer``); ratios are peer / ours. Needs root and OVS.

    .venv/bin/python benchmarks/bench_scale.py [--maps national,Cogentco,Kdl] [--cuts 3] \
        [--peer] [--keep-logs DIR]

The table goes to stdout and, with the raw numbers as JSON, to
``benchmarks/results/<UTC time>-scale.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import networkx as nx
from bench_controller import free_port, say

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.errors import LabError  # noqa: E402
from controller.lab.build import ControllerAddress  # noqa: E402
from controller.lab.network import LabNetwork  # noqa: E402
from controller.lab.ping import plan_ping_pairs  # noqa: E402
from controller.topology.files import load_topology_argument  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

MAPS = {"national": str(REPO / "topologies" / "national.yaml"), "Cogentco": "zoo:Cogentco",
        "Kdl": "zoo:Kdl"}
PER_HOST = ("import sys; import controller.network.destinations as d; "
            "d.DEFAULT_ROUTE_MIN_HOSTS = 1 << 62; from controller.main import main; "
            "sys.exit(main(sys.argv[1:]))")
"""the peer: the controller with one table-2 flow per host at every switch"""
_CHANGE = re.compile(r"change (\d+) \(port (\S+):(\d+) down\): .*duration_ms=([\d.]+)")
_SENT = re.compile(r"change \d+ \((switch|reconcile|restore|port|lldp|host)[^)]*\): (\d+) messages "
                   r"to \d+ switches, compute ([\d.]+) ms, phase0 ([\d.]+) ms")
_EVENTS = ("switch_connected", "switch_lost", "barrier_timeout", "switch_unconfirmed",
           "change_skip_stalled", "lldp_rejected", "resync_wait")


def log_summary(text: str) -> dict[str, Any]:
    """Where the controller's time went, from its log: per kind of change (switch
    connected/lost, reconcile, ...) how many, the messages sent, the compute and the phase-0
    time (sent to barrier-confirmed) summed; and the count of each trouble event."""
    kinds: dict[str, list[float]] = {}
    for m in _SENT.finditer(text):
        k = kinds.setdefault(m.group(1), [0, 0, 0.0, 0.0])
        k[0] += 1
        k[1] += int(m.group(2))
        k[2] += float(m.group(3)) / 1000
        k[3] += float(m.group(4)) / 1000
    return {"changes": {k: dict(zip(("count", "messages", "compute_s", "phase0_s"), v,
                                    strict=True)) for k, v in kinds.items()},
            "events": {e: text.count(f"event={e}") for e in _EVENTS}}


def wait_for(what: str, check: Callable[[], Any], timeout_s: float, poll_s: float = 0.25
             ) -> float:
    """Seconds until ``check()`` is true; RuntimeError naming ``what`` after ``timeout_s``."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if check():
            return time.monotonic() - t0
        time.sleep(poll_s)
    raise RuntimeError(f"{what}: not within {timeout_s:g} s")


class Controller:
    """The controller as a child process with its own ports, state and log."""

    def __init__(self, topology_arg: str, workdir: Path, per_host: bool) -> None:
        self.ofp_port, self.api_port = free_port(), free_port()
        self.log_path = workdir / "controller.log"
        head = [sys.executable, "-c", PER_HOST] if per_host \
            else [sys.executable, "-m", "controller.main"]
        self.cmd = head + ["--topology", topology_arg, "--ofp-port", str(self.ofp_port),
                           "--api-port", str(self.api_port), "--log-file", str(self.log_path),
                           "--state-dir", str(workdir / "state")]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start; seconds until the REST API answers."""
        t0 = time.monotonic()
        env = {k: v for k, v in os.environ.items() if k != "CPN_API_TOKEN"}
        self.proc = subprocess.Popen(self.cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for("controller API", lambda: self.health() is not None, 120, poll_s=0.05)
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def health(self) -> dict[str, Any] | None:
        try:
            r = httpx.get(f"http://127.0.0.1:{self.api_port}/api/v1/health", timeout=5.0)
            return dict(r.json()) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None

    def proc_status(self) -> dict[str, int]:
        """VmRSS and VmHWM (kB) and Threads of the process."""
        assert self.proc is not None
        out = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "Threads"):
                out[k] = int(v.split()[0])
        return out

    def cpu_s(self) -> float:
        assert self.proc is not None
        return cpu_s(self.proc.pid)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def vswitchd_pid() -> int | None:
    """Open vSwitch's ovs-vswitchd (its pid file), None when it cannot be read."""
    try:
        return int(Path("/var/run/openvswitch/ovs-vswitchd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def flows_per_switch(lab: LabNetwork) -> tuple[list[int], list[int]]:
    """Flows of every switch as OVS holds them: (all tables, table 2)."""
    def count(bridge: str, table: str | None) -> int:
        args = ["ovs-ofctl", "-O", "OpenFlow13", "dump-aggregate", bridge]
        if table is not None:
            args.append(f"table={table}")
        out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
        m = re.search(r"flow_count=(\d+)", out)
        return int(m.group(1)) if m else -1

    bridges = list(lab.plan.switch_names.values())
    with ThreadPoolExecutor(8) as pool:
        total = list(pool.map(lambda b: count(b, None), bridges))
        table2 = list(pool.map(lambda b: count(b, "2"), bridges))
    return total, table2


def busiest_links(topology: Topology, n: int) -> list[int]:
    """The ``n`` links (no bridges: the cut must leave another path) on the most
    least-latency trees toward a sample of up to 60 nodes (networkx)."""
    g = nx.Graph()
    for i, lk in enumerate(topology.links):
        if not g.has_edge(lk.a, lk.b) or g[lk.a][lk.b]["latency_ms"] > lk.latency_ms:
            g.add_edge(lk.a, lk.b, latency_ms=lk.latency_ms, index=i)
    bridges = {frozenset(e) for e in nx.bridges(g)}
    nodes = sorted(g.nodes)
    use: Counter[int] = Counter()
    for root in nodes[:: max(1, len(nodes) // 60)]:
        paths = nx.single_source_dijkstra_path(g, root, weight="latency_ms")
        for path in paths.values():
            for a, b in zip(path, path[1:], strict=False):
                if frozenset((a, b)) not in bridges:
                    use[g[a][b]["index"]] += 1
    return [i for i, _ in use.most_common(n)]


def restoration(lab: LabNetwork, ctl: Controller, topology: Topology, link_index: int
                ) -> dict[str, Any]:
    """Cut one link; the restoring change's event-to-confirm time (from the log), and the
    time until a host pair whose least-latency path used the link answers again."""
    lk = topology.links[link_index]
    g = nx.Graph()
    for i, x in enumerate(topology.links):
        if i != link_index:
            g.add_edge(x.a, x.b)
    host_at = {h.node: h.name for h in topology.hosts}
    src, dst = host_at.get(lk.a), host_at.get(lk.b)
    seen = len(ctl.log_text())
    lab.link_down(lk.a, lk.b, index=link_index)
    t0 = time.monotonic()
    durations: list[float] = []

    def logged() -> bool:
        for m in _CHANGE.finditer(ctl.log_text()[seen:]):
            if m.group(2) in (lk.a, lk.b):
                durations.append(float(m.group(4)))
        return bool(durations)

    try:
        wait_for(f"the change of the cut {lk.a}-{lk.b}", logged, 60)
        answered_s = None
        if src and dst and nx.has_path(g, lk.a, lk.b):
            try:
                lab.wait_until_reachable(src, dst, timeout_s=10)
                answered_s = time.monotonic() - t0
            except LabError:
                pass  # not within 10 s: reported as such (None), the run goes on
    finally:
        lab.link_up(lk.a, lk.b, index=link_index)
    time.sleep(3)  # the link comes back (a change of its own) before the next cut
    return {"link": f"{lk.a}-{lk.b}", "restore_ms": max(durations),
            "ping_back_s": answered_s}


def run_map(name: str, topology_arg: str, per_host: bool, cuts: int,
            keep_logs: Path | None = None) -> dict[str, Any]:
    topology = load_topology_argument(topology_arg)
    res: dict[str, Any] = {"map": name, "table2": "per host" if per_host else "default routes",
                           "switches": len(topology.nodes), "links": len(topology.links),
                           "hosts": len(topology.hosts)}
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        ctl = Controller(topology_arg, Path(tmp), per_host)
        try:
            res["api_ready_s"] = ctl.start()
            res["rss_start_mb"] = ctl.proc_status()["VmRSS"] / 1024
            lab = LabNetwork(topology, controllers=[ControllerAddress("127.0.0.1",
                                                                      ctl.ofp_port)])
            try:
                up = lab.start(timeout_s=900)
                res.update(build_s=up.build_s, start_s=up.start_s, ready_s=up.ready_s,
                           bring_up_s=up.total_s)
                t_up = time.monotonic()
                pairs, _ = plan_ping_pairs([h.name for h in topology.hosts])
                src, dst = pairs[0]
                try:
                    lab.wait_until_reachable(src, dst, timeout_s=300)
                    res["first_packet_s"] = time.monotonic() - t_up
                except LabError:
                    res["first_packet_s"] = None
                n = len(topology.nodes)
                try:
                    wait_for("every switch reconciled", lambda: (ctl.health() or {}).get(
                        "switches_synced") == n, max(1.0, 360 - (time.monotonic() - t_up)),
                        poll_s=0.5)
                    res["reconcile_s"] = time.monotonic() - t_up
                except RuntimeError:
                    res["reconcile_s"] = None
                res["synced"] = (ctl.health() or {}).get("switches_synced")
                total, table2 = flows_per_switch(lab)
                res.update(flows_mean=statistics.mean(total), flows_max=max(total),
                           flows_total=sum(total), table2_mean=statistics.mean(table2),
                           table2_max=max(table2))
                matrix = lab.ping_matrix()
                sent = sum(r.sent for r in matrix.results)
                recv = sum(r.received for r in matrix.results)
                res.update(ping_pairs=len(matrix.results), ping_sent=sent, ping_recv=recv)
                res["bring_up_log"] = log_summary(ctl.log_text())
                time.sleep(5)
                ovs = vswitchd_pid()
                c0, o0 = ctl.cpu_s(), cpu_s(ovs) if ovs else 0.0
                time.sleep(10)
                res["idle_cpu_pct"] = (ctl.cpu_s() - c0) / 10 * 100
                # the switches' side of the same quiet 10 s: every userspace bridge of the lab
                # is served by ovs-vswitchd
                res["ovs_idle_cpu_pct"] = (cpu_s(ovs) - o0) / 10 * 100 if ovs else None
                status = ctl.proc_status()
                res.update(rss_mb=status["VmRSS"] / 1024, rss_peak_mb=status["VmHWM"] / 1024,
                           threads=status["Threads"])
                res["rss_kb_per_switch"] = status["VmRSS"] / n
                res["rss_kb_per_flow"] = status["VmRSS"] / max(1, sum(total))
                res["cuts"] = [restoration(lab, ctl, topology, i)
                               for i in busiest_links(topology, cuts)]
            finally:
                lab.stop()
        finally:
            ctl.stop()
            if keep_logs is not None:
                keep_logs.mkdir(parents=True, exist_ok=True)
                kept = keep_logs / f"{name}-{'per-host' if per_host else 'default'}.log"
                kept.write_text(ctl.log_text())
                say(f"controller log kept in {kept}")
    return res


def _f(v: Any, fmt: str = "{:.1f}") -> str:
    return "—" if v is None else fmt.format(v)


def report(rows: list[dict[str, Any]]) -> str:
    out = ["| map | table 2 | API ready | lab build / start / ready | first packet | "
           "reconciled | flows/switch (max) | table 2/switch (max) | pings | RSS (peak) | "
           "kB/switch | B/flow | threads | idle CPU (ovs-vswitchd) | restoration (ms) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r.get
        restore = ", ".join(f"{c['restore_ms']:.0f}" for c in g("cuts", [])) or "—"
        per_flow = None if g("rss_kb_per_flow") is None else r["rss_kb_per_flow"] * 1024
        cells = [
            f"{r['map']} ({r['switches']} sw)", r["table2"], _f(g("api_ready_s"), "{:.2f} s"),
            f"{_f(g('build_s'))} / {_f(g('start_s'))} / {_f(g('ready_s'))} s",
            _f(g("first_packet_s"), "{:.1f} s"),
            f"{_f(g('reconcile_s'), '{:.1f} s')} ({g('synced')}/{r['switches']})",
            f"{_f(g('flows_mean'))} ({g('flows_max')})",
            f"{_f(g('table2_mean'))} ({g('table2_max')})",
            f"{g('ping_recv')}/{g('ping_sent')}",
            f"{_f(g('rss_mb'), '{:.0f}')} ({_f(g('rss_peak_mb'), '{:.0f}')}) MB",
            _f(g("rss_kb_per_switch"), "{:.0f}"), _f(per_flow, "{:.0f}"), str(g("threads")),
            f"{_f(g('idle_cpu_pct'), '{:.0f}%')} ({_f(g('ovs_idle_cpu_pct'), '{:.0f}%')})",
            restore]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--maps", default="national,Cogentco,Kdl")
    ap.add_argument("--cuts", type=int, default=3, help="links cut per map")
    ap.add_argument("--peer", action="store_true",
                    help="also run each map with table 2 per host (the peer)")
    ap.add_argument("--keep-logs", type=Path, metavar="DIR",
                    help="keep each run's controller log in DIR (MAP-default.log, ...)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        say("bench_scale needs root (Mininet, Open vSwitch)")
        return 2
    rows = []
    for name in args.maps.split(","):
        for per_host in ([False, True] if args.peer else [False]):
            say(f"{name}: {'per-host table 2' if per_host else 'default routes'} ...")
            rows.append(run_map(name, MAPS.get(name, name), per_host, args.cuts,
                                args.keep_logs))
            say(json.dumps(rows[-1]))
    text = report(rows)
    print(text)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stamp}-scale.md").write_text(text + "\n")
    (results / f"{stamp}-scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
