"""Signed discovery on real Open vSwitch (Mininet, userspace datapath): the diamond lab.

The attack it stops: an LLDP frame injected where the controller reads LLDP, naming another
neighbour than the file's, would mark a healthy link miswired and move the intents off it.
Frames are injected from a host (a raw AF_PACKET socket in h1's namespace, on its own port)
and on a trunk (written into one end of the s1-s2 veth pair, so it arrives at the other
switch's trunk port as if that neighbour had sent it). A real probe captured off a trunk is
replayed at once at another trunk port (inside the window: refused as a replay) and, after
the window, where it first arrived (refused as stale). Through all of it no link goes down,
no intent moves, and each refusal is counted and reported. The control: with signing off
(``network.lldp_auth: false``), the same trunk injection takes the link down.
"""

from __future__ import annotations

import re
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import DIAMOND, ControllerProcess, start_lab
from waiting import wait_until

from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.network import packets
from controller.network.lldpauth import LldpAuth, LldpGuard
from controller.topology.loader import load_topology
from controller.topology.wiring import port_plan

MAX_AGE_S = 2.0
"""the controller's window here (network.lldp_max_age_s; + 0.5 s skew), shorter than the
default 6 s so the replay test waits less"""
ETH_P_LLDP = 0x88CC
PACKET_OUTGOING = 4

SEND_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
for frame in sys.argv[2:]:
    s.send(bytes.fromhex(frame))
print("sent", len(sys.argv) - 2)
"""


class LldpController(ControllerProcess):
    """The controller with a config file setting signed discovery on or off, and the
    window."""

    def __init__(self, workdir: Path, *, signed: bool) -> None:
        super().__init__(DIAMOND, workdir, startup_grace_s=5.0)
        self.signed = signed

    def command(self) -> list[str]:
        cfg = self.log_path.parent / "lldp.yaml"
        cfg.write_text(f"network:\n  lldp_auth: {str(self.signed).lower()}\n"
                       f"  lldp_max_age_s: {MAX_AGE_S}\n")
        return [*super().command(), "--config", str(cfg)]


@pytest.fixture(scope="module", params=[True, False], ids=["signed", "unsigned"])
def controller(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[LldpController]:
    ctl = LldpController(tmp_path_factory.mktemp("ctl"), signed=request.param)
    ctl.start()
    yield ctl
    print(f"--- controller log (tail) ---\n{ctl.log_tail(40)}")
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, controller: ControllerProcess) -> Iterator[LabNetwork]:
    net, _ = start_lab(lab_env, load_topology(DIAMOND), controller, timeout_s=60)
    try:
        controller.wait_links_verified(4, timeout_s=30)
        yield net
    finally:
        net.stop()


def api(controller: ControllerProcess, path: str) -> Any:
    r = httpx.get(f"http://127.0.0.1:{controller.api_port}{path}", timeout=10.0)
    r.raise_for_status()
    return r.json() if path != "/metrics" else r.text


def routing_state(controller: ControllerProcess) -> tuple[list[Any], list[Any]]:
    """(intents' id, state, path), links' (a, b, up) - what an accepted forgery would move."""
    intents = [(i["id"], i["state"], i["path"]) for i in api(controller, "/api/v1/intents")]
    links = api(controller, "/api/v1/links")
    rows = links if isinstance(links, list) else links.get("links", [])
    return intents, sorted((lk["a"], lk["b"], lk.get("up", lk.get("usable"))) for lk in rows)


def rejected(controller: ControllerProcess) -> dict[str, float]:
    text = api(controller, "/metrics")
    return {m[1]: float(m[2]) for m in re.finditer(
        r'^cpn_lldp_rejected_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def intf(lab: LabNetwork, node: str, port: int) -> str:
    return str(lab.switch(node).intfs[port].name)


def send_root(ifname: str, frames: list[bytes]) -> None:
    """Write frames into ``ifname`` (root namespace): they leave by its veth peer."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
        s.bind((ifname, 0))
        for frame in frames:
            s.send(frame)


def capture_probe(ifname: str, sender: int, timeout_s: float = 6.0) -> bytes:
    """The next probe of switch ``sender`` arriving at ``ifname`` (off the wire)."""
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_LLDP)) as s:
        s.bind((ifname, 0))
        s.settimeout(0.5)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data, addr = s.recvfrom(2048)
            except TimeoutError:
                continue
            probe = packets.parse_lldp(data)
            if addr[2] != PACKET_OUTGOING and probe is not None and probe.dpid == sender:
                return data
    raise AssertionError(f"no LLDP probe of {sender:#x} seen on {ifname} in {timeout_s} s")


