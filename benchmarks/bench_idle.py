"""Idle cost benchmark: what the controller spends on a connected network where nothing happens.

For each map: the controller (a child process, as ``cpn-controller`` runs it) and a lab of
the same map connected to it; once every switch is reconciled and 10 s have passed, for
``--seconds`` (default 20): the controller's CPU (user + system, % of one core), its OS
threads, and the OpenFlow messages it exchanged per second by type (``/metrics``: LLDP
probes are the packet-outs out and packet-ins in, port statistics the multipart requests),
plus start-up to API ready. Needs root and OVS (one lab at a time on the machine).

    .venv/bin/python benchmarks/bench_idle.py [--maps national,Cogentco] [--seconds 20]

The table goes to stdout and, with the raw numbers as JSON, to
``benchmarks/results/<UTC time>-idle.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "integration")]

from harness import ControllerProcess  # noqa: E402
from waiting import wait_until  # noqa: E402

from controller.lab.network import LabNetwork  # noqa: E402
from controller.topology.files import load_topology_argument  # noqa: E402

MAPS = {"national": str(REPO / "topologies" / "national.yaml"), "Cogentco": "zoo:Cogentco",
        "Kdl": "zoo:Kdl"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def proc_threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))  # type: ignore[union-attr]


def cpu_s(pid: int) -> float:
    """User + system seconds of process ``pid``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(ctl: ControllerProcess) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{ctl.api_port}/api/v1/health", timeout=5.0)
        return dict(r.json()) if r.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None


_MSG = re.compile(r'^cpn_openflow_messages_total\{direction="(in|out)",type="(\w+)"\} (\S+)$',
                  re.M)
KINDS = {("out", "OFPPacketOut"): "probes_out", ("in", "OFPPacketIn"): "packet_ins",
         ("out", "OFPPortStatsRequest"): "port_stats", ("out", "OFPEchoRequest"): "echoes"}


def messages(ctl: ControllerProcess) -> dict[tuple[str, str], float]:
    text = httpx.get(f"http://127.0.0.1:{ctl.api_port}/metrics", timeout=10.0).text
    return {(d, t): float(v) for d, t, v in _MSG.findall(text)}


def run_map(name: str, topology_arg: str, seconds: float) -> dict[str, Any]:
    topology = load_topology_argument(topology_arg)
    n = len(topology.nodes)
    res: dict[str, Any] = {"map": name, "switches": n, "links": len(topology.links)}
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        ctl = ControllerProcess(Path(topology_arg), Path(tmp))
        t0 = time.monotonic()
        ctl.start(timeout_s=120)
        wait_until(lambda: health(ctl), 120, "the controller's API", poll_s=0.05)
        res["api_ready_s"] = time.monotonic() - t0
        assert ctl.proc is not None
        pid = ctl.proc.pid
        try:
            lab = LabNetwork(topology, controllers=[ctl.address])
            try:
                lab.start(timeout_s=900)
                wait_until(lambda: (health(ctl) or {}).get("switches_synced") == n, 600,
                           "every switch reconciled", poll_s=0.5)
                time.sleep(10)
                m0, c0, t0 = messages(ctl), cpu_s(pid), time.monotonic()
                time.sleep(seconds)
                m1, c1, t1 = messages(ctl), cpu_s(pid), time.monotonic()
                res["idle_cpu_pct"] = (c1 - c0) / (t1 - t0) * 100
                res["threads"] = proc_threads(pid)
                for key, label in KINDS.items():
                    res[f"{label}_per_s"] = (m1.get(key, 0.0) - m0.get(key, 0.0)) / (t1 - t0)
            finally:
                lab.stop()
        finally:
            ctl.stop()
    return res


def report(rows: list[dict[str, Any]]) -> str:
    head = ("| map | switches | API ready (s) | threads | idle CPU (% core) | probes out/s | "
            "packet-ins/s | port-stats requests/s | echo requests/s |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [f"| {r['map']} | {r['switches']} | {r['api_ready_s']:.2f} | {r['threads']} | "
             f"{r['idle_cpu_pct']:.1f} | {r['probes_out_per_s']:.1f} | "
             f"{r['packet_ins_per_s']:.1f} | {r['port_stats_per_s']:.1f} | "
             f"{r['echoes_per_s']:.1f} |" for r in rows]
    return "\n".join([head, *lines])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    p.add_argument("--maps", default="national", help="comma-separated: " + ", ".join(MAPS))
    p.add_argument("--seconds", type=float, default=20.0)
    args = p.parse_args(argv)
    rows = []
    for name in args.maps.split(","):
        say(f"{name}: ...")
        rows.append(run_map(name, MAPS[name], args.seconds))
        say(json.dumps(rows[-1]))
    table = report(rows)
    print(table)
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"{stamp}-idle.md").write_text(table + "\n")
    (out / f"{stamp}-idle.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
