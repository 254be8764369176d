"""A misbehaving OpenFlow 1.3 peer for tests: it speaks the handshake properly (HELLO, then
FEATURES_REPLY to the controller's FEATURES_REQUEST, answering echo requests), then sends what
a test asks for - malformed, oversized, truncated-length, unknown-type or out-of-order
messages - or stops answering echo requests. Hand-packed bytes (``struct``), no os-ken, so a
message can be as wrong as a test wants.

``BadSwitch(port, dpid).handshake()`` then ``send(...)``; ``wait_closed(timeout_s)`` is True
once the controller has closed the connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

OFP_VERSION = 0x04
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_FEATURES_REQUEST, OFPT_FEATURES_REPLY = 5, 6
OFPT_PACKET_IN, OFPT_PORT_STATUS = 10, 12
OFPT_MULTIPART_REQUEST, OFPT_MULTIPART_REPLY, OFPT_BARRIER_REPLY = 18, 19, 21
OFPMP_PORT_DESC = 13
HEADER = struct.Struct("!BBHI")


def message(msg_type: int, body: bytes = b"", xid: int = 0, *, length: int | None = None,
            version: int = OFP_VERSION) -> bytes:
    """An OpenFlow message; ``length`` overrides the header's length field (a lie)."""
    size = HEADER.size + len(body) if length is None else length
    return HEADER.pack(version, msg_type, size, xid) + body


def features_reply(dpid: int, xid: int) -> bytes:
    # datapath_id, n_buffers, n_tables, auxiliary_id, pad(2), capabilities, reserved
    return message(OFPT_FEATURES_REPLY, struct.pack("!QIBB2xII", dpid, 256, 254, 0, 0x4F, 0),
                   xid)


def packet_in(frame: bytes, in_port: int = 1, *, match_length: int | None = None) -> bytes:
    """A PACKET_IN with an OXM match holding in_port (``match_length`` lies if given)."""
    oxm = struct.pack("!HBBI", 0x8000, 0 << 1, 4, in_port)  # OFPXMC_OPENFLOW_BASIC, IN_PORT
    length = 4 + len(oxm) if match_length is None else match_length
    match = struct.pack("!HH", 1, length) + oxm
    match += b"\x00" * (-len(match) % 8)
    body = struct.pack("!IHBBQ", 0xFFFFFFFF, len(frame), 0, 0, 0) + match + b"\x00\x00" + frame
    return message(OFPT_PACKET_IN, body)


class BadSwitch:
    """One TCP connection to the controller at ``127.0.0.1:port`` claiming ``dpid``."""

    def __init__(self, port: int, dpid: int, *, timeout_s: float = 5.0) -> None:
        self.dpid = dpid
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.buf = b""
        self.answer_echo = True
        self.received: list[int] = []
        """types of the messages read from the controller, in order"""

    def _read_message(self, deadline: float) -> tuple[int, int, bytes] | None:
        """The next whole message (type, xid, body), or None when the connection is closed.
        Raises TimeoutError past ``deadline``."""
        while True:
            if len(self.buf) >= HEADER.size:
                _, msg_type, length, xid = HEADER.unpack_from(self.buf)
                length = max(length, HEADER.size)
                if len(self.buf) >= length:
                    body, self.buf = self.buf[HEADER.size:length], self.buf[length:]
                    self.received.append(msg_type)
                    return msg_type, xid, body
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the controller in time")
            self.sock.settimeout(min(left, 1.0))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            self.buf += chunk

    def pump(self, duration_s: float) -> bool:
        """Read (answering echo requests unless told not to) for ``duration_s`` seconds;
        False once the controller closed the connection."""
        deadline = time.monotonic() + duration_s
        while time.monotonic() < deadline:
            try:
                got = self._read_message(deadline)
            except TimeoutError:
                return True
            if got is None:
                return False
            msg_type, xid, body = got
            if msg_type == OFPT_ECHO_REQUEST and self.answer_echo:
                self.send(message(OFPT_ECHO_REPLY, body, xid))
        return True

    def handshake(self, timeout_s: float = 10.0) -> None:
        """HELLO both ways, FEATURES_REPLY to the FEATURES_REQUEST, an empty port list to
        the PORT_DESC request: the controller now holds a datapath for ``dpid`` (os-ken's
        MAIN state)."""
        self.send(message(OFPT_HELLO))
        deadline = time.monotonic() + timeout_s
        while True:
            got = self._read_message(deadline)
            if got is None:
                raise ConnectionError(f"controller closed the handshake (got {self.received})")
            msg_type, xid, body = got
            if msg_type == OFPT_FEATURES_REQUEST:
                self.send(features_reply(self.dpid, xid))
            elif msg_type == OFPT_MULTIPART_REQUEST and body[:2] == b"\x00\x0d":
                self.send(message(OFPT_MULTIPART_REPLY, struct.pack("!HH4x", OFPMP_PORT_DESC, 0),
                                  xid))
                return
            if msg_type == OFPT_ECHO_REQUEST:
                self.send(message(OFPT_ECHO_REPLY, body, xid))

    def send(self, data: bytes) -> None:
        with contextlib.suppress(OSError):  # the controller may have closed it already
            self.sock.sendall(data)

    def wait_closed(self, timeout_s: float) -> bool:
        """True once the controller closed the connection within ``timeout_s``."""
        return not self.pump(timeout_s)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
