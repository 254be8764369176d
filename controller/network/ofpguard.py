"""Misbehaving OpenFlow peers are disconnected.

os-ken reads each message a switch sends and, when one does not parse, logs it (with a hex
dump of up to 64 KiB) and goes on reading; a message of an unknown type, a length field
shorter than the header, a second HELLO or FEATURES_REPLY after the handshake, or a message
a switch never sends (a FLOW_MOD, a PACKET_OUT) is read past the same way. A peer that does
any of this is not a switch to trust with the network: :func:`install` wraps os-ken's
message parser so that the first such message closes the connection (os-ken's DEAD state:
the app forgets the datapath as for any lost switch) and is reported once through
``on_misbehaved(datapath, reason)`` (the service records a ``switch_misbehaved`` event).
A peer that stops answering echo requests is closed by os-ken's own echo loop
(``--maximum-unreplied-echo-requests``, set from the openflow settings).

Replies nobody asked for (a barrier or multipart reply with an unknown xid) are tolerated: a
late reply after a timeout is normal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["SWITCH_MESSAGE_TYPES", "install", "misbehaviour"]

log = logging.getLogger("controller.network.ofpguard")

OFP13_VERSION = 0x04
OFP_HEADER_BYTES = 8
# OpenFlow 1.3 messages a switch sends (symmetric ones included): HELLO, ERROR, ECHO_REQUEST,
# ECHO_REPLY, EXPERIMENTER, FEATURES_REPLY, GET_CONFIG_REPLY, PACKET_IN, FLOW_REMOVED,
# PORT_STATUS, MULTIPART_REPLY, BARRIER_REPLY, QUEUE_GET_CONFIG_REPLY, ROLE_REPLY,
# GET_ASYNC_REPLY
SWITCH_MESSAGE_TYPES = frozenset({0, 1, 2, 3, 4, 6, 8, 10, 11, 12, 19, 21, 23, 25, 27})


def misbehaviour(version: int, msg_type: int, msg_len: int, state: str) -> str | None:
    """Why a message's header alone makes its sender a misbehaving peer, or None. ``state``:
    os-ken's state of the connection (``handshake`` until HELLO, ``config`` until the
    switch described its ports, then ``main``)."""
    if msg_len < OFP_HEADER_BYTES:
        return f"length field {msg_len} shorter than the header"
    if state != "handshake" and version != OFP13_VERSION:
        return f"version {version:#x} after OpenFlow 1.3 was agreed"
    if msg_type not in SWITCH_MESSAGE_TYPES:
        return f"message type {msg_type}, which a switch does not send"
    if (msg_type == 0 and state != "handshake") or (msg_type == 6 and state == "main"):
        return f"message type {msg_type} ({'HELLO' if msg_type == 0 else 'FEATURES_REPLY'}) " \
               "after the handshake"
    return None


def install(on_misbehaved: Callable[[Any, str], None]) -> Callable[[], None]:
    """From now on os-ken's parser closes connections of misbehaving peers (os-ken reads
    switches in every thread of the process through one module function). Returns the undo
    (tests)."""
    from os_ken.controller import handler
    from os_ken.ofproto import ofproto_parser

    original = ofproto_parser.msg
    parser_log = logging.getLogger("os_ken.ofproto.ofproto_parser")

    def guarded(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int,
                buf: bytes) -> Any:
        # os-ken reads a length field below the header's 8 bytes as 8: the declared one
        declared = int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else msg_len
        reason = misbehaviour(version, msg_type, declared, str(datapath.state))
        msg = None
        if reason is None:
            # os-ken logs a parse failure with a hex dump of the whole message: one line of
            # ours instead (a peer could fill the log with 64 KiB dumps)
            previous = parser_log.disabled
            parser_log.disabled = True
            try:
                msg = original(datapath, version, msg_type, msg_len, xid, buf)
            except Exception as exc:  # noqa: BLE001 - a peer's bytes must not end the loop
                reason = f"message type {msg_type} does not parse ({type(exc).__name__})"
            finally:
                parser_log.disabled = previous
            if msg is None and reason is None:
                reason = f"message type {msg_type} ({msg_len} bytes) does not parse"
        if reason is None:
            return msg
        if datapath.state != handler.DEAD_DISPATCHER:
            on_misbehaved(datapath, reason)
            datapath.close()
        return None

    ofproto_parser.msg = guarded

    def undo() -> None:
        ofproto_parser.msg = original

    return undo
