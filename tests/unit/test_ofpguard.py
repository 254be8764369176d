"""The OpenFlow guard's rules on a message header, and its wrapper closing a fake datapath
once (with the reason) on a message that does not parse, without os-ken's hex dump."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from controller.network import ofpguard


@pytest.mark.parametrize(("version", "msg_type", "length", "state", "words"), [
    (4, 10, 3, "main", "shorter than the header"),
    (1, 10, 8, "main", "version 0x1"),
    (4, 200, 12, "main", "type 200"),
    (4, 14, 48, "main", "type 14"),             # FLOW_MOD: only a controller sends it
    (4, 0, 8, "config", "HELLO"),
    (4, 6, 32, "main", "FEATURES_REPLY"),
])
def test_misbehaviour_names_the_reason(version: int, msg_type: int, length: int, state: str,
                                       words: str) -> None:
    reason = ofpguard.misbehaviour(version, msg_type, length, state)
    assert reason is not None and words in reason


@pytest.mark.parametrize(("version", "msg_type", "state"), [
    (5, 0, "handshake"),   # a HELLO offering a later version before negotiation
    (4, 6, "config"),      # the FEATURES_REPLY of the handshake
    (4, 10, "main"), (4, 21, "main"), (4, 19, "main"), (4, 2, "main"), (4, 4, "main"),
])
def test_what_a_switch_sends_passes(version: int, msg_type: int, state: str) -> None:
    assert ofpguard.misbehaviour(version, msg_type, 64, state) is None


class _Datapath:
    state = "main"
    address = ("127.0.0.1", 1)
    id = 0xB00

    def __init__(self) -> None:
        self.closed = 0

    def close(self) -> None:
        self.closed += 1
        self.state = "dead"


def test_wrapper_closes_once_and_keeps_the_log_short(caplog: pytest.LogCaptureFixture) -> None:
    from os_ken.ofproto import ofproto_parser

    seen: list[tuple[Any, str]] = []
    undo = ofpguard.install(lambda dp, reason: seen.append((dp, reason)))
    try:
        dp = _Datapath()
        bad = bytes([4, 10, 0, 8, 0, 0, 0, 0])  # a PACKET_IN of 8 bytes: no body
        with caplog.at_level(logging.DEBUG, logger="os_ken.ofproto.ofproto_parser"):
            assert ofproto_parser.msg(dp, 4, 10, 8, 0, bad) is None
            assert ofproto_parser.msg(dp, 4, 10, 8, 0, bad) is None  # already dead
        assert dp.closed == 1 and len(seen) == 1 and "does not parse" in seen[0][1]
        assert not [r for r in caplog.records if r.name == "os_ken.ofproto.ofproto_parser"]
    finally:
        undo()
    assert ofproto_parser.msg is not None and ofproto_parser.msg.__name__ == "msg"
