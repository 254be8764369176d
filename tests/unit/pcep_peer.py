"""A PCC for tests: a blocking PCEP client over a real TCP socket that can also misbehave
(raw bytes, wrong lengths, unknown classes, floods). Each peer binds its own loopback source
address (127.0.0.x), as a router would have its own."""

from __future__ import annotations

import socket
import struct
import time

from controller.pce import codec
from controller.pce.codec import (
    Bandwidth,
    EndPoints,
    Message,
    MessageType,
    Metric,
    MetricType,
    ObjectiveFunction,
    Open,
    PcepObject,
    Rp,
)


class FakePcc:
    def __init__(self, port: int, source: str = "127.0.0.2", host: str = "127.0.0.1",
                 timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s,
                                             source_address=(source, 0))
        self.sock.settimeout(timeout_s)
        self.source = source
        self.next_request = 1

    def close(self) -> None:
        self.sock.close()

    # raw -------------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, msg_type: int, objects: list[PcepObject]) -> None:
        self.sock.sendall(codec.encode_message(msg_type, objects))

    def _read(self, n: int) -> bytes | None:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, TimeoutError):
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def recv(self) -> Message | None:
        """The next message, or None when the PCE closed the connection (or timed out)."""
        header = self._read(4)
        if header is None:
            return None
        length = struct.unpack("!H", header[2:4])[0]
        rest = self._read(length - 4)
        if rest is None:
            return None
        return codec.decode_message(header + rest)

    def recv_type(self, msg_type: int, limit: int = 50) -> Message:
        """The next message of ``msg_type``, skipping keepalives; AssertionError otherwise."""
        for _ in range(limit):
            msg = self.recv()
            assert msg is not None, f"connection closed while waiting for message {msg_type}"
            if msg.type == MessageType.KEEPALIVE and msg_type != MessageType.KEEPALIVE:
                continue
            assert msg.type == msg_type, f"got {msg.type} {msg.objects}, wanted {msg_type}"
            return msg
        raise AssertionError(f"no message {msg_type} in {limit}")

    def closed_with(self) -> int | None:
        """Read until the PCE closes; the reason of its Close message, if it sent one."""
        reason = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = self.recv()
            if msg is None:
                return reason
            if msg.type == MessageType.CLOSE:
                reason = int(msg.objects[0].reason)  # type: ignore[attr-defined]
        raise AssertionError("the PCE did not close the session")

    # the session -------------------------------------------------------------------------------
    def open(self, *, msd: int = 8, stateful_flags: int = codec.STATEFUL_U | codec.STATEFUL_I,
             keepalive_s: int = 30, dead_timer_s: int = 120) -> Open:
        pce_open = self.recv_type(MessageType.OPEN).objects[0]
        assert isinstance(pce_open, Open)
        self.send(MessageType.OPEN, [Open(keepalive_s=keepalive_s, dead_timer_s=dead_timer_s,
                                          session_id=1, stateful_flags=stateful_flags,
                                          sr_msd=msd)])
        self.recv_type(MessageType.KEEPALIVE)
        self.send(MessageType.KEEPALIVE, [])
        return pce_open

    def request_objects(self, src: str, dst: str, *, bound_ms: float | None = None,
                        bandwidth_mbps: float = 0.0) -> list[PcepObject]:
        objs: list[PcepObject] = [Rp(request_id=self.next_request),
                                  EndPoints(source=src, destination=dst)]
        self.next_request += 1
        if bandwidth_mbps:
            objs.append(Bandwidth(bytes_per_s=bandwidth_mbps * 1e6 / 8))
        if bound_ms is not None:
            objs.append(Metric(metric_type=MetricType.PATH_DELAY, value=bound_ms * 1000,
                               bound=True))
        objs.append(ObjectiveFunction(code=1))
        return objs

    def request(self, src: str, dst: str, **kw: float) -> Message:
        self.send(MessageType.PCREQ, self.request_objects(src, dst, **kw))
        return self.recv_type(MessageType.PCREP)
