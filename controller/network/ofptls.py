"""OpenFlow over TLS: the listener's TLS context, the handshake and what a refusal records.

``cpn-controller --ofp-tls-cert FILE --ofp-tls-key FILE --ofp-tls-ca FILE`` makes the OpenFlow
listener speak TLS (1.2 or later) and require a client certificate that the CA signed
(``CERT_REQUIRED``): a switch with no certificate, one from another CA, an expired one, or a
peer that does not speak TLS at all is refused during the handshake, before os-ken sees a
byte of OpenFlow.

os-ken has TLS of its own (``--ctl-privkey``/``--ctl-cert``/``--ca-certs``), but it runs
each handshake in a thread with no timeout (a peer that connects and sends nothing holds a
thread for ever), sets no minimum protocol version, and reports a refused handshake only as a
traceback. :class:`TlsListener` does the handshake itself, bounded in time
(:data:`HANDSHAKE_TIMEOUT_S`) and in how many run at once (:data:`MAX_HANDSHAKES`), then hands
the authenticated socket to os-ken's own connection handler, as os-ken's listener would,
wrapped in a :class:`TlsConnection` (os-ken reads and writes a connection from two threads,
which OpenSSL forbids on one TLS connection). Each refusal is logged
(``event=ofp_tls_refused``, the peer and the reason), counted
(``cpn_ofp_tls_refused_total{reason}``) and passed to ``on_refused`` (the controller records
it as an ``ofp_tls_refused`` event of ``GET /api/v1/events``); the listener never stops for
one. A peer refused again and again for the same reason is logged and recorded at most once
per :data:`REPEAT_QUIET_S` (OVS retries every few seconds); the counter counts every one.

:func:`install` puts a listener in the place of os-ken's while its apps start
(``controller.main.OpenFlowServer``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from controller.errors import CpnError
from controller.network.counters import PROCESS_REGISTRY

__all__ = ["HANDSHAKE_TIMEOUT_S", "MAX_HANDSHAKES", "REASONS", "REFUSED", "TlsConnection",
           "TlsFiles", "TlsListener", "install", "refusal_reason", "server_context"]

log = logging.getLogger("controller.network.ofptls")

HANDSHAKE_TIMEOUT_S = 5.0
"""A peer that has not finished the TLS handshake this long after connecting is refused."""
MAX_HANDSHAKES = 64
"""Handshakes in progress at once; a connection beyond them is closed at once (``busy``)."""
REPEAT_QUIET_S = 10.0
"""The same peer address refused for the same reason is logged and recorded once per this
many seconds."""

REASONS = ("untrusted_certificate", "expired_certificate", "no_certificate", "not_tls",
           "peer_refused", "timeout", "closed", "busy", "tls_error")
"""The ``reason`` label values of :data:`REFUSED`:

* ``untrusted_certificate``: the switch's certificate is not signed by the CA (or is otherwise
  invalid: wrong purpose, not yet valid);
* ``expired_certificate``: signed by the CA but expired;
* ``no_certificate``: the peer sent none;
* ``not_tls``: the peer does not speak TLS (plain OpenFlow, HTTP, ...);
* ``peer_refused``: the switch refused the controller's certificate (a TLS alert);
* ``timeout``: no complete handshake within :data:`HANDSHAKE_TIMEOUT_S`;
* ``closed``: the peer closed the connection during the handshake;
* ``busy``: :data:`MAX_HANDSHAKES` were in progress;
* ``tls_error``: any other TLS failure (the detail names it)."""

REFUSED = Counter("cpn_ofp_tls_refused", "OpenFlow connections refused during the TLS "
                  "handshake, by reason", ["reason"], registry=PROCESS_REGISTRY)

_CERT_HAS_EXPIRED = 10  # X509_V_ERR_CERT_HAS_EXPIRED
_NOT_TLS = frozenset({"WRONG_VERSION_NUMBER", "HTTP_REQUEST", "HTTPS_PROXY_REQUEST",
                      "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "RECORD_LENGTH_MISMATCH",
                      "UNSUPPORTED_PROTOCOL", "WRONG_SSL_VERSION", "RECORD_LAYER_FAILURE"})


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The listener's certificate and key and the CA that signs the switches' certificates
    (PEM files; ``openflow.tls_cert``, ``tls_key``, ``tls_ca``)."""

    cert: str
    key: str
    ca: str


