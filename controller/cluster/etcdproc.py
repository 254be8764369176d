"""etcd as a child process on loopback, for tests, the demo and benchmarks.

:class:`EtcdServer` runs one etcd member with free ports and a temporary directory;
:class:`EtcdCluster` runs ``n`` of them as one cluster (static ``--initial-cluster``). Both
can kill (SIGKILL), stop (SIGTERM, then SIGKILL) and restart members on the same ports and
data, which is what failover tests need. etcd's own log goes to ``etcd.log`` in the member's
directory, never to the caller's stderr.

Timing: members run with ``--heartbeat-interval 50 --election-timeout 500`` (etcd's defaults
are 100 and 1000), so a lost leader is replaced in about half a second. etcd grants no lease
shorter than 1.5 election timeouts rounded up to a whole second, and its lessor looks for
expired leases every 500 ms. Measured on loopback with etcd 3.4: with these values a 1 s
lease is granted as 1 s and its keys are gone 1.1 to 1.5 s after the last keepalive (a 2 s
lease: 2.5 s); with etcd's defaults a 1 s lease is granted as 2 s and goes after 2.5 s.
They also run with ``--max-txn-ops 4096`` (see :data:`MAX_TXN_OPS`).

TLS mode (``tls=`` a :class:`ServerTls`): clients talk to the members over ``https://``
(``--cert-file --key-file --trusted-ca-file --client-cert-auth``): etcd then requires a
client certificate signed by the CA and refuses a connection without one. Peer URLs stay
plain HTTP: the members of these clusters all run on 127.0.0.1, where no one else is on the
wire (a cluster across machines would set ``--peer-cert-file`` and its kin too).
:func:`controller.lab.pki.server_tls` makes the files (``cpn-lab pki``).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import http.client
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from controller.cluster.etcd import EtcdAuth, EtcdClient, EtcdTls, prefix_range
from controller.errors import StoreError

__all__ = ["EtcdCluster", "EtcdServer", "ServerTls", "etcd_binary", "free_port"]

log = logging.getLogger(__name__)

NOT_INSTALLED = "etcd is not installed: scripts/setup.sh installs Debian's etcd-server"

HEARTBEAT_INTERVAL_MS = 50
ELECTION_TIMEOUT_MS = 500
MAX_TXN_OPS = 4096
"""etcd refuses a transaction with more operations than this (its default, 128, is below
what one compute change of a large network may hold)."""

_LOG_TAIL_BYTES = 2000

# every member still running when the interpreter exits is killed, so an aborted test run
# leaves no etcd behind
_RUNNING: weakref.WeakSet[EtcdServer] = weakref.WeakSet()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_RUNNING):
        server.kill()


def etcd_binary() -> str:
    """The path of the ``etcd`` executable on PATH; :class:`StoreError` when there is none."""
    path = shutil.which("etcd")
    if path is None:
        raise StoreError(NOT_INSTALLED)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class ServerTls:
    """etcd's side of TLS: the CA it trusts for client certificates (and that signed its
    own), its server certificate and key, and the client certificate the launcher's own
    health checks present (``client``)."""

    ca: str
    cert: str
    key: str
    client: EtcdTls


class EtcdServer:
    """One etcd member on 127.0.0.1 (over TLS for clients with ``tls``).

    ``client_port`` and ``peer_port`` default to free ports chosen once, so a restart comes
    back at the same addresses. ``workdir`` defaults to a temporary directory that
    :meth:`cleanup` (and leaving the ``with`` block) removes; it holds ``data/`` (etcd's
    data dir) and ``etcd.log``. A member of a cluster gets the cluster's ``initial_cluster``
    ("name=peer_url,...")."""

    def __init__(self, *, name: str = "etcd0", workdir: str | Path | None = None,
                 client_port: int | None = None, peer_port: int | None = None,
                 initial_cluster: str | None = None,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
                 election_timeout_ms: int = ELECTION_TIMEOUT_MS,
                 extra_args: Sequence[str] = (), tls: ServerTls | None = None) -> None:
        self.name = name
        self.tls = tls
        self._health_context = tls.client.context() if tls is not None else None
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix=f"cpn-etcd-{name}-"))
        self.client_port = client_port if client_port is not None else free_port()
        self.peer_port = peer_port if peer_port is not None else free_port()
        self.initial_cluster = initial_cluster or f"{name}={self.peer_url}"
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.election_timeout_ms = election_timeout_ms
        self.extra_args = list(extra_args)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.auth_root: EtcdAuth | None = None
        """etcd's root user once :meth:`enable_auth` turned authentication on"""

    # -- addresses and files ---------------------------------------------------------------
    @property
    def client_url(self) -> str:
        """Where clients talk to this member (``http://127.0.0.1:PORT``, ``https://`` with
        TLS)."""
        return f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        """Where the other members of its cluster talk to this one."""
        return f"http://127.0.0.1:{self.peer_port}"

    @property
    def data_dir(self) -> Path:
        """etcd's ``--data-dir``."""
        return self.workdir / "data"

    @property
    def log_path(self) -> Path:
        """etcd's log (appended to across restarts)."""
        return self.workdir / "etcd.log"

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def running(self) -> bool:
        """The process is alive (it may not answer yet)."""
        return self.pid is not None

    def command(self) -> list[str]:
        """The etcd command line."""
        return [etcd_binary(), "--name", self.name,
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"cpn-{self.initial_cluster}",
                "--heartbeat-interval", str(self.heartbeat_interval_ms),
                "--election-timeout", str(self.election_timeout_ms),
                "--max-txn-ops", str(MAX_TXN_OPS),
                "--logger", "zap", "--log-outputs", "stderr",
                *self._tls_args(), *self.extra_args]

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return ["--cert-file", self.tls.cert, "--key-file", self.tls.key,
                "--trusted-ca-file", self.tls.ca, "--client-cert-auth"]

    # -- life cycle ------------------------------------------------------------------------
    def launch(self) -> None:
        """Start the process without waiting for it to answer (a cluster launches every
        member before any can answer: each needs a quorum)."""
        with self._lock:
            if self.running():
                return
            self.workdir.mkdir(parents=True, exist_ok=True)
            command = self.command()
            with open(self.log_path, "ab") as out:
                # a new session: a Ctrl-C meant for the test runner does not reach etcd,
                # which the fixtures stop themselves
                self._proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out,
                                              stderr=subprocess.STDOUT,
                                              start_new_session=True)
            _RUNNING.add(self)
        log.info(f"etcd {self.name} started at {self.client_url} (pid {self._proc.pid})",
                 extra={"event": "etcd_started", "etcd": self.name, "pid": self._proc.pid})

    def start(self, timeout_s: float = 10.0) -> EtcdServer:
        """Start the process and wait until it answers ``/health`` (which needs its cluster's
        quorum); :class:`StoreError` with the tail of its log when it exits or does not
        answer within ``timeout_s``."""
        self.launch()
        try:
            self.wait_healthy(timeout_s)
        except BaseException:
            self.kill()  # no half-started member left behind
            raise
        return self

    def wait_healthy(self, timeout_s: float = 10.0) -> None:
        """Wait, bounded, until this member answers ``/health`` with true."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                raise StoreError(f"etcd {self.name} exited (status {code}) before it "
                                 f"answered; log {self.log_path}: {self.log_tail()}")
            ok, last = self.health()
            if ok:
                return
            if time.monotonic() >= deadline:
                raise StoreError(f"etcd {self.name} at {self.client_url} not healthy within "
                                 f"{timeout_s:g} s ({last}); log {self.log_path}: "
                                 f"{self.log_tail()}")
            time.sleep(0.05)

    def health(self) -> tuple[bool, str]:
        """(healthy, why not): one ``GET /health``, bounded by a second."""
        conn = http.client.HTTPSConnection("127.0.0.1", self.client_port, timeout=1.0,
                                           context=self._health_context) \
            if self._health_context is not None else \
            http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=1.0)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = resp.read()
            answer = json.loads(body or b"{}")
            if resp.status == 200 and answer.get("health") == "true":
                return True, ""
            return False, f"HTTP {resp.status}: {body[:200]!r}"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            return False, str(exc) or type(exc).__name__
        finally:
            conn.close()

    def enable_auth(self, root_password: str, users: Mapping[str, str],
                    prefix: str = "/cpn") -> None:
        """Turn etcd's authentication on (``etcdctl auth enable``): a ``root`` user with
        ``root_password``, a role ``cpn-member`` that may read and write every key under
        ``prefix`` and nothing else, and each of ``users`` (name -> password) with that
        role. :class:`StoreError` naming the step etcd refused."""
        start, end = prefix_range(f"{prefix.rstrip('/')}/".encode())
        steps: list[tuple[str, dict[str, Any]]] = [
            ("auth/role/add", {"name": "root"}),
            ("auth/user/add", {"name": "root", "password": root_password}),
            ("auth/user/grant", {"user": "root", "role": "root"}),
            ("auth/role/add", {"name": "cpn-member"}),
            ("auth/role/grant", {"name": "cpn-member", "perm": {
                "permType": "READWRITE", "key": base64.b64encode(start).decode(),
                "range_end": base64.b64encode(end).decode()}}),
        ]
        for name, password in users.items():
            steps += [("auth/user/add", {"name": name, "password": password}),
                      ("auth/user/grant", {"user": name, "role": "cpn-member"})]
        steps.append(("auth/enable", {}))
        with EtcdClient([self.client_url], tls=self.tls.client if self.tls else None,
                        timeout_s=5.0) as client:
            for path, body in steps:
                try:
                    client._send("auth", path, body)
                except Exception as exc:  # noqa: BLE001 - named, whatever it was
                    raise StoreError(f"etcd {self.name}: {path} refused: {exc}") from None
        self.auth_root = EtcdAuth("root", root_password)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``; waits for it."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed beyond what etcd synced), and wait for it."""
        self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: signal.Signals, timeout_s: float) -> None:
        with self._lock:
            proc, self._proc = self._proc, None
            _RUNNING.discard(self)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5.0)
        log.info(f"etcd {self.name} ended ({sig.name})",
                 extra={"event": "etcd_stopped", "etcd": self.name})

    def restart(self, timeout_s: float = 10.0) -> EtcdServer:
        """Stop (if running) and start again on the same ports and data."""
        self.stop()
        return self.start(timeout_s)

    def cleanup(self) -> None:
        """Stop, and remove the directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, size: int = _LOG_TAIL_BYTES) -> str:
        """The end of etcd's log (for error messages)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode(errors="replace")
        except OSError:
            return "(no log)"

    def __enter__(self) -> EtcdServer:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"EtcdServer({self.name!r}, {self.client_url}, running={self.running()})"