def test_injected_and_replayed_lldp(lab: LabNetwork, controller: LldpController) -> None:
    topo = lab.topology
    wiring = port_plan(topo)
    dpid = {n.name: n.dpid for n in topo.nodes}
    s1_to_s2, s2_to_s1 = wiring.link_ports[0]  # s1-s2
    s1_to_s3, s3_to_s1 = wiring.link_ports[2]  # s1-s3
    assert wiring.link_ends[0] == ("s1", "s2") and wiring.link_ends[2] == ("s1", "s3")
    controller.wait_intent("fast", lambda i: i["state"] == "installed")
    controller.wait_intent("cheap", lambda i: i["state"] == "installed")
    before = routing_state(controller)
    assert rejected(controller).get("unsigned", 0) == 0

    # the lie: "s3's port to s4 is my neighbour", at s1's port to s2 (and h1's own port)
    lie = (dpid["s3"], wiring.link_ports[3][0])
    unsigned = packets.lldp_probe(*lie)
    forged = LldpGuard(LldpAuth(b"\x07" * 32, max_age_s=60)).probe(*lie, time.time())

    if not controller.signed:
        # the attack works without signatures: the frame at s1's trunk port marks s1-s2
        # miswired, taking it down (until s2's next probe sets it right)
        send_root(intf(lab, "s2", s2_to_s1), [unsigned])
        cause = f"lldp at {dpid['s1']:#x}:{s1_to_s2}"
        down = wait_until(lambda: [e for e in api(controller, "/api/v1/events?limit=1000")
                                   if e["kind"] == "link_down" and e["cause"] == cause], 10,
                          "the forged neighbour to take s1-s2 down")
        assert (down[0]["a"], down[0]["b"]) == ("s1", "s2"), down
        assert sum(rejected(controller).values()) == 0
        # s2's next genuine probe sets it right again
        wait_until(lambda: routing_state(controller) == before, 15, "s1-s2 back after the lie")
        return

    # 1. from a host, on its own port
    out = lab.host("h1").cmd(f"{sys.executable} -c '{SEND_SCRIPT}' h1-eth0 "
                             f"{unsigned.hex()} {forged.hex()}")
    assert "sent 2" in out, out
    # 2. on a trunk: written into s2's end of the s1-s2 pair, it arrives at s1's trunk port
    send_root(intf(lab, "s2", s2_to_s1), [unsigned, forged])
    # 3. a real probe of s1, captured where it arrives (s2's end of s1-s2), copied at once
    #    onto s1-s3 (it arrives at s3's trunk port, where it claims s1:1 is s3's neighbour)
    captured = capture_probe(intf(lab, "s2", s2_to_s1), dpid["s1"])
    probe = packets.parse_lldp(captured)
    assert probe is not None and probe.signature is not None
    signed_s = probe.signature.time_ms / 1000
    # the genuine copy reached s2's port first (the cache keeps the first arrival); give its
    # packet-in a moment's head start, well inside the window
    wait_until(lambda: time.time() > signed_s + 0.3, 2, "the genuine probe's packet-in")
    send_root(intf(lab, "s1", s1_to_s3), [captured])

    want = {"host_port": 2, "unsigned": 1, "bad_mac": 1, "replayed": 1}
    wait_until(lambda: all(rejected(controller).get(k, 0) >= n for k, n in want.items()),
               10, "every injected frame counted", detail=lambda: str(rejected(controller)))

    # 4. the captured probe after the window, where it first arrived: stale
    expires = signed_s + MAX_AGE_S + 0.5
    wait_until(lambda: time.time() > expires + 0.2, MAX_AGE_S + 3, "the probe's window over")
    send_root(intf(lab, "s1", s1_to_s2), [captured])
    wait_until(lambda: rejected(controller).get("stale", 0) >= 1, 10, "the replay counted",
               detail=lambda: str(rejected(controller)))

    # nothing moved, and each refusal names its switch and port
    assert routing_state(controller) == before
    report = controller.wait_links_verified(4, timeout_s=10)
    assert report["unexpected"] == [], report
    events = [e for e in api(controller, "/api/v1/events?limit=1000")
              if e["kind"] in ("lldp_rejected", "lldp_unexpected")
              or e["kind"] == "link_down" and str(e.get("cause")).startswith("lldp")]
    assert not [e for e in events if e["kind"] != "lldp_rejected"], events
    seen = {(e["switch"], e["port_no"], e["reason"]) for e in events}
    assert ("s1", wiring.host_port["h1"][1], "host_port") in seen, events
    assert ("s1", s1_to_s2, "unsigned") in seen, events
    assert ("s3", s3_to_s1, "replayed") in seen, events
    counts = rejected(controller)
    assert counts["host_port"] == 2 and counts["unsigned"] == 1 and counts["bad_mac"] == 1
    assert counts["replayed"] == 1 and counts["stale"] == 1, counts


