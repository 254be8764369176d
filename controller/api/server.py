"""Serving the API: uvicorn in a thread (HTTPS with a certificate and key), the bearer token
of older setups and where it is kept, and which addresses count as loopback (where reads
are open).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from controller.errors import CpnError

__all__ = ["TOKEN_ENV", "TOKEN_FILE_NAME", "ApiHandle", "check_tls_files", "is_loopback",
           "load_token", "serve_in_thread"]

log = logging.getLogger("controller.api.rest")

TOKEN_ENV = "CPN_API_TOKEN"
TOKEN_FILE_NAME = "api-token"


@dataclass
class ApiHandle:
    """A running API: ``url``, ``port``; :meth:`stop` ends the server thread."""

    host: str
    port: int
    server: Any
    thread: threading.Thread
    app: FastAPI | None = None
    scheme: str = "http"
    """``https`` when served with TLS"""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        webmap = getattr(self.app.state, "webmap", None) if self.app is not None else None
        if webmap is not None:
            webmap.close()  # end the web map's live streams, or uvicorn waits for them
        self.server.should_exit = True
        self.thread.join(timeout_s)
        audit = getattr(self.app.state, "audit", None) if self.app is not None else None
        if audit is not None:
            audit.close()  # write the last records before the store is closed


def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 8080, *,
                    tls_cert: str | Path | None = None, tls_key: str | Path | None = None,
                    start_timeout_s: float = 10.0) -> ApiHandle:
    """Run uvicorn for ``app`` in a daemon thread; returns once it listens (``port`` 0 picks
    a free port). With ``tls_cert`` and ``tls_key`` (PEM files) it serves HTTPS only.
    Raises OSError when it cannot listen, :class:`CpnError` naming the files when they do
    not make a certificate and its key."""
    import uvicorn

    tls: dict[str, Any] = {}
    if tls_cert is not None or tls_key is not None:
        check_tls_files(tls_cert, tls_key)
        tls = {"ssl_certfile": str(tls_cert), "ssl_keyfile": str(tls_key)}
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off",
                            access_log=False, timeout_graceful_shutdown=2, **tls)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cpn-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise OSError(f"the API could not listen on {host}:{port} (address in use or "
                          "not available?)")
        time.sleep(0.01)
    bound = port
    for s in server.servers:
        for sock in s.sockets:
            bound = sock.getsockname()[1]
    return ApiHandle(host, bound, server, thread, app, "https" if tls else "http")


def check_tls_files(cert: str | Path | None, key: str | Path | None) -> None:
    """Load the certificate and key as the server will (uvicorn fails in its own thread,
    where the reason would be lost): :class:`CpnError` naming both files and why."""
    if cert is None or key is None:
        raise CpnError("the API's TLS needs both a certificate (--api-tls-cert) and its key "
                       "(--api-tls-key)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise CpnError(f"API TLS: {exc.filename or cert}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        raise CpnError(f"API TLS: cannot use certificate {cert} with key {key}: "
                       f"{getattr(exc, 'reason', None) or exc}") from None


def is_loopback(host: str) -> bool:
    """Is ``host`` a loopback address (or ``localhost``)? Reads are open there by default."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_token(state_dir: str | Path, token_file: str | Path | None = None
               ) -> tuple[str, Path | None]:
    """The write token and the file it came from (None: the environment).

    ``token_file`` if given; else ``$CPN_API_TOKEN``; else ``<state_dir>/api-token``,
    generated (32 random bytes, URL-safe) with mode 0600 when missing."""
    if token_file is not None:
        path = Path(token_file)
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CpnError(f"cannot read API token file {path}: {exc}") from exc
        if not token:
            raise CpnError(f"API token file {path} is empty")
        return token, path
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, None
    path = Path(state_dir) / TOKEN_FILE_NAME
    if path.exists():
        token = path.read_text(encoding="utf-8").strip()
        if token:
            if path.stat().st_mode & 0o077:
                log.warning(f"API token file {path} is readable by group/others; chmod 600 it",
                            extra={"event": "token_mode"})
            return token, path
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE_NAME}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, f"{token}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    log.info(f"generated an API token in {path} (mode 0600)", extra={"event": "token_created"})
    return token, path
