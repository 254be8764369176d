"""cpn-pce with FRR's PCC (Debian's frr: zebra + pathd -M pathd_pcep, run as user frr) on two
routers, each in a network namespace the test makes, joined to the test's namespace by a veth
pair (the PCE's address on the test's side of both).

The routers are s1 and s2 of topologies/diamond-sr.yaml (router ids 10.0.0.1 and 10.0.0.2).
s1's pathd has two dynamic candidate paths to s4: ``delay5`` bounded to 5 ms (5000 us, METRIC 12
with the B flag) with a bandwidth and objective function MCP, and ``tight`` bounded to 1.5 ms,
which no path meets; s2's has ``delay6`` (6 ms), which a cut of s1-s5 does not touch.
What FRR holds is read from FRR itself (the segments pathd logs when it sends its report,
``show sr-te policy detail``) and from tshark's PCEP dissector on the captured session; what
it should hold is computed here by brute force over the file's simple paths and a networkx
replay of the SIDs on the IGP (tests/unit/test_pce_segments.py), not by the engine.

FRR 8.4's pathd does not print a PCE's segments in ``show sr-te policy detail`` (it shows
"(created by PCE)" for a path it got, "(undefined)" for none): the SIDs come from its log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from controller.pce.codec import CloseReason
from controller.pce.segments import Segment
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology
from tests.unit.pcep_peer import FakePcc
from tests.unit.test_pce_segments import replay

REPO = Path(__file__).resolve().parents[2]
FRR = Path("/usr/lib/frr")
PCEP_MODULE = Path("/usr/lib/x86_64-linux-gnu/frr/modules/pathd_pcep.so")
PCE_ADDR = "169.254.189.1"
ROUTER_ID = "10.0.0.1"
TOKEN = "pce-frr-test"
TOPOLOGY = topology_file("diamond-sr")

PATHD_CONF = """\
hostname {name}
log file {log} debugging
debug pathd pcep basic
debug pathd pcep path
segment-routing
 traffic-eng
{policies}
  pcep
   pce PCE
    address ip {pce}
    source-address ip {router_id}
    pce-initiated
    timer keep-alive 5
   !
   pcc
    peer PCE precedence 10
   !
  !
 !
!
"""
POLICY = """\
  policy color {color} endpoint 10.0.0.4
   name {name}
   candidate-path preference 100 name dyn dynamic
    metric bound pd {bound_us} required
{extra}    objective-function mcp required
  !
