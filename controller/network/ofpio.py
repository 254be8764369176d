"""Every OpenFlow connection in one thread: a selector loop in place of os-ken's threads.

os-ken's native hub serves each switch with threads of its own: one reads the socket (and
runs the handshake handlers), one writes it from a queue of 16 buffers, one sends echo
requests. That is two to three OS threads per switch (486 for the 754 switches of the Kdl
map), each with its stack, and a thread switch per message. :func:`install` replaces
os-ken's listener with :class:`SelectorServer`, which runs in the thread os-ken starts for
its listener anyway and does all of it there, for every switch:

- accepts connections, makes each an os-ken ``Datapath`` (the apps see the same objects and
  events as before) and says HELLO;
- reads every readable socket and parses its messages exactly as os-ken's ``_recv_loop``
  does (``ofproto_parser.msg``, so :mod:`.ofpguard` still closes misbehaving peers; events
  to the observing apps, os-ken's own handshake handlers called in place), but for the
  replies to a bundle's open and commit, which nobody waits for and are dropped unparsed;
- writes what the apps send: ``Datapath.send`` appends to the connection's buffer and writes
  at once what the socket takes, from the calling thread; the rest is written by the loop
  when the socket is writable again. A switch that stops reading while more than
  :data:`MAX_BUFFERED_BYTES` wait for it is disconnected (it would hold them for ever);
- every ``echo_request_interval`` sends an echo request to each connection that sent no whole
  message since the last round, and closes a connection with more than
  ``maximum_unreplied_echo_requests`` unanswered, as os-ken's echo loop does. A connection that
  sent a message is alive, and its count of unanswered requests starts again (as Open vSwitch's
  inactivity probe, which probes only an idle connection): on a map of 754 switches that
  are sending packet-ins and statistics anyway, that is 150 echo requests a second fewer for
  the switches to answer.

A connection that ends (EOF, an error, or closed by the app, the guard or the echo check) is
closed as os-ken closes it: ``is_active`` False, then ``Datapath.close`` (the DEAD event).
OpenFlow over TLS keeps its own listener (:mod:`.ofptls`, a thread per connection).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

from os_ken.ofproto import ofproto_common
from os_ken.ofproto import ofproto_v1_3 as ofp

__all__ = ["MAX_BUFFERED_BYTES", "SelectorServer", "install", "is_bundle_reply"]

log = logging.getLogger("controller.network.ofpio")

OFPT_EXPERIMENTER = ofp.OFPT_EXPERIMENTER
_BUNDLE_REPLY_HEAD = struct.pack("!II", ofproto_common.ONF_EXPERIMENTER_ID,
                                 ofp.ONF_ET_BUNDLE_CONTROL)
_BUNDLE_REPLIES = frozenset((ofp.ONF_BCT_OPEN_REPLY, ofp.ONF_BCT_COMMIT_REPLY))


def is_bundle_reply(buf: bytes | bytearray, pos: int, msg_len: int) -> bool:
    """Whether the message at ``pos`` of ``buf`` (an OpenFlow experimenter message of
    ``msg_len`` bytes) is an ONF bundle-control open or commit reply."""
    return (msg_len >= 24 and buf[pos + 8:pos + 16] == _BUNDLE_REPLY_HEAD
            and int.from_bytes(buf[pos + 20:pos + 22], "big") in _BUNDLE_REPLIES)


MAX_BUFFERED_BYTES = 256 * 1024 * 1024
"""Bytes waiting for one switch beyond which it is disconnected (it does not read)."""
READ_BYTES = 256 * 1024
OFP_HEADER_BYTES = 8


class _Conn:
    """One switch connection's write side (its lock guards ``out`` and the socket's writes)."""

    __slots__ = ("close_after", "closed", "heard", "lock", "out")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.out = bytearray()
        self.closed = False
        self.close_after = False
        self.heard = False
        """the peer sent a whole message since the last echo round (the loop's thread only)"""


class SelectorServer:
    """Serves every switch connection of ``listener`` from the calling thread (see the module
    docstring). :meth:`serve` returns once the listener is shut and every connection ended."""

    def __init__(self, listener: socket.socket) -> None:
        from os_ken import cfg
        self._listener = listener
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._conns: dict[int, tuple[Any, _Conn, bytearray]] = {}
        """fileno -> (datapath, write side, bytes read and not parsed yet)"""
        self._want_write: set[int] = set()
        self._want_lock = threading.Lock()
        self._echo_interval_s = float(cfg.CONF.echo_request_interval)
        self._echo_misses = int(cfg.CONF.maximum_unreplied_echo_requests)

    # -- the loop ---------------------------------------------------------------------------------
    def serve(self) -> None:
        self._listener.setblocking(False)
        self._sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        listening = True
        next_echo = time.monotonic() + self._echo_interval_s
        try:
            while listening or self._conns:
                timeout = max(0.0, next_echo - time.monotonic()) if self._echo_misses else None
                for key, events in self._sel.select(timeout):
                    if key.data == "accept":
                        listening = self._accept()
                    elif key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    else:
                        fd = key.fd
                        if events & selectors.EVENT_WRITE:
                            self._flush(fd)
                        if events & selectors.EVENT_READ and fd in self._conns:
                            try:
                                self._read(fd)
                            except Exception:  # noqa: BLE001 - one switch, not all of them
                                log.exception("reading a switch connection failed; closing "
                                              "it", extra={"event": "ofp_read_failed"})
                                self._end(fd)
                self._update_writers()
                if self._echo_misses and time.monotonic() >= next_echo:
                    next_echo = time.monotonic() + self._echo_interval_s
                    self._echo()
        finally:
            for fd in list(self._conns):
                self._end(fd)
            self._sel.close()
            self._wake_r.close()
            self._wake_w.close()

    def _accept(self) -> bool:
        """Accept every waiting connection; False once the listener is shut."""
        from os_ken.controller.controller import Datapath
        for _ in range(64):  # bounded: the rest on the next round
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                self._sel.unregister(self._listener)
                return False
            conn = _Conn()
            try:
                dp = _datapath(Datapath, sock, addr, conn, self)
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            self._conns[sock.fileno()] = (dp, conn, bytearray())
            self._sel.register(sock, selectors.EVENT_READ, "conn")
            dp.send_msg(dp.ofproto_parser.OFPHello(dp))
        return True

    def _read(self, fd: int) -> None:
        from os_ken.controller import handler, ofp_event
        from os_ken.ofproto import ofproto_parser
        dp, conn, buf = self._conns[fd]
        try:
            data = dp.socket.recv(READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._end(fd)
            return
        buf += data
        pos, size = 0, len(buf)
        brick = dp.ofp_brick
        while size - pos >= OFP_HEADER_BYTES and dp.state != handler.DEAD_DISPATCHER:
            version, msg_type, msg_len, xid = ofproto_parser.header(buf[pos:pos + 8])
            if msg_len < OFP_HEADER_BYTES:
                msg_len = OFP_HEADER_BYTES  # as os-ken reads it (the guard closes the peer)
            if size - pos < msg_len:
                break
            if msg_type == OFPT_EXPERIMENTER and is_bundle_reply(buf, pos, msg_len):
                # the switch took a bundle's open or commit: nobody waits for that (a refusal
                # is an error message, the barrier after it says the bundle is done), and
                # parsing and dispatching two of them per switch and phase was a tenth of a
                # big change's reading
                pos += msg_len
                continue
            msg = ofproto_parser.msg(dp, version, msg_type, msg_len, xid,
                                     buf[pos:pos + msg_len])
            pos += msg_len
            if msg and brick is not None:
                ev = ofp_event.ofp_msg_to_ev(msg)
                brick.send_event_to_observers(ev, dp.state)
                for h in brick.get_handlers(ev):
                    if dp.state in h.callers[ev.__class__].dispatchers:
                        h(ev)
        if pos:
            # a whole message is a sign of life; bytes alone are not (a peer that announced
            # a message and never completes it must still be probed, and closed)
            conn.heard = True
        del buf[:pos]
        if dp.state == handler.DEAD_DISPATCHER:
            self._end(fd)

    # -- writing ----------------------------------------------------------------------------------
    def send(self, dp: Any, conn: _Conn, buf: bytes, close_socket: bool) -> bool:
        """``Datapath.send`` of a served connection (any thread)."""
        with conn.lock:
            if conn.closed:
                return False
            waiting = bool(conn.out)
            conn.out += buf
            conn.close_after = conn.close_after or close_socket
            if not waiting:
                self._write(dp, conn)
            pending = bool(conn.out) or conn.close_after
            overfull = len(conn.out) > MAX_BUFFERED_BYTES
        if overfull:
            log.warning(f"switch {dp.id if dp.id is None else hex(dp.id)} does not read: "
                        f"more than {MAX_BUFFERED_BYTES} bytes wait for it; disconnecting",
                        extra={"event": "switch_not_reading"})
            self._request_close(dp)
        elif pending and not waiting:
            with self._want_lock:
                self._want_write.add(dp.socket.fileno())
            with contextlib.suppress(OSError):
                self._wake_w.send(b"\0")
        return True

    @staticmethod
    def _write(dp: Any, conn: _Conn) -> None:
        """Write what the socket takes now (``conn.lock`` held)."""
        while conn.out:
            try:
                n = dp.socket.send(conn.out)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                conn.out.clear()  # the connection is gone; its read side will say so
                return
            del conn.out[:n]

    def _flush(self, fd: int) -> None:
        entry = self._conns.get(fd)
        if entry is None:
            return
        dp, conn, _ = entry
        with conn.lock:
            self._write(dp, conn)
            done = not conn.out
            close = done and conn.close_after
        if done:
            self._sel.modify(dp.socket, selectors.EVENT_READ, "conn")
        if close:
            self._end(fd)

    def _update_writers(self) -> None:
        with self._want_lock:
            want, self._want_write = self._want_write, set()
        for fd in want:
            entry = self._conns.get(fd)
            if entry is not None:
                self._sel.modify(entry[0].socket, selectors.EVENT_READ | selectors.EVENT_WRITE,
                                 "conn")

    def _request_close(self, dp: Any) -> None:
        """Close ``dp``'s connection from any thread: its socket is shut, the loop reads EOF
        and ends it."""
        with contextlib.suppress(OSError):
            dp.socket.shutdown(socket.SHUT_RDWR)

    # -- echo and the end -------------------------------------------------------------------------
    def _echo(self) -> None:
        for fd, (dp, conn, _) in list(self._conns.items()):
            if conn.heard:
                conn.heard = False
                dp.unreplied_echo_requests.clear()  # it is alive: no probe needed
                continue
            if len(dp.unreplied_echo_requests) > self._echo_misses:
                self._end(fd)
                continue
            echo = dp.ofproto_parser.OFPEchoRequest(dp)
            dp.unreplied_echo_requests.append(dp.set_xid(echo))
            dp.send_msg(echo)

    def _end(self, fd: int) -> None:
        """The connection is over: as os-ken ends one (``is_active`` False, then the DEAD
        state through ``Datapath.close``), and the socket closed."""
        entry = self._conns.pop(fd, None)
        if entry is None:
            return
        dp, conn, _ = entry
        with conn.lock:
            conn.closed = True
            conn.out.clear()
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(dp.socket)
        dp.is_active = False
        try:
            dp.close()
        except Exception:  # noqa: BLE001 - an observer's failure must not end the loop
            log.exception("closing a switch connection failed", extra={"event": "ofp_close"})
        with contextlib.suppress(OSError):
            dp.socket.close()


def _datapath(base: type, sock: socket.socket, addr: Any, conn: _Conn,
              server: SelectorServer) -> Any:
    """An os-ken ``Datapath`` whose writes go through ``server``."""
    dp = base(sock, addr)

    def send(buf: bytes, close_socket: bool = False) -> bool:
        return server.send(dp, conn, buf, close_socket)

    dp.send = send
    return dp


@contextlib.contextmanager
def install() -> Iterator[None]:
    """While the block runs, os-ken's OpenFlow handler app creates its listener as a
    :class:`SelectorServer` on os-ken's configured address (``--ofp-listen-host``,
    ``--ofp-tcp-listen-port``). Start os-ken's apps inside the block
    (``AppManager.instantiate_apps``)."""
    from os_ken import cfg
    from os_ken.controller import ofp_handler
    from os_ken.lib import hub

    original = ofp_handler.OpenFlowController

    class SelectorOpenFlowController(original):  # type: ignore[misc, valid-type]
        def server_loop(self, ofp_tcp_listen_port: int, ofp_ssl_listen_port: int) -> None:
            host = cfg.CONF.ofp_listen_host
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            SelectorServer(hub.listen((host, ofp_tcp_listen_port), family=family)).serve()

    ofp_handler.OpenFlowController = SelectorOpenFlowController
    try:
        yield
    finally:
        ofp_handler.OpenFlowController = original
