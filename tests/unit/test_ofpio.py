"""Every OpenFlow connection in one thread (``controller/network/ofpio.py``): the controller,
run as ``cpn-controller`` runs it, keeps the same number of OS threads with 52 switches
connected as with none, completes each switch's handshake, reads its flow table, answers its
echo requests, closes a connection whose peer stops answering echoes and probes none that
keeps talking; the switches are fake OpenFlow peers on real loopback sockets
(``tests/badswitch.py``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from badswitch import OFPT_ECHO_REQUEST, OFPT_MULTIPART_REQUEST, BadSwitch, message
from waiting import tcp_listening, wait_until

from controller.topology.files import load_topology_argument, topology_file
from controller.topology.wiring import port_plan

REPO = Path(__file__).resolve().parents[2]
NATIONAL = topology_file("national")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    ofp, api = _free_port(), _free_port()
    config = tmp_path / "controller.yaml"
    config.write_text("openflow:\n  echo_interval_s: 0.5\n  echo_misses: 2\n")
    env = {k: v for k, v in os.environ.items() if k != "CPN_API_TOKEN"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.main", "--topology", str(NATIONAL),
         "--config", str(config), "--ofp-port", str(ofp), "--api-port", str(api),
         "--state-dir", str(tmp_path / "state"), "--log-file", str(tmp_path / "log")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: httpx.get(f"http://127.0.0.1:{api}/api/v1/health",
                                     timeout=2).status_code == 200, 30, "the controller's API",
                   ignore=(httpx.HTTPError,), poll_s=0.1)
        # os-ken opens the OpenFlow listener in a thread of its own, after the API; these
        # fake switches, unlike Open vSwitch, do not retry a refused connection
        wait_until(lambda: tcp_listening(ofp), 10, "the controller's OpenFlow listener",
                   poll_s=0.05)
        yield proc, ofp, api
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_every_switch_connection_is_served_by_one_thread(
        controller: tuple[subprocess.Popen[bytes], int, int]) -> None:
    proc, ofp, api = controller
    dpids = sorted(port_plan(load_topology_argument(str(NATIONAL))).dpid_node)
    assert len(dpids) == 52
    idle = _threads(proc.pid)
    peers = [BadSwitch(ofp, dpid) for dpid in dpids]
    pool = ThreadPoolExecutor(max_workers=len(peers))  # the peers answer at the same time
    try:
        list(pool.map(lambda p: p.handshake(), peers))
        # each is read (its flow table requested) and sent echo requests it answers
        alive = list(pool.map(lambda p: p.pump(1.2), peers))
        assert all(alive), [p.dpid for p, ok in zip(peers, alive, strict=True) if not ok]
        assert all(OFPT_MULTIPART_REQUEST in p.received for p in peers)
        assert all(OFPT_ECHO_REQUEST in p.received for p in peers)
        connected = [s for s in httpx.get(f"http://127.0.0.1:{api}/api/v1/switches",
                                          timeout=10).json() if s["connected"]]
        assert len(connected) == 52
        # the same threads as with no switch at all (os-ken's hub: 2-3 more per switch)
        assert _threads(proc.pid) <= idle + 2, (idle, _threads(proc.pid))
        # a peer that stops answering echo requests is closed; the others stay
        quiet = peers[0]
        quiet.answer_echo = False
        closed = pool.submit(quiet.wait_closed, 5.0)
        assert all(pool.map(lambda p: p.pump(2.0), peers[1:]))
        assert closed.result()
        wait_until(lambda: not next(
            s for s in httpx.get(f"http://127.0.0.1:{api}/api/v1/switches", timeout=10).json()
            if s["dpid"] == dpids[0])["connected"], 5, "the quiet switch lost")
        # a peer that keeps sending is alive: it is not probed (nor closed for leaving
        # probes unanswered) while it talks, as Open vSwitch probes only an idle connection
        chatty = peers[1]
        chatty.answer_echo = False
        chatty.received.clear()
        # 3 s: six echo rounds of 0.5 s, two misses allowed; a message every 0.1 s leaves
        # each round several, so only a stall of the test's process of over 0.4 s could make
        # a round look idle (every 0.2 s, a loaded machine once saw a second probe)
        for _ in range(30):
            chatty.send(message(OFPT_ECHO_REQUEST, b"", 7))
            assert chatty.pump(0.1), "a peer that talks was closed"
        assert chatty.received.count(OFPT_ECHO_REQUEST) <= 1, chatty.received
    finally:
        for peer in peers:
            peer.close()
        pool.shutdown()


def test_only_a_bundles_open_and_commit_replies_are_dropped_unparsed() -> None:
    """The reader drops the replies to a bundle's open and commit (two per switch and phase)
    without parsing them; every other message, experimenter or not, is parsed and
    dispatched."""
    from os_ken.ofproto import ofproto_v1_3 as ofp

    from controller.network import openflow
    from controller.network.ofpio import is_bundle_reply

    def judged(wire: bytes, at: int = 0) -> bool:
        framed = b"\x00" * at + wire
        return is_bundle_reply(framed, at, len(wire))

    for kind in (ofp.ONF_BCT_OPEN_REPLY, ofp.ONF_BCT_COMMIT_REPLY):
        assert judged(openflow.bundle_control(7, kind, 9))
        assert judged(openflow.bundle_control(7, kind, 9), at=13)
    for kind in (ofp.ONF_BCT_OPEN_REQUEST, ofp.ONF_BCT_COMMIT_REQUEST, ofp.ONF_BCT_CLOSE_REPLY,
                 ofp.ONF_BCT_DISCARD_REPLY):
        assert not judged(openflow.bundle_control(7, kind, 9))
    add = openflow.bundle_add(7, message(OFPT_ECHO_REQUEST, b"", 3))
    assert not judged(add)  # a bundle-add, not a bundle control
    other = bytearray(openflow.bundle_control(7, ofp.ONF_BCT_COMMIT_REPLY, 9))
    other[8:12] = (0x00002320).to_bytes(4, "big")  # Nicira's experimenter id
    assert not judged(bytes(other))
    assert not judged(openflow.bundle_control(7, ofp.ONF_BCT_COMMIT_REPLY, 9)[:20])
