"""OpenFlow over TLS: the settings (all three files or none), the listener's handshake on
real loopback sockets (who is handed to OpenFlow, who is refused and why, what is counted and
reported), and the errors for unusable files."""

from __future__ import annotations

import datetime
import os
import queue
import random
import socket
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from controller.errors import CpnError
from controller.lab.pki import PkiFiles, issue, make_pki, new_ca
from controller.network.ofptls import (
    REASONS,
    REFUSED,
    TlsConnection,
    TlsFiles,
    TlsListener,
    server_context,
)
from controller.settings import SettingsError, load_settings

REPO = Path(__file__).resolve().parents[2]

TLS_FLAGS = {"openflow.tls_cert": "c.pem", "openflow.tls_key": "k.pem",
             "openflow.tls_ca": "ca.pem"}


def test_tls_takes_all_three_files_or_none() -> None:
    s = load_settings(environ={}, flags=TLS_FLAGS)
    assert (s.openflow.tls_cert, s.openflow.tls_key, s.openflow.tls_ca) == (
        "c.pem", "k.pem", "ca.pem")
    plain = load_settings(environ={})
    assert (plain.openflow.tls_cert, plain.openflow.tls_key, plain.openflow.tls_ca) == (
        None, None, None)


@pytest.mark.parametrize("given", [("openflow.tls_cert",), ("openflow.tls_key",),
                                   ("openflow.tls_ca",),
                                   ("openflow.tls_cert", "openflow.tls_ca")])
def test_a_partial_tls_setting_names_what_is_missing(given: tuple[str, ...]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, flags={k: TLS_FLAGS[k] for k in given})
    missing = [k.split(".")[1] for k in TLS_FLAGS if k not in given]
    message = str(err.value)
    assert message.endswith(f"{', '.join(missing)} missing"), message
    # it is reported at the flags that were given
    assert message.startswith(", ".join(f"flag --ofp-tls-{k.split('_')[1]}" for k in given))


def test_the_environment_and_a_config_file_set_tls_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("openflow:\n  tls_cert: pki/controller-cert.pem\n"
                   "  tls_key: pki/controller-key.pem\n")
    s = load_settings(cfg, environ={"CPN_OPENFLOW_TLS_CA": "/etc/cpn/ca.pem"})
    # relative paths in a file are taken from its directory
    assert s.openflow.tls_cert == str(tmp_path / "pki" / "controller-cert.pem")
    assert s.openflow.tls_ca == "/etc/cpn/ca.pem"
    assert s.source("openflow.tls_ca") == "environment variable CPN_OPENFLOW_TLS_CA"


# -- the listener, on real loopback sockets ----------------------------------------------------

@dataclass
class Served:
    """A :class:`TlsListener` serving on a loopback port, with what reached os-ken's side and
    what was refused."""

    port: int
    listener: TlsListener
    handled: queue.Queue[tuple[Any, Any]]
    refused: queue.Queue[tuple[str, str, str]]

    def refusal(self, timeout_s: float = 5.0) -> tuple[str, str, str]:
        return self.refused.get(timeout=timeout_s)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return make_pki(tmp_path_factory.mktemp("pki")).files


@pytest.fixture
def served(pki: PkiFiles) -> Iterator[Served]:
    ctx = server_context(TlsFiles(str(pki.controller_cert), str(pki.controller_key),
                                  str(pki.ca_cert)))
    handled: queue.Queue[tuple[Any, Any]] = queue.Queue()
    refused: queue.Queue[tuple[str, str, str]] = queue.Queue()

    def handle(sock: Any, addr: Any) -> None:
        handled.put((sock.getpeercert(), addr))
        data = sock.recv(8)  # an OpenFlow hello, echoed back over TLS
        sock.sendall(data)
        sock.close()

    listener = TlsListener(ctx, handle, on_refused=lambda *a: refused.put(a),
                           handshake_timeout_s=1.0, max_handshakes=2)
    server = socket.create_server(("127.0.0.1", 0))
    thread = threading.Thread(target=listener.serve, args=(server,), daemon=True)
    thread.start()
    try:
        yield Served(server.getsockname()[1], listener, handled, refused)
    finally:
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(5)
        assert not thread.is_alive()