def _read_error(flag: str, path: str, exc: BaseException) -> CpnError:
    if isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError):
        return CpnError(f"{flag} {path}: cannot read: {exc.strerror or exc}")
    return CpnError(f"{flag} {path}: {getattr(exc, 'reason', None) or exc}")


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The listener's TLS context: TLS 1.2 or later, the certificate and key of ``files``,
    client certificates required and checked against ``files.ca``. Raises
    :class:`CpnError` naming the flag and file for a file that is missing or unreadable, not
    PEM, a key that does not match the certificate, or a CA file without a CA
    certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.num_tickets = 0  # no TLS 1.3 session tickets: switches do not resume sessions
    for flag, path in (("--ofp-tls-cert", files.cert), ("--ofp-tls-key", files.key),
                       ("--ofp-tls-ca", files.ca)):
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise _read_error(flag, path, exc) from None
    try:
        ctx.load_cert_chain(files.cert, files.key)
    except ssl.SSLError as exc:
        raise CpnError(f"--ofp-tls-cert {files.cert} / --ofp-tls-key {files.key}: not a PEM "
                       f"certificate and its private key ({exc.reason or exc})") from None
    try:
        ctx.load_verify_locations(cafile=files.ca)
    except ssl.SSLError as exc:
        raise _read_error("--ofp-tls-ca", files.ca, exc) from None
    if ctx.cert_store_stats().get("x509_ca", 0) == 0:
        raise CpnError(f"--ofp-tls-ca {files.ca}: holds no CA certificate (basicConstraints "
                       "CA:TRUE)")
    return ctx


def refusal_reason(exc: BaseException) -> tuple[str, str]:
    """(one of :data:`REASONS`, a human-readable detail) of a failed server handshake."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        detail = f"certificate: {exc.verify_message}"
        if exc.verify_code == _CERT_HAS_EXPIRED:
            return "expired_certificate", detail
        return "untrusted_certificate", detail
    if isinstance(exc, ssl.SSLEOFError):
        return "closed", "the peer closed the connection during the handshake"
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "PEER_DID_NOT_RETURN_A_CERTIFICATE":
            return "no_certificate", "the peer sent no certificate"
        if reason in _NOT_TLS:
            return "not_tls", f"not a TLS handshake ({reason})"
        if reason.startswith(("TLSV1_ALERT_", "SSLV3_ALERT_", "TLSV13_ALERT_")):
            return "peer_refused", f"the peer refused the handshake ({reason})"
        return "tls_error", reason or str(exc)
    if isinstance(exc, TimeoutError):
        return "timeout", f"no complete handshake within {HANDSHAKE_TIMEOUT_S:g} s"
    if isinstance(exc, (ConnectionError, EOFError)):
        return "closed", "the peer closed the connection during the handshake"
    return "tls_error", f"{type(exc).__name__}: {exc}"


RefusedCallback = Callable[[str, str, str], None]
"""``on_refused(peer, reason, detail)``: ``peer`` is ``HOST:PORT``."""


class TlsListener:
    """The OpenFlow listener over TLS: accept, handshake (bounded), then os-ken's handler.

    ``handle(sock, address)`` is os-ken's per-connection handler
    (``os_ken.controller.controller.datapath_connection_factory``, set by :func:`install`
    when not given); ``on_refused`` is
    called after a refusal is logged and counted (not for one quieted as a repeat)."""

    def __init__(self, context: ssl.SSLContext,
                 handle: Callable[[Any, Any], None] | None = None, *,
                 on_refused: RefusedCallback | None = None,
                 handshake_timeout_s: float = HANDSHAKE_TIMEOUT_S,
                 max_handshakes: int = MAX_HANDSHAKES) -> None:
        self.context = context
        self.handle = handle
        self.on_refused = on_refused
        self.handshake_timeout_s = handshake_timeout_s
        self.max_handshakes = max_handshakes
        self._slots = threading.BoundedSemaphore(max_handshakes)
        self._quiet_lock = threading.Lock()
        self._last_said: dict[tuple[str, str], float] = {}
        for reason in REASONS:  # every reason shows in /metrics from the start, at 0
            REFUSED.labels(reason=reason)

    def serve(self, server: socket.socket) -> None:
        """Accept on the listening socket ``server`` until it is shut; each connection's
        handshake and session run in a daemon thread of their own."""
        while True:
            try:
                sock, addr = server.accept()
            except OSError:
                return  # the listener was shut (controller.main's stop)
            if not self._slots.acquire(blocking=False):
                sock.close()
                self._refused(addr, "busy", f"{self.max_handshakes} handshakes in progress")
                continue
            threading.Thread(target=self.connection, args=(sock, addr),
                             name=f"cpn-ofp-tls-{addr[0]}:{addr[1]}", daemon=True).start()

    def connection(self, sock: socket.socket, addr: Any) -> None:
        """One connection: the handshake within the timeout (a slot already taken), then
        os-ken's handler on the TLS socket; a failed handshake is refused and closed."""
        try:
            sock.settimeout(self.handshake_timeout_s)
            tls = self.context.wrap_socket(sock, server_side=True)
        except (OSError, ValueError) as exc:
            reason, detail = refusal_reason(exc)
            with contextlib.suppress(OSError):
                sock.close()
            self._refused(addr, reason, detail)
            return
        finally:
            self._slots.release()
        peer = _subject_cn(tls.getpeercert())
        log.info(f"OpenFlow TLS from {_peer(addr)}: {tls.version()}, switch certificate "
                 f"CN={peer}", extra={"event": "ofp_tls_accepted"})
        assert self.handle is not None, "no connection handler: see install()"
        try:
            self.handle(TlsConnection(tls), addr)
        except Exception:  # noqa: BLE001 - os-ken logged it; the connection is closed
            log.debug(f"OpenFlow connection from {_peer(addr)} ended with an error",
                      exc_info=True, extra={"event": "ofp_connection_error"})

    def _refused(self, addr: Any, reason: str, detail: str) -> None:
        REFUSED.labels(reason=reason).inc()
        peer = _peer(addr)
        now = time.monotonic()
        key = (str(addr[0]) if isinstance(addr, tuple) else peer, reason)
        with self._quiet_lock:
            last = self._last_said.get(key)
            if last is not None and now - last < REPEAT_QUIET_S:
                return
            if len(self._last_said) >= 4096:  # bounded: forget the oldest half
                for old in sorted(self._last_said, key=self._last_said.__getitem__)[:2048]:
                    del self._last_said[old]
            self._last_said[key] = now
        log.warning(f"OpenFlow TLS handshake from {peer} refused: {detail}",
                    extra={"event": "ofp_tls_refused"})
        if self.on_refused is not None:
            try:
                self.on_refused(peer, reason, detail)
            except Exception:  # noqa: BLE001 - a recorder's failure must not stop the listener
                log.exception("recording a refused OpenFlow TLS handshake failed")


