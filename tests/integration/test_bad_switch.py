"""A misbehaving OpenFlow peer is disconnected, and the controller keeps serving the real
switches and the REST API.

The controller runs as a process (echo requests every second, two unanswered ones end a
connection) with the triangle lab on real Open vSwitch. Fake peers (``tests/badswitch.py``)
complete the handshake properly, then each does one wrong thing at the same time as the
others: a PACKET_IN whose match overruns the message, a length field shorter than the header,
a 64 KiB message that does not parse, an unknown message type, a FLOW_MOD (a message only a
controller sends), a second HELLO and a second FEATURES_REPLY after the handshake, a message
of another OpenFlow version, a message announced longer than what follows, and a peer that
stops answering echo requests. Every one is disconnected within a bound; the protocol
violations are ``switch_misbehaved`` events naming the reason; meanwhile the three real
switches stay connected and synced, pings between their hosts are all answered, and the API
answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from badswitch import (
    OFPT_BARRIER_REPLY,
    OFPT_HELLO,
    OFPT_PACKET_IN,
    BadSwitch,
    features_reply,
    message,
    packet_in,
)
from harness import controller_and_lab, fast_ping, ping_result

from controller.topology.files import topology_file

TRIANGLE = topology_file("triangle")
CLOSE_BOUND_S = 8.0
"""a protocol violation closes at once; a silent peer after 2 unanswered echo requests 1 s
apart (about 3 s), with slack for a loaded machine"""

VIOLATIONS: dict[str, Callable[[int], bytes]] = {
    "malformed": lambda d: packet_in(b"\x00" * 20, match_length=200),
    "truncated_length": lambda d: message(OFPT_PACKET_IN, b"", length=3),
    "oversized": lambda d: message(OFPT_PACKET_IN, b"\xff" * 65527),
    "unknown_type": lambda d: message(200, b"abcd"),
    "flow_mod": lambda d: message(14, b"\x00" * 40),
    "hello_again": lambda d: message(OFPT_HELLO),
    "features_again": lambda d: features_reply(d, 7),
    "other_version": lambda d: message(OFPT_PACKET_IN, b"", version=1),
}
REASONS = {
    "malformed": "does not parse", "truncated_length": "shorter than the header",
    "oversized": "does not parse", "unknown_type": "type 200",
    "flow_mod": "type 14", "hello_again": "after the handshake",
    "features_again": "after the handshake", "other_version": "version 0x1",
}
SILENT = {
    # announced as 2,000 bytes, then nothing: the echo replies are read as its body
    "stalled_message": lambda d: message(OFPT_PACKET_IN, b"", length=2000),
    "never_answers_echo": None,
}


def _misbehave(port: int, dpid: int, name: str, send: Callable[[int], bytes] | None
               ) -> tuple[str, bool, float]:
    peer = BadSwitch(port, dpid)
    try:
        peer.handshake()
        peer.pump(0.5)  # the controller holds the datapath, answered echo requests included
        if send is None:
            peer.answer_echo = False
        else:
            peer.send(send(dpid))
        t0 = time.monotonic()
        closed = peer.wait_closed(CLOSE_BOUND_S)
        return name, closed, time.monotonic() - t0
    finally:
        peer.close()


def test_misbehaving_peers_are_disconnected_and_real_switches_kept(
        lab_env: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPN_OPENFLOW_ECHO_INTERVAL_S", "1")
    monkeypatch.setenv("CPN_OPENFLOW_ECHO_MISSES", "2")
    with controller_and_lab(lab_env, TRIANGLE, tmp_path, startup_grace_s=2.0,
                            lab_timeout_s=60.0, synced_timeout_s=30.0) as (ctl, lab):
        api = f"http://127.0.0.1:{ctl.api_port}/api/v1"
        ping = fast_ping(lab, "h-s1", "h-s3", count=300)  # 3 s across the attack
        cases = {**VIOLATIONS, **SILENT}
        with ThreadPoolExecutor(len(cases)) as pool:
            futures = [pool.submit(_misbehave, ctl.port, 0xB00 + i, name, send)
                       for i, (name, send) in enumerate(cases.items())]
            # the API answers while the peers misbehave
            health = httpx.get(f"{api}/health", timeout=5.0)
            assert health.status_code == 200, health.text
            results = [f.result(timeout=CLOSE_BOUND_S + 20) for f in futures]
        for name, closed, after_s in results:
            assert closed, f"{name}: still connected {after_s:.1f} s after misbehaving"
            if name in VIOLATIONS:
                assert after_s < 2.0, f"{name}: closed only after {after_s:.1f} s"

        sent, received, text = ping_result(ping, timeout_s=20.0)
        assert sent == 300 and received == sent, text
        health = httpx.get(f"{api}/health", timeout=5.0).json()
        assert health["switches_synced"] == 3, health
        events = httpx.get(f"{api}/events", params={"limit": 1000}, timeout=5.0).json()
        misbehaved = {e["dpid"]: e["reason"] for e in events
                      if e.get("kind") == "switch_misbehaved"}
        for i, name in enumerate(cases):
            if name in VIOLATIONS:
                assert REASONS[name] in misbehaved.get(0xB00 + i, ""), (name, misbehaved)
        # a late reply nobody asked for is tolerated: the peer stays
        late = BadSwitch(ctl.port, 0xBFF)
        try:
            late.handshake()
            late.send(message(OFPT_BARRIER_REPLY, b"", 12345))
            assert not late.wait_closed(1.5), "a stray barrier reply closed the connection"
        finally:
            late.close()