def _client(pki: PkiFiles, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.ca_cert)
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def _connect(port: int, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    return ctx.wrap_socket(raw, server_hostname="localhost")


HELLO = bytes([4, 0, 0, 8, 0, 0, 0, 1])  # OpenFlow 1.3 OFPT_HELLO


def _refused_count(reason: str) -> float:
    return REFUSED.labels(reason=reason)._value.get()


def test_a_switch_with_a_certificate_the_ca_signed_is_handed_to_openflow(
        served: Served, pki: PkiFiles) -> None:
    with _connect(served.port, _client(pki, pki.switch_cert, pki.switch_key)) as tls:
        tls.sendall(HELLO)
        assert tls.recv(8) == HELLO
    cert, _addr = served.handled.get(timeout=5)
    assert dict(x[0] for x in cert["subject"])["commonName"] == "cpn-switch"
    assert served.refused.empty()


def _issue_to(tmp_path: Path, name: str, ca: tuple[Any, Any], **kw: Any) -> tuple[Path, Path]:
    cert_pem, key_pem = issue(name, ca[0], ca[1], client=True, **kw)
    cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key


def _ca_of(pki: PkiFiles) -> tuple[Any, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    return (x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()),
            serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None))


def _refused_client(served: Served, ctx: ssl.SSLContext) -> None:
    """The client's side of a refused handshake: an error, or a connection that ends."""
    try:
        with _connect(served.port, ctx) as tls:
            tls.sendall(HELLO)
            assert tls.recv(8) == b""
    except (ssl.SSLError, OSError):
        pass


@pytest.mark.parametrize(("case", "reason", "detail"), [
    ("other CA", "untrusted_certificate", "certificate: unable to get local issuer"),
    ("expired", "expired_certificate", "certificate: certificate has expired"),
    ("no certificate", "no_certificate", "the peer sent no certificate"),
])
def test_a_bad_switch_certificate_is_refused_counted_and_reported(
        served: Served, pki: PkiFiles, tmp_path: Path, case: str, reason: str,
        detail: str) -> None:
    if case == "other CA":
        cert, key = _issue_to(tmp_path, "rogue", new_ca("Rogue CA"))
    elif case == "expired":
        long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        cert, key = _issue_to(tmp_path, "stale", _ca_of(pki), days=2, now=long_ago)
    else:
        cert = key = None
    before = _refused_count(reason)
    _refused_client(served, _client(pki, cert, key))
    peer, got_reason, got_detail = served.refusal()
    assert (got_reason, got_detail.startswith(detail)) == (reason, True), got_detail
    assert peer.startswith("127.0.0.1:")
    assert _refused_count(reason) == before + 1
    assert served.handled.empty()


def test_plain_tcp_openflow_is_refused_and_the_listener_keeps_serving(
        served: Served, pki: PkiFiles) -> None:
    before = _refused_count("not_tls")
    with socket.create_connection(("127.0.0.1", served.port), timeout=5) as plain:
        plain.sendall(HELLO)
        plain.settimeout(5)
        try:
            answer = plain.recv(64)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x04")  # no OpenFlow answer, only (maybe) a TLS alert
    assert served.refusal()[1:] == ("not_tls", "not a TLS handshake (WRONG_VERSION_NUMBER)")
    assert _refused_count("not_tls") == before + 1
    test_a_switch_with_a_certificate_the_ca_signed_is_handed_to_openflow(served, pki)


def test_a_silent_peer_times_out_and_too_many_handshakes_are_refused_as_busy(
        served: Served, pki: PkiFiles) -> None:
    timeouts = _refused_count("timeout")
    silent = [socket.create_connection(("127.0.0.1", served.port)) for _ in range(3)]
    try:
        # two take the handshake slots; the third is closed at once
        assert served.refusal()[1] == "busy"
        # the two silent ones time out: both counted, one report (same host and reason)
        assert served.refusal()[1] == "timeout"
        wait_until(lambda: _refused_count("timeout") == timeouts + 2, 5.0,
                   "both silent peers timed out")
    finally:
        for s in silent:
            s.close()
    assert served.refused.empty()
    # the slots are free again
    test_a_switch_with_a_certificate_the_ca_signed_is_handed_to_openflow(served, pki)


def test_a_repeated_refusal_is_reported_once_but_always_counted(
        served: Served, pki: PkiFiles, tmp_path: Path) -> None:
    cert, key = _issue_to(tmp_path, "rogue", new_ca("Rogue CA"))
    before = _refused_count("untrusted_certificate")
    for _ in range(3):
        _refused_client(served, _client(pki, cert, key))
    served.refusal()
    wait_until(lambda: _refused_count("untrusted_certificate") == before + 3, 5.0,
               "three refusals counted")
    assert served.refused.empty()


@pytest.mark.parametrize("reason", REASONS)
def test_every_reason_is_a_metric_label(reason: str) -> None:
    assert reason.isidentifier()


# -- the context: files a clear error at start -----------------------------------------------