class TlsConnection:
    """A switch's TLS socket as os-ken's ``Datapath`` uses it, safe for its two threads.

    os-ken reads a switch's socket in one thread and writes it in another, at the same time.
    OpenSSL forbids that on one connection (``SSL_read`` and ``SSL_write`` on the same
    ``SSL`` object from two threads, openssl/openssl#20446); CPython's ``SSLSocket`` adds no
    lock (python/cpython#151508 is a crash from it). Here the TLS socket is non-blocking
    and every TLS call runs under one lock, never held while waiting: a call that needs the
    network returns at once (``SSLWantReadError``/``SSLWantWriteError``), and the caller
    waits for the file descriptor outside the lock, up to the timeout os-ken set (then
    ``TimeoutError``, as a socket with a timeout raises). Data TLS has already decrypted is
    read before any wait."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        tls.setblocking(False)
        self._tls = tls
        self._fd = tls.fileno()
        self._lock = threading.Lock()
        self._timeout: float | None = None

    def settimeout(self, timeout_s: float | None) -> None:
        self._timeout = timeout_s

    def gettimeout(self) -> float | None:
        return self._timeout

    def __getattr__(self, name: str) -> Any:  # setsockopt, getpeercert, fileno, ...
        return getattr(self._tls, name)

    def _call(self, op: Callable[[], Any]) -> Any:
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._lock:
                try:
                    return op()
                except ssl.SSLWantReadError:
                    event = select.POLLIN
                except ssl.SSLWantWriteError:
                    event = select.POLLOUT
            poller = select.poll()
            poller.register(self._fd, event)
            wait_ms = None if deadline is None else max(0.0, deadline - time.monotonic()) * 1e3
            if not poller.poll(wait_ms):
                raise TimeoutError("timed out")

    def recv(self, size: int) -> bytes:
        return bytes(self._call(lambda: self._tls.recv(size)))

    def send(self, data: bytes) -> int:
        return int(self._call(lambda: self._tls.send(data)))

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # after a want-write the same bytes are offered again, as OpenSSL requires
            view = view[self._call(functools.partial(self._tls.send, view)):]

    def shutdown(self, how: int) -> None:
        """Shut the TCP connection (``SSLSocket.shutdown`` would also drop the TLS layer
        under the other thread, which would then read the raw records)."""
        with self._lock:
            socket.socket.shutdown(self._tls, how)

    def close(self) -> None:
        with self._lock:
            self._tls.close()


def _peer(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr)


def _subject_cn(cert: Any) -> str:
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "?"


@contextlib.contextmanager
def install(listener: TlsListener) -> Iterator[None]:
    """While the block runs, os-ken's OpenFlow handler app creates its listener from
    ``listener``: plain TCP on os-ken's configured address (``--ofp-listen-host``,
    ``--ofp-tcp-listen-port``), every connection through :meth:`TlsListener.connection`.
    Start os-ken's apps inside the block (``AppManager.instantiate_apps``)."""
    from os_ken import cfg
    from os_ken.controller import controller as osken_controller
    from os_ken.controller import ofp_handler
    from os_ken.lib import hub

    original = ofp_handler.OpenFlowController

    class TlsOpenFlowController(original):  # type: ignore[misc, valid-type]
        def server_loop(self, ofp_tcp_listen_port: int, ofp_ssl_listen_port: int) -> None:
            host = cfg.CONF.ofp_listen_host
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            listener.serve(hub.listen((host, ofp_tcp_listen_port), family=family))

    if listener.handle is None:
        listener.handle = osken_controller.datapath_connection_factory
    ofp_handler.OpenFlowController = TlsOpenFlowController
    try:
        yield
    finally:
        ofp_handler.OpenFlowController = original
