"""A TCP proxy on loopback that a test can cut like a network partition.

``TcpProxy(host, port)`` listens on 127.0.0.1 (a free port) and forwards every connection to
``host:port``, both ways, in threads. :meth:`TcpProxy.pause` stops the flow without resetting
anything: open connections stay open but no byte passes either way (what was sent waits in
the proxy or in the kernel's buffers), and new connections are accepted but not forwarded
(the upstream connection is made only once the flow resumes). :meth:`TcpProxy.resume` lets
everything that waited through; :meth:`TcpProxy.close` ends every connection and thread,
with bounded joins.

``tests/`` is on ``sys.path``, so a test imports it as ``from tcpproxy import TcpProxy``.
"""

from __future__ import annotations

import contextlib
import itertools
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

__all__ = ["TcpProxy"]

_POLL_S = 0.05
"""how often a blocked thread looks whether the proxy closed (bounds close())"""
_CHUNK = 65536


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_host``:``target_port`` (see the module
    docstring). Thread names start with ``tcpproxy-<port>``."""

    def __init__(self, target_host: str, target_port: int, *,
                 connect_timeout_s: float = 5.0) -> None:
        self.target = (target_host, target_port)
        self.connect_timeout_s = connect_timeout_s
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._ids = itertools.count(1)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0
        """connections accepted so far (forwarded or waiting)"""
        self._spawn(self._accept_loop, "accept")

    # --- the test's controls --------------------------------------------------------------

    def url(self, scheme: str = "http") -> str:
        """``scheme://127.0.0.1:port``: where clients reach the target through the proxy."""
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def paused(self) -> bool:
        return not self._flowing.is_set()

    def pause(self) -> None:
        """Stop forwarding, as a partition would: nothing is closed or reset. (A chunk
        already being written when this is called still arrives, like a packet in flight.)"""
        self._flowing.clear()

    def resume(self) -> None:
        """Forward again: bytes and connections held while paused go through now."""
        self._flowing.set()

    def close(self, timeout_s: float = 5.0) -> None:
        """Close the listener and every connection, and join every thread (at most
        ``timeout_s`` in all). Raises RuntimeError naming threads still running after it."""
        self._closed.set()
        self._flowing.set()  # wake threads waiting for the flow: they see the close
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for s in [self._listener, *sockets]:
            with contextlib.suppress(OSError):
                s.close()
        deadline = time.monotonic() + timeout_s
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            if t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"tcpproxy threads still running after {timeout_s:g} s: {alive}")

    def threads(self) -> list[threading.Thread]:
        """The proxy's threads that are still running."""
        with self._lock:
            return [t for t in self._threads if t.is_alive()]

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- the threads ----------------------------------------------------------------------

    def _spawn(self, target: Callable[..., None], what: str, *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True,
                             name=f"tcpproxy-{self.port}-{what}")
        with self._lock:
            self._threads = [x for x in self._threads if x.is_alive()]
            self._threads.append(t)
        t.start()

    def _keep(self, s: socket.socket) -> bool:
        """Track a socket for close(); False (and the socket closed) when already closed."""
        with self._lock:
            if self._closed.is_set():
                s.close()
                return False
            self._sockets.add(s)
            return True

    def _drop(self, *socks: socket.socket) -> None:
        """Shut down and close: shutdown wakes a thread blocked in recv or send on the
        socket, which a close from another thread would not."""
        with self._lock:
            for s in socks:
                self._sockets.discard(s)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def _wait_flowing(self) -> bool:
        """Block while paused; False once the proxy is closed."""
        while not self._flowing.wait(_POLL_S):
            pass
        return not self._closed.is_set()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # the listener was closed
            client.setblocking(True)
            if not self._keep(client):
                return
            self.accepted += 1
            self._spawn(self._connect, f"conn{next(self._ids)}", client)

    def _connect(self, client: socket.socket) -> None:
        # a connection accepted while paused is held here: nothing reaches the target
        if not self._wait_flowing():
            return
        try:
            upstream = socket.create_connection(self.target, timeout=self.connect_timeout_s)
        except OSError:
            self._drop(client)
            return
        upstream.settimeout(None)
        if not self._keep(upstream):
            self._drop(client)
            return
        pair = _Pair(client, upstream)
        name = threading.current_thread().name.rsplit("-", 1)[-1]
        self._spawn(self._pump, f"{name}-up", client, upstream, pair)
        self._pump(upstream, client, pair)  # this thread carries the answers back

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair) -> None:
        """Copy ``src`` to ``dst`` until EOF (passed on as a half-close), an error (ends
        both directions) or the close. Nothing is read while paused, so what the peer sends
        then waits in the kernel's buffers."""
        clean = False
        try:
            while self._wait_flowing():
                try:
                    ready, _, _ = select.select([src], [], [], _POLL_S)
                except (OSError, ValueError):
                    return  # closed under us
                if not ready or not self._flowing.is_set():
                    continue  # paused while select waited: read nothing
                try:
                    data = src.recv(_CHUNK)
                except OSError:
                    return
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    clean = True
                    return
                # paused between the read and the send: hold the bytes until resumed
                if not self._wait_flowing():
                    return
                try:
                    dst.sendall(data)
                except OSError:
                    return
        finally:
            if not clean or pair.finished():
                self._drop(pair.client, pair.upstream)


class _Pair:
    """The two sockets of one forwarded connection and how many directions still run."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self._running = 2
        self._lock = threading.Lock()

    def finished(self) -> bool:
        """One direction ended; True when it was the last."""
        with self._lock:
            self._running -= 1
            return self._running == 0
