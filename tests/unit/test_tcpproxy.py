"""The partition proxy of the tests (tests/tcpproxy.py) against a real echo server on
loopback: bytes pass both ways, pause holds them (connections stay open, new ones are
accepted but reach nothing), resume lets them through, close ends every thread."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator

import pytest
from tcpproxy import TcpProxy
from waiting import wait_until

QUIET_S = 0.5
"""how long a read must stay empty to count as "nothing passed" """


class EchoServer:
    """Echoes every byte back on each connection; counts connections and bytes received."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.received = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _echo(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                self.received += len(data)
                conn.sendall(data)

    def close(self) -> None:
        self._stop.set()
        self.listener.close()
        for t in self._threads:
            t.join(2.0)
        assert not any(t.is_alive() for t in self._threads)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", echo.port)
    yield p
    with contextlib.suppress(RuntimeError):  # a test that closed it already checked it
        p.close()


def _connect(proxy: TcpProxy) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0)
    s.settimeout(5.0)
    return s


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        assert chunk, f"EOF after {len(buf)} of {n} bytes"
        buf += chunk
    return buf


def _nothing_arrives(s: socket.socket) -> bool:
    s.settimeout(QUIET_S)
    try:
        data = s.recv(1)
    except TimeoutError:
        return True
    finally:
        s.settimeout(5.0)
    raise AssertionError(f"read {data!r} while paused (b'' is a close, not a partition)")


def test_bytes_pass_both_ways(proxy: TcpProxy, echo: EchoServer) -> None:
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"
    assert proxy.url("ws") == f"ws://127.0.0.1:{proxy.port}"
    assert proxy.port != echo.port
    with _connect(proxy) as s:
        s.sendall(b"hello")
        assert _recv_exactly(s, 5) == b"hello"
        payload = os.urandom(1 << 20)  # more than any socket buffer: the pumps must loop
        reader = threading.Thread(target=lambda: s.sendall(payload), daemon=True)
        reader.start()
        assert _recv_exactly(s, len(payload)) == payload
        reader.join(5.0)
    assert echo.connections == 1 and echo.received == 5 + len(payload)


def test_pause_holds_bytes_and_new_connections_then_resume_lets_them_through(
        proxy: TcpProxy, echo: EchoServer) -> None:
    with _connect(proxy) as old:
        old.sendall(b"ping")
        assert _recv_exactly(old, 4) == b"ping"
        proxy.pause()
        assert proxy.paused
        old.sendall(b"during")
        assert _nothing_arrives(old)  # not echoed, and not closed either
        new = _connect(proxy)  # accepted by the proxy ...
        with new:
            new.sendall(b"fresh")
            assert _nothing_arrives(new)
            wait_until(lambda: proxy.accepted == 2, 2.0, "the proxy to accept the new one")
            # ... but nothing reached the target: no new connection, no byte
            assert echo.connections == 1 and echo.received == 4
            proxy.resume()
            assert _recv_exactly(old, 6) == b"during"
            assert _recv_exactly(new, 5) == b"fresh"
            assert echo.connections == 2
            old.sendall(b"again")
            assert _recv_exactly(old, 5) == b"again"


def test_half_close_passes_and_the_pair_ends(proxy: TcpProxy) -> None:
    with _connect(proxy) as s:
        s.sendall(b"last words")
        s.shutdown(socket.SHUT_WR)  # the echo server sees EOF, echoes, and closes
        assert _recv_exactly(s, 10) == b"last words"
        assert s.recv(1) == b""
    # the connection's two pump threads end; only the accept thread is left
    wait_until(lambda: len(proxy.threads()) == 1, 2.0, "the connection's threads to end",
               detail=lambda: str([t.name for t in proxy.threads()]))


def test_close_ends_every_thread_and_connection(proxy: TcpProxy) -> None:
    live = _connect(proxy)
    live.sendall(b"x")
    assert _recv_exactly(live, 1) == b"x"
    proxy.pause()
    held = _connect(proxy)  # one held while paused, waiting for the flow
    # accept, the live pair's two pumps, the held one
    wait_until(lambda: len(proxy.threads()) == 4, 2.0, "the held connection's thread",
               detail=lambda: str([t.name for t in proxy.threads()]))
    names = {t.name for t in proxy.threads()}
    assert all(n.startswith(f"tcpproxy-{proxy.port}-") for n in names)
    proxy.close(timeout_s=2.0)
    assert proxy.threads() == []
    assert not any(t.name in names for t in threading.enumerate())
    for s in (live, held):
        with s:
            try:
                assert s.recv(1) == b""  # closed: EOF (or a reset), not a hang
            except ConnectionResetError:
                pass
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", proxy.port), timeout=1.0).close()