"""
ROUTERS = {  # node of diamond-sr: (router id, its policies to s4: name, colour, bound in us)
    "s1": ("10.0.0.1", [("delay5", 1, 5000, "    bandwidth 125000 required\n"),
                        ("tight", 2, 1500, "")]),
    "s2": ("10.0.0.2", [("delay6", 1, 6000, "")]),
}
# An IPv6 router id: without one FRR 8.4's PCC waits about 19 s before it connects.
ZEBRA_CONF = """\
hostname {name}
log file {log}
ip router-id {router_id}
ipv6 router-id fc00::{index}
"""


def wait_for(cond: Callable[[], Any], what: str, timeout_s: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.1)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


@dataclass
class FrrLab:
    namespaces: dict[str, str]
    """router (node name) -> its network namespace (also FRR's pathspace)"""
    api: str
    pcap: Path
    topo: Topology

    def vtysh(self, command: str, router: str = "s1") -> str:
        ns = self.namespaces[router]
        return subprocess.run(["ip", "netns", "exec", ns, "vtysh", "-N", ns, "-c", command],
                              capture_output=True, text=True, timeout=30).stdout

    def get(self, path: str) -> Any:
        return httpx.get(f"{self.api}/api/v1/pce{path}", timeout=10).json()

    def write(self, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.request(method, f"{self.api}/api/v1/pce{path}", json=body, timeout=30,
                             headers={"Authorization": f"Bearer {TOKEN}"})

    def lsp(self, name: str) -> dict[str, Any] | None:
        return next((r for r in self.get("/lsps") if r["name"] == name), None)

    def frr_labels(self, path_name: str, router: str = "s1") -> list[int] | None:
        """The SIDs pathd last reported for ``path_name``, from its own debug log."""
        log = Path("/var/run/frr") / self.namespaces[router] / "pathd.log"
        text = log.read_text(errors="replace")
        start = text.rfind(f"Sending path {path_name}:")
        if start < 0:
            return None
        block = re.split(r"\n\d{4}/\d\d/\d\d ", text[start:], maxsplit=1)[0]
        hops = block.split("hops:", 1)[-1].split("metrics:", 1)[0]
        return [int(x) for x in re.findall(r"label: (\d+)", hops)]


def oracle(topo: Topology, src: str, dst: str, bound_ms: float,
           down: frozenset[int] = frozenset()) -> list[int]:
    """The least-cost simple path within ``bound_ms`` (file link indexes), brute force."""
    best: tuple[float, list[int]] | None = None

    def walk(node: str, seen: set[str], links: list[int], lat: float, cost: float) -> None:
        nonlocal best
        if lat > bound_ms + 1e-9:
            return
        if node == dst:
            if best is None or cost < best[0]:
                best = (cost, list(links))
            return
        for i, lk in enumerate(topo.links):
            if i in down or node not in (lk.a, lk.b):
                continue
            nxt = lk.b if lk.a == node else lk.a
            if nxt not in seen:
                walk(nxt, seen | {nxt}, links + [i], lat + lk.latency_ms, cost + lk.cost)

    walk(src, {src}, [], 0.0, 0.0)
    assert best is not None, f"no path from {src} to {dst} within {bound_ms} ms"
    return best[1]


def segments_of(topo: Topology, labels: list[int]) -> list[Segment]:
    by_sid = {n.node_sid: n.name for n in topo.nodes}
    out = []
    for label in labels:
        assert label in by_sid, f"label {label} is no node SID"
        out.append(Segment(label, "node", by_sid[label], ()))
    return out


def tshark_labels(pcap: Path, msg_type: int) -> list[list[int]]:
    """The SR-ERO labels of every PCEP message of ``msg_type`` in the capture, decoded by
    Wireshark's dissector."""
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "tcp.port==4189,pcep", "-Y",
                          f"pcep.msg == {msg_type}", "-T", "fields", "-e",
                          "pcep.subobj.sr.sid.label"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [[int(x) for x in line.split(",") if x] for line in out.splitlines() if line]


def _remove_stale_labs() -> None:
    """Namespaces, veths and FRR daemons of earlier runs of this module whose process is
    gone (a run that was killed): they hold the PCE's address."""
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                           timeout=30).stdout.split()
    for ns in (n for n in names if re.fullmatch(r"cpce\d+[a-z]", n)):
        try:
            os.kill(int(ns[4:-1]), 0)
            continue  # its run is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        rundir = Path("/var/run/frr") / ns
        for pidfile in rundir.glob("*.pid"):
            try:
                os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "link", "del", f"{ns}h"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        shutil.rmtree(rundir, ignore_errors=True)


@pytest.fixture(scope="module")
def frr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FrrLab]:
    if os.geteuid() != 0:
        pytest.fail("the FRR interoperability tests need root (network namespaces, FRR as "
                    "user frr)", pytrace=False)
    missing = [str(p) for p in (FRR / "zebra", FRR / "pathd", PCEP_MODULE)
               if not p.exists()] + [b for b in ("vtysh", "tshark", "dumpcap")
                                     if not shutil.which(b)]
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: install Debian's frr and tshark "
                    "(scripts/setup.sh does)", pytrace=False)
    _remove_stale_labs()
    tag = f"{os.getpid() % 100000}"
    namespaces = {node: f"cpce{tag}{chr(ord('a') + i)}" for i, node in enumerate(ROUTERS)}
    work = tmp_path_factory.mktemp("frr")
    procs: list[subprocess.Popen[Any]] = []
    try:
        for node, ns in namespaces.items():  # a namespace per router, a veth pair to the PCE
            router_id, veth = ROUTERS[node][0], f"{ns}h"
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "addr", "add", PCE_ADDR, "peer", f"{router_id}/32", "dev", veth)
            sh("ip", "link", "set", veth, "up")
            sh("ip", "-n", ns, "addr", "add", router_id, "peer", f"{PCE_ADDR}/32", "dev",
               "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        pcap = work / "pcep.pcap"
        capture = subprocess.Popen(
            ["dumpcap", "-q", *[x for ns in namespaces.values() for x in ("-i", f"{ns}h")],
             "-f", "tcp port 4189", "-w", str(pcap)], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        procs.append(capture)
        wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0, "dumpcap to capture")
        env = {**os.environ, "CPN_API_TOKEN": TOKEN}
        pce_out = work / "cpn-pce.log"
        with pce_out.open("w") as out:
            pce = subprocess.Popen([sys.executable, "-m", "controller.pce.main",
                                    "--topology", str(TOPOLOGY), "--pcep", PCE_ADDR, "--api",
                                    "127.0.0.1:0", "--keepalive", "5", "--dead-timer", "20"],
                                   cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True,
                                   env=env)
        procs.append(pce)
        found = wait_for(lambda: pce.poll() is None and re.search(
            r"API on (http://\S+)", pce_out.read_text()), "cpn-pce to start")
        for i, (node, ns) in enumerate(namespaces.items(), 1):
            router_id, policies = ROUTERS[node]
            rundir = Path("/var/run/frr") / ns  # FRR's sockets; its configs, logs, pids too
            rundir.mkdir(parents=True, exist_ok=True)
            shutil.chown(rundir, "frr", "frr")
            text = "".join(POLICY.format(name=name, color=color, bound_us=bound, extra=extra)
                           for name, color, bound, extra in policies)
            for daemon, conf in (("zebra", ZEBRA_CONF), ("pathd", PATHD_CONF)):
                path = rundir / f"{daemon}.conf"
                path.write_text(conf.format(name=ns, log=rundir / f"{daemon}.log",
                                            pce=PCE_ADDR, router_id=router_id, index=i,
                                            policies=text.rstrip("\n")))
                extra_args = ["-M", "pathd_pcep"] if daemon == "pathd" else []
                sh("ip", "netns", "exec", ns, str(FRR / daemon), "-d", "-N", ns, *extra_args,
                   "-f", str(path), "-i", str(rundir / f"{daemon}.pid"))
        lab = FrrLab(namespaces=namespaces, api=found.group(1), pcap=pcap,
                     topo=load_topology(TOPOLOGY))
        wait_for(lambda: sorted(s["peer"] for s in lab.get("/sessions") if s["synced"]) ==
                 sorted(r for r, _ in ROUTERS.values()), "both routers' sessions and sync")
        yield lab
    finally:
        for ns in namespaces.values():  # FRR's daemons, by the pid they wrote
            for daemon in ("pathd", "zebra"):
                pidfile = Path("/var/run/frr") / ns / f"{daemon}.pid"
                try:
                    os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
        for proc in reversed(procs):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for ns in namespaces.values():
            subprocess.run(["ip", "link", "del", f"{ns}h"], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            shutil.rmtree(Path("/var/run/frr") / ns, ignore_errors=True)


def test_sessions_and_report_synchronisation(frr: FrrLab) -> None:
    sessions = {s["peer"]: s for s in frr.get("/sessions")}
    assert sorted(sessions) == ["10.0.0.1", "10.0.0.2"]
    for session in sessions.values():
        assert session["state"] == "up" and session["synced"] and session["stateful"]
        assert session["instantiation"] and session["msd"] is not None
    for router in ROUTERS:
        assert "Session Status UP" in frr.vtysh("show sr-te pcep session", router)
    # s2's own policy: s2-s5-s4 (5 ms, cost 9) is the least cost within 6 ms
    labels = wait_for(lambda: frr.frr_labels("delay6-dyn", "s2"), "s2's path")
    assert replay(frr.topo, "s2", segments_of(frr.topo, labels)) == \
        [oracle(frr.topo, "s2", "s4", 6.0)]


def test_delay_bound_gets_the_exact_path_and_tighter_gets_none(frr: FrrLab) -> None:
    topo = frr.topo
    want = oracle(topo, "s1", "s4", 5.0)  # s1-s5-s4: 4 ms, cost 8
    labels = wait_for(lambda: frr.frr_labels("delay5-dyn"), "pathd to hold delay5's path")
    assert replay(topo, "s1", segments_of(topo, labels)) == [want]
    lsp = wait_for(lambda: (r := frr.lsp("delay5-dyn")) and
                   [s["label"] for s in r["segments"]] == labels and r,
                   "delay5's report of those SIDs in the LSP database")
    assert lsp["delegated"] and lsp["max_latency_ms"] == 5.0
    assert lsp["min_bandwidth_mbps"] == pytest.approx(1.0)  # 125000 bytes/s
    assert lsp["computed"]["latency_ms"] == 4.0 and lsp["computed"]["te_cost"] == 8.0
    detail = frr.vtysh("show sr-te policy detail")
    delay5 = detail.split("Name: delay5", 1)[1].split("Endpoint:", 1)[0]
    tight = detail.split("Name: tight", 1)[1].split("Endpoint:", 1)[0]
    assert "Type: dynamic  Segment-List: (created by PCE)" in delay5, detail
    assert "Segment-List: (undefined)" in tight, detail  # NO-PATH: FRR holds no path
    assert frr.get("/metrics")["replies_no_path"] >= 1
    # Wireshark reads our PCRep's SR-ERO the same way
    wait_for(lambda: labels in tshark_labels(frr.pcap, 4), "the PCRep in the capture", 15)


def test_a_hostile_peer_does_not_touch_frrs_session(frr: FrrLab) -> None:
    before = [s for s in frr.get("/sessions") if s["peer"] == ROUTER_ID][0]
    bad = FakePcc(4189, source="127.0.0.2", host=PCE_ADDR)
    bad.open()
    bad.send_raw(b"\x20\x03\x00\x0c" + b"\x02\x10\x00\x06" + b"\x00" * 4)
    assert bad.closed_with() == CloseReason.MALFORMED
    after = [s for s in frr.get("/sessions") if s["peer"] == ROUTER_ID][0]
    assert after["connected_at"] == before["connected_at"] and after["state"] == "up"
    assert len(frr.get("/sessions")) == 2


def test_a_cut_or_a_measured_delay_moves_the_delegated_lsp_by_pcupd(frr: FrrLab) -> None:
    topo = frr.topo
    cut = next(i for i, lk in enumerate(topo.links) if {lk.a, lk.b} == {"s1", "s5"})
    out = frr.write("PUT", "/links/s1/s5", {"up": False})
    assert out.status_code == 200, out.text
    [moved] = out.json()["moved"]  # s2's LSP does not use the link: it stays
    assert moved["pcc"] == ROUTER_ID
    want = oracle(topo, "s1", "s4", 5.0, frozenset({cut}))  # s1-s2-s4
    assert moved["found"] and [s["label"] for s in moved["segments"]] == [16002, 16004]
    labels = wait_for(lambda: (x := frr.frr_labels("delay5-dyn")) != [16005, 16004] and x,
                      "pathd to take the update")
    assert replay(topo, "s1", segments_of(topo, labels), frozenset({cut})) == [want]
    acks = wait_for(lambda: [h for h in frr.lsp("delay5-dyn")["history"]  # type: ignore[index]
                             if h["event"] == "acknowledged"], "FRR's report of the update")
    assert acks[-1]["srp_id"] == moved["srp_id"] and acks[-1]["labels"] == labels
    wait_for(lambda: [16002, 16004] in tshark_labels(frr.pcap, 11),  # Wireshark's reading
             "the PCUpd in the capture", 15)
    # the link back: the new path still meets its bound, nothing moves
    assert frr.write("PUT", "/links/s1/s5", {"up": True}).json() == {"moved": []}
    # a measured delay of 4.5 ms on s2-s4 puts s1-s2-s4 at 5.5 ms, over the bound: the LSP
    # goes back to s1-s5-s4 (4 ms), the least cost within 5 ms on the measured delays
    out = frr.write("PUT", "/links/s2/s4", {"latency_ms": 4.5})
    [moved] = out.json()["moved"]
    assert [s["label"] for s in moved["segments"]] == [16005, 16004]
    wait_for(lambda: frr.frr_labels("delay5-dyn") == [16005, 16004], "pathd to move back")
    frr.write("PUT", "/links/s2/s4", {"latency_ms": 1.0})


def test_pcinitiate_from_the_rest_api_creates_a_policy(frr: FrrLab) -> None:
    out = frr.write("POST", "/lsps", {"pcc": ROUTER_ID, "source": ROUTER_ID,
                                      "destination": "10.0.0.4", "max_latency_ms": 3,
                                      "name": "initiated", "color": 7})
    assert out.status_code == 202, out.text
    detail = wait_for(lambda: "Name: initiated" in (d := frr.vtysh("show sr-te policy detail"))
                      and d, "the policy on the router")
    policy = detail.split("Color: 7", 1)[1].split("Endpoint:", 1)[0]
    assert "Name: initiated" in policy and "Protocol-Origin: PCEP" in policy, detail
    labels = wait_for(lambda: frr.frr_labels("initiated"), "pathd's report of it")
    assert labels == [s["label"] for s in out.json()["segments"]] == [16002, 16004]
    lsp = wait_for(lambda: frr.lsp("initiated"), "the initiated LSP's report")
    assert lsp["delegated"]
    json.dumps(lsp)  # the record is plain JSON
    # and removed again: PCInitiate with the R flag, FRR's report with R drops the record
    gone = frr.write("DELETE", f"/lsps/{ROUTER_ID}/{lsp['plsp_id']}", {})
    assert gone.status_code == 202, gone.text
    wait_for(lambda: "Name: initiated" not in frr.vtysh("show sr-te policy detail"),
             "the policy to leave the router")
    wait_for(lambda: frr.lsp("initiated") is None, "the LSP to leave the database")
    assert frr.lsp("delay5-dyn") is not None  # the router's own LSP stays