def test_the_secret_is_private(controller: LldpController) -> None:
    path = Path(controller.state_dir) / "lldp-secret"
    if not controller.signed:
        assert not path.exists()  # signing off makes no secret
        return
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32


def test_a_port_the_file_does_not_know(lab: LabNetwork, controller: LldpController) -> None:
    """A veth the test adds to s3 (a port the topology file does not have): a genuine probe
    arriving there (signed with the deployment's secret when signing is on) shows up in the
    link report as unexpected and moves nothing; with signing on, an unsigned one there is
    dropped."""
    topo = lab.topology
    dpid = {n.name: n.dpid for n in topo.nodes}
    bridge = f"lldpx{time.monotonic_ns() % 10**6}a"  # the end on s3
    outside = bridge[:-1] + "b"  # the end the test writes to
    before = routing_state(controller)
    assert run_command(["ip", "link", "add", bridge, "type", "veth", "peer", "name",
                        outside]).returncode == 0
    try:
        for name in (bridge, outside):
            assert run_command(["ip", "link", "set", name, "up"]).returncode == 0
        added = run_command(["ovs-vsctl", "--timeout=5", "add-port",
                             lab.plan.switch("s3"), bridge])
        assert added.returncode == 0, added.stderr
        port = int(run_command(["ovs-vsctl", "--timeout=5", "get", "Interface", bridge,
                                "ofport"]).stdout.strip())
        assert port not in port_plan(topo).ports_of(dpid["s3"])
        guard = LldpGuard(LldpAuth(bytes.fromhex(
            (Path(controller.state_dir) / "lldp-secret").read_text().strip()),
            max_age_s=60) if controller.signed else None)
        before_unsigned = rejected(controller).get("unsigned", 0)

        def unexpected() -> list[Any]:
            send_root(outside, [guard.probe(dpid["s1"], 1, time.time())])
            links = api(controller, "/api/v1/links")["report"]["unexpected"]
            return [u for u in links if (u["dst_dpid"], u["dst_port"]) == (dpid["s3"], port)]

        # the port comes up (port status) and the frame is read: bounded, re-sent each poll
        seen = wait_until(unexpected, 15, "the probe at the added port in the link report",
                          poll_s=0.5)
        assert (seen[0]["src_dpid"], seen[0]["src_port"]) == (dpid["s1"], 1)
        if controller.signed:
            send_root(outside, [packets.lldp_probe(dpid["s1"], 1)])
            wait_until(lambda: rejected(controller).get("unsigned", 0) > before_unsigned, 10,
                       "the unsigned frame at the added port counted")
        assert routing_state(controller) == before
    finally:
        run_command(["ovs-vsctl", "--timeout=5", "--if-exists", "del-port", bridge])
        run_command(["ip", "link", "del", bridge])