def test_unusable_files_are_a_clear_error(pki: PkiFiles, tmp_path: Path) -> None:
    good = TlsFiles(str(pki.controller_cert), str(pki.controller_key), str(pki.ca_cert))
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(CpnError, match=r"^--ofp-tls-key .*nope\.pem: cannot read: No such file"):
        server_context(TlsFiles(good.cert, missing, good.ca))
    with pytest.raises(CpnError, match=r"^--ofp-tls-cert .* / --ofp-tls-key .*: not a PEM "):
        server_context(TlsFiles(good.cert, str(pki.switch_key), good.ca))  # key of another
    with pytest.raises(CpnError, match=r"^--ofp-tls-ca .*switch-cert\.pem: holds no CA cert"):
        server_context(TlsFiles(good.cert, good.key, str(pki.switch_cert)))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(CpnError, match=r"^--ofp-tls-ca .*garbage\.pem: "):
        server_context(TlsFiles(good.cert, good.key, str(garbage)))
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_bytes(pki.controller_key.read_bytes())
    if os.geteuid() != 0:  # root reads any file
        unreadable.chmod(0)
        with pytest.raises(CpnError, match="cannot read: Permission denied"):
            server_context(TlsFiles(good.cert, str(unreadable), good.ca))
    assert server_context(good).verify_mode == ssl.CERT_REQUIRED


def test_cpn_controller_exits_2_naming_an_unusable_tls_file(pki: PkiFiles, tmp_path: Path
                                                            ) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "controller.main", "--topology", "topologies/triangle.yaml",
         "--state-dir", str(tmp_path), "--ofp-tls-cert", str(pki.controller_cert),
         "--ofp-tls-key", str(tmp_path / "missing.pem"), "--ofp-tls-ca", str(pki.ca_cert)],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("cpn-controller: error: --ofp-tls-key "), done.stderr
    assert "missing.pem: cannot read" in done.stderr
    assert not (tmp_path / "cpn.sqlite").exists() and not list(tmp_path.iterdir())


# -- the connection os-ken gets: reads and writes from two threads at once --------------------

def _tls_pair(pki: PkiFiles) -> tuple[TlsConnection, TlsConnection]:
    """Both ends of one TLS connection over loopback, each as a :class:`TlsConnection`."""
    server_ctx = server_context(TlsFiles(str(pki.controller_cert), str(pki.controller_key),
                                         str(pki.ca_cert)))
    a, b = socket.socketpair()
    done: queue.Queue[ssl.SSLSocket] = queue.Queue()
    threading.Thread(target=lambda: done.put(server_ctx.wrap_socket(a, server_side=True)),
                     daemon=True).start()
    client = _client(pki, pki.switch_cert, pki.switch_key).wrap_socket(
        b, server_hostname="localhost")
    return TlsConnection(done.get(timeout=5)), TlsConnection(client)


def _frames(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    return [struct.pack("!II", i, n) + rng.randbytes(n)
            for i, n in enumerate(rng.randrange(0, 6000) for _ in range(count))]


def _read_frames(conn: TlsConnection, count: int) -> list[bytes]:
    out, buf = [], b""
    while len(out) < count:
        while len(buf) >= 8 and len(buf) >= 8 + struct.unpack("!II", buf[:8])[1]:
            n = 8 + struct.unpack("!II", buf[:8])[1]
            out.append(buf[:n])
            buf = buf[n:]
        if len(out) < count:
            data = conn.recv(4096)
            assert data, "the connection ended early"
            buf += data
    return out


def test_a_connection_reads_and_writes_from_two_threads_at_once(pki: PkiFiles) -> None:
    """Four threads (a reader and a writer at each end) move 2 x 600 frames of up to 6 kB
    at the same time; every frame arrives intact and in order."""
    ends = _tls_pair(pki)
    for end in ends:
        end.settimeout(10.0)
    sent = [_frames(1, 600), _frames(2, 600)]
    got: list[list[bytes]] = [[], []]
    errors: list[BaseException] = []

    def guarded(fn: Any, *args: Any) -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    def write(end: TlsConnection, frames: list[bytes]) -> None:
        for f in frames:
            end.sendall(f)

    def read(end: TlsConnection, into: list[bytes]) -> None:
        into.extend(_read_frames(end, 600))

    threads = [threading.Thread(target=guarded, args=(write, ends[0], sent[0])),
               threading.Thread(target=guarded, args=(write, ends[1], sent[1])),
               threading.Thread(target=guarded, args=(read, ends[1], got[0])),
               threading.Thread(target=guarded, args=(read, ends[0], got[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert got == sent
    for end in ends:
        end.close()


def test_a_read_with_nothing_to_read_times_out_and_shutdown_ends_it(pki: PkiFiles) -> None:
    server, client = _tls_pair(pki)
    server.settimeout(0.2)
    with pytest.raises(TimeoutError):
        server.recv(8)
    client.sendall(HELLO)
    assert server.recv(8) == HELLO
    server.settimeout(5.0)
    client.shutdown(socket.SHUT_RDWR)
    assert server.recv(8) == b""  # the peer's end, not a timeout
    server.close()
    client.close()
