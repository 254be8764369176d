"""Restoration of a link cut while a host floods the control plane, against the same cut at
rest, in the same run on the same lab.

The national lab (or ``--topology``) with one more host, the attacker, on one end of the
link the most file intents cross. The controller runs on its defaults (packet-in meters on:
``network.packet_in_pps`` 1000, ``packet_in_control_pps`` 2000), then again with the meters
off (``CPN_NETWORK_PACKET_IN_PPS=0``, ``..._CONTROL_PPS=0``) on the same lab, which shows what
the meters buy. Rounds alternate, so the machine's load falls on every condition alike:

* **at rest**: cut the link, wait until the controller's ``cpn_restoration_ms`` histogram has
  the cut (port-status to the last barrier of the Change that restored the routes: the
  controller's own clock), bring the link back, let it settle;
* **under flood**: the attacker floods random unknown IPv4 destinations at ``--pps``
  (default 62,000 frames/s, one in 10 a gratuitous ARP from a random address;
  ``controller.lab.flood``) and the same cut is made 2 s into it.

Per condition: restoration (median, min-max), the controller's packet-ins/s and CPU share
during the rounds, and ``GET /paths`` answer time (median over the round). The ratios
(flood / rest) are the claim; nothing asserts a time.

Needs root and Open vSwitch; one lab at a time on the machine::

    flock /tmp/cpn-lab.lock .venv/bin/python benchmarks/bench_flood.py [--quick]

The table goes to stdout (progress to stderr) and, with the raw numbers as JSON, to
``benchmarks/results/<UTC time>-flood.{md,json}``.
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
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# the integration tests' harness runs the controller and labs; reuse it rather than copy it
for _p in (REPO, REPO / "tests", REPO / "tests" / "integration"):
    sys.path.insert(0, str(_p))

import httpx  # noqa: E402
import pytest  # noqa: E402  (the harness's bounded waits end with pytest.fail)
import yaml  # noqa: E402
from harness import ControllerProcess, start_lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from waiting import wait_until  # type: ignore[import-not-found, unused-ignore]  # noqa: E402

from controller.lab.flood import flood_command  # noqa: E402
from controller.lab.network import LabNetwork  # noqa: E402
from controller.lab.ovs import probe_environment  # noqa: E402
from controller.topology.files import topology_file  # noqa: E402
from controller.topology.loader import load_topology  # noqa: E402

ATTACKER = "h-flood"
METERS_OFF = {"CPN_NETWORK_PACKET_IN_PPS": "0", "CPN_NETWORK_PACKET_IN_CONTROL_PPS": "0"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def busiest_link(topo_path: Path) -> tuple[str, str]:
    """The link (a, b) the most file intents cross (their shortest-latency paths, which is
    what the file's intents get on an idle network, by a networkx oracle)."""
    import networkx as nx

    topo = load_topology(topo_path)
    g = nx.Graph()
    for ln in topo.links:
        g.add_edge(ln.a, ln.b, w=ln.latency_ms)
    node_of = {h.name: h.node for h in topo.hosts}
    crossed: Counter[tuple[str, str]] = Counter()
    for spec in topo.intents:
        path = nx.shortest_path(g, node_of[spec.src], node_of[spec.dst], weight="w")
        crossed.update(tuple(sorted(p)) for p in zip(path, path[1:], strict=False))
    (a, b), _ = crossed.most_common(1)[0]
    return a, b


def with_attacker(topo_path: Path, node: str, out_dir: Path) -> Path:
    doc = yaml.safe_load(topo_path.read_text())
    doc.setdefault("hosts", []).append({"name": ATTACKER, "node": node})
    path = out_dir / f"{topo_path.stem}-flood.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


class Api:
    def __init__(self, ctl: ControllerProcess) -> None:
        self.base = f"http://127.0.0.1:{ctl.api_port}"
        self.client = httpx.Client(timeout=10.0)

    def metrics(self) -> dict[str, float]:
        text = self.client.get(f"{self.base}/metrics").text
        out: dict[str, float] = {}
        for m in re.finditer(r"^(cpn_restoration_ms_(?:sum|count)|cpn_packet_ins_total)"
                             r"(?:\{[^}]*\})? ([0-9.e+]+)$", text, re.M):
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
        return out


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PathProbe:
    """``GET /paths`` between two hosts every 0.1 s in a thread; answer times in ms."""

    def __init__(self, api: Api, src: str, dst: str) -> None:
        self.times: list[float] = []
        self._stop = threading.Event()
        self._args = (api.base, src, dst)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        base, src, dst = self._args
        with httpx.Client(timeout=10.0) as c:
            while not self._stop.wait(0.1):
                t = time.perf_counter()
                if c.get(f"{base}/api/v1/paths", params={"src": src, "dst": dst}).is_success:
                    self.times.append((time.perf_counter() - t) * 1000)

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join(timeout=15)
        return self.times


def one_round(lab: LabNetwork, ctl: ControllerProcess, api: Api, link: tuple[str, str],
              flood_pps: float | None, seed: int) -> dict[str, Any]:
    """One cut and its restoration (with a flood when ``flood_pps``); the numbers."""
    hosts = [h.name for h in lab.topology.hosts if h.name != ATTACKER]
    assert ctl.proc is not None
    pid = ctl.proc.pid
    probe = PathProbe(api, hosts[0], hosts[-1])
    m0, c0, t0 = api.metrics(), cpu_s(pid), time.monotonic()
    flood = None
    if flood_pps is not None:
        h = lab.topology.host(ATTACKER)
        flood = lab.host(ATTACKER).popen(
            flood_command(str(lab.host(ATTACKER).defaultIntf()), h.mac, h.ip, pps=flood_pps,
                          seconds=8.0, garp_every=10, seed=seed),
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(2.0)
    lab.link_down(*link)
    wait_until(lambda: api.metrics().get("cpn_restoration_ms_count", 0.0)
               > m0.get("cpn_restoration_ms_count", 0.0), 20, "the cut restored")
    m1 = api.metrics()
    lab.link_up(*link)
    sent = None
    if flood is not None:
        out, _ = flood.communicate(timeout=30)
        sent = json.loads(out.decode().strip().splitlines()[-1])
    else:
        time.sleep(2.0)
    m2, c2, t2 = api.metrics(), cpu_s(pid), time.monotonic()
    paths_ms = probe.stop()
    time.sleep(1.0)  # the link's return settles before the next round
    n = m1["cpn_restoration_ms_count"] - m0.get("cpn_restoration_ms_count", 0.0)
    return {"restoration_ms": (m1["cpn_restoration_ms_sum"]
                               - m0.get("cpn_restoration_ms_sum", 0.0)) / n,
            "packet_ins_per_s": (m2.get("cpn_packet_ins_total", 0.0)
                                 - m0.get("cpn_packet_ins_total", 0.0)) / (t2 - t0),
            "cpu_share": (c2 - c0) / (t2 - t0),
            "paths_ms_median": statistics.median(paths_ms) if paths_ms else None,
            "flood": sent}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rest = [r["restoration_ms"] for r in rounds]
    paths = [r["paths_ms_median"] for r in rounds if r["paths_ms_median"] is not None]
    floods = [r["flood"]["pps"] for r in rounds if r["flood"]]
    return {"restoration_median_ms": statistics.median(rest), "restoration_min_ms": min(rest),
            "restoration_max_ms": max(rest),
            "packet_ins_per_s": statistics.median(r["packet_ins_per_s"] for r in rounds),
            "cpu_share": statistics.median(r["cpu_share"] for r in rounds),
            "paths_ms": statistics.median(paths) if paths else None,
            "flood_pps": statistics.median(floods) if floods else None}


def run_controller(lab_env: Any, topo_path: Path, work: Path, link: tuple[str, str],
                   rounds: int, pps: float, meters: bool, seed: int) -> dict[str, list[Any]]:
    """A controller (meters on or off), a lab, ``rounds`` alternating rest / flood rounds
    (rest rounds only with the meters on: the meters change nothing at rest)."""
    work.mkdir(parents=True, exist_ok=True)
    old = {k: os.environ.get(k) for k in METERS_OFF}
    if not meters:
        os.environ.update(METERS_OFF)
    ctl = ControllerProcess(topo_path, work, startup_grace_s=5.0)
    try:
        ctl.start()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out: dict[str, list[Any]] = {"rest": [], "flood": []}
    try:
        topo = load_topology(topo_path)
        lab, _ = start_lab(lab_env, topo, ctl, timeout_s=120)
        try:
            ctl.wait_synced(len(topo.nodes), 90)
            api = Api(ctl)
            for i in range(rounds):
                if meters:
                    say(f"  meters on, round {i + 1}/{rounds}: at rest")
                    out["rest"].append(one_round(lab, ctl, api, link, None, seed + i))
                say(f"  meters {'on' if meters else 'off'}, round {i + 1}/{rounds}: flood")
                out["flood"].append(one_round(lab, ctl, api, link, pps, seed + i))
        finally:
            lab.stop()
    finally:
        ctl.stop()
    return out


def report(res: dict[str, Any]) -> str:
    rest = res["summary"]["rest"]
    lines = [f"flood benchmark, {res['when']}, topology {res['topology']}, cut "
             f"{'-'.join(res['link'])}, attacker at {res['link'][0]}, {res['rounds']} rounds, "
             f"{os.cpu_count()} CPUs, load average at start {res['load']:.1f}", "",
             "| condition | flood reached | restoration median (min-max) | vs rest | "
             "packet-ins/s | controller CPU | GET /paths median | vs rest |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in ("rest", "flood", "flood_no_meters"):
        s = res["summary"].get(name)
        if s is None:
            continue
        ratio = s["restoration_median_ms"] / rest["restoration_median_ms"]
        pratio = (s["paths_ms"] / rest["paths_ms"]) if s["paths_ms"] and rest["paths_ms"] \
            else float("nan")
        label = {"rest": "at rest (meters on)", "flood": "flood, meters on (defaults)",
                 "flood_no_meters": "flood, meters off"}[name]
        lines.append(
            f"| {label} | {s['flood_pps'] or 0:,.0f}/s | {s['restoration_median_ms']:.1f} ms "
            f"({s['restoration_min_ms']:.1f}-{s['restoration_max_ms']:.1f}) | {ratio:.2f}x | "
            f"{s['packet_ins_per_s']:,.0f} | {100 * s['cpu_share']:.0f}% | "
            f"{s['paths_ms'] or 0:.1f} ms | {pratio:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--topology", type=Path, default=topology_file("national"))
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="3 rounds")
    p.add_argument("--pps", type=float, default=62_000.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-meters-off", action="store_true",
                   help="skip the second controller with the meters off")
    a = p.parse_args(argv)
    rounds = 3 if a.quick else a.rounds
    if os.geteuid() != 0:
        say("needs root (Mininet, Open vSwitch)")
        return 2
    lab_env = probe_environment(start_ovs=True)
    link = busiest_link(a.topology)
    load = os.getloadavg()[0]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="cpn-flood-") as tmp:
        work = Path(tmp)
        topo_path = with_attacker(a.topology, link[0], work)
        say(f"cut {link[0]}-{link[1]}, attacker {ATTACKER} at {link[0]}")
        on = run_controller(lab_env, topo_path, work / "on", link, rounds, a.pps, True, a.seed)
        raw = {"rest": on["rest"], "flood": on["flood"]}
        if not a.no_meters_off:
            off = run_controller(lab_env, topo_path, work / "off", link, rounds, a.pps, False,
                                 a.seed)
            raw["flood_no_meters"] = off["flood"]
    res = {"when": when, "topology": a.topology.stem, "link": list(link), "rounds": rounds,
           "load": load, "raw": raw, "summary": {k: summary(v) for k, v in raw.items()}}
    table = report(res)
    print(table)
    out_dir = REPO / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out_dir / f"{stamp}-flood.md").write_text(table + "\n")
    (out_dir / f"{stamp}-flood.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except pytest.fail.Exception as exc:  # a bounded wait ran out
        say(f"failed: {exc}")
        sys.exit(1)