class EtcdCluster:
    """``n`` etcd members on 127.0.0.1 forming one cluster, each an :class:`EtcdServer`
    with its own ports and directory (all under one temporary directory)."""

    def __init__(self, n: int = 3, *, workdir: str | Path | None = None,
                 heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS,
                 election_timeout_ms: int = ELECTION_TIMEOUT_MS,
                 tls: ServerTls | None = None) -> None:
        if n < 1:
            raise ValueError(f"a cluster needs at least one member, not {n}")
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(
            tempfile.mkdtemp(prefix="cpn-etcd-cluster-"))
        names = [f"etcd{i}" for i in range(n)]
        # every port is picked before any member starts, so the cluster line is complete
        ports = [(free_port(), free_port()) for _ in names]
        initial = ",".join(f"{name}=http://127.0.0.1:{peer}"
                           for name, (_, peer) in zip(names, ports, strict=True))
        self.members = [EtcdServer(name=name, workdir=self.workdir / name,
                                   client_port=client, peer_port=peer,
                                   initial_cluster=initial,
                                   heartbeat_interval_ms=heartbeat_interval_ms,
                                   election_timeout_ms=election_timeout_ms, tls=tls)
                        for name, (client, peer) in zip(names, ports, strict=True)]

    @property
    def client_urls(self) -> list[str]:
        """Every member's client URL, in member order."""
        return [m.client_url for m in self.members]

    @property
    def endpoints(self) -> str:
        """The client URLs comma-joined (the form settings and flags take)."""
        return ",".join(self.client_urls)

    def start(self, timeout_s: float = 15.0) -> EtcdCluster:
        """Launch every member, then wait until each answers ``/health``."""
        try:
            for member in self.members:
                member.launch()
            deadline = time.monotonic() + timeout_s
            for member in self.members:
                member.wait_healthy(max(0.1, deadline - time.monotonic()))
        except BaseException:
            self.stop()  # no half-started cluster left behind
            raise
        return self

    def stop(self) -> None:
        """Stop every member."""
        for member in self.members:
            member.stop()

    def kill(self, i: int) -> None:
        """SIGKILL member ``i``."""
        self.members[i].kill()

    def restart(self, i: int, timeout_s: float = 10.0) -> None:
        """Start member ``i`` again (same ports and data) and wait until it is healthy (which
        needs a quorum of the cluster running)."""
        self.members[i].restart(timeout_s)

    def cleanup(self) -> None:
        """Stop every member and remove the directory if this object created it."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> EtcdCluster:
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()
