"""etcd over TLS with client certificates, on a real etcd child process started with
``--client-cert-auth``: the client does leases, transactions and watches over it; a client
without a certificate, with one from another CA, or trusting another CA is refused at once
with a reason in words; bad files are refused when the client is made, naming the flag and
file; the settings, ``cpn-lab pki --etcd-member``, and the API's refusal of plain HTTP
beyond loopback."""

from __future__ import annotations

import http.client
import logging
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from waiting import wait_until

from controller.cluster.etcd import (
    Compare,
    EtcdAuth,
    EtcdClient,
    EtcdTls,
    Op,
    WatchEvent,
    _short,
)
from controller.cluster.etcdproc import EtcdCluster, EtcdServer, ServerTls
from controller.errors import ClusterUnavailable, CpnError, StoreError
from controller.lab.cli import main as lab_main
from controller.lab.pki import etcd_pki_files, make_etcd_pki, make_pki, server_tls
from controller.main import build_controller, check_api_exposure
from controller.settings import Settings, SettingsError, load_settings
from controller.topology.files import topology_file

REFUSED_WITHIN_S = 5.0
"""a refused handshake fails the request at once; this bounds "at once" loosely (the client's
timeout is 2 s: a hang would show as its timeout, not as a TLS reason)"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("etcd-pki")
    make_etcd_pki(d / "ours", ["m1"])
    make_etcd_pki(d / "other", ["m1"])  # another CA, its own certificates
    return d


@pytest.fixture(scope="module")
def tls_etcd(pki: Path) -> Iterator[EtcdServer]:
    server = EtcdServer(tls=server_tls(pki / "ours", "launcher"))
    server.start()
    yield server
    server.cleanup()


def _member_tls(pki: Path, which: str = "ours") -> EtcdTls:
    return etcd_pki_files(pki / which).client_tls("m1")


@pytest.fixture
def client(tls_etcd: EtcdServer, pki: Path) -> Iterator[EtcdClient]:
    c = EtcdClient([tls_etcd.client_url], tls=_member_tls(pki))
    yield c
    c.close()


# -- over TLS --------------------------------------------------------------------------------

def test_the_launcher_serves_https_with_client_certificates_required(tls_etcd: EtcdServer
                                                                    ) -> None:
    assert tls_etcd.client_url.startswith("https://127.0.0.1:")
    command = tls_etcd.command()
    for flag in ("--cert-file", "--key-file", "--trusted-ca-file", "--client-cert-auth"):
        assert flag in command
    assert tls_etcd.peer_url.startswith("http://127.0.0.1:")  # peers plain, on loopback


def test_leases_transactions_and_watches_over_tls(client: EtcdClient) -> None:
    ns = f"/t/{uuid.uuid4().hex}/"
    lease = client.lease_grant(5)
    won = client.txn([Compare.absent(f"{ns}lock")], [Op.put(f"{ns}lock", "m1", lease.id)])
    lost = client.txn([Compare.absent(f"{ns}lock")], [Op.put(f"{ns}lock", "m2")])
    assert won.succeeded and not lost.succeeded
    kv = client.get(f"{ns}lock")
    assert kv is not None and kv.value == b"m1" and kv.lease == lease.id
    assert client.lease_keepalive(lease.id) >= 1

    seen: list[WatchEvent] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def on_events(events: list[WatchEvent], _revision: int) -> None:
        with lock:
            seen.extend(events)

    watch = client.watch_prefix(ns, won.revision + 1, on_events, errors.append)
    try:
        wait_until(lambda: watch.connected, 5.0, "the watch open over TLS")
        client.put(f"{ns}a", "1")
        client.lease_revoke(lease.id)  # deletes the lock key
        wait_until(lambda: len(seen) >= 2, 5.0, "both events watched over TLS")
    finally:
        watch.cancel()
    with lock:
        assert [(e.type, e.key) for e in seen[:2]] == [("put", f"{ns}a"),
                                                       ("delete", f"{ns}lock")]
    assert errors == []
    assert client.get(f"{ns}lock") is None


def test_a_three_member_tls_etcd_fails_over_between_https_endpoints(pki: Path,
                                                                    tmp_path: Path) -> None:
    with EtcdCluster(3, workdir=tmp_path, tls=server_tls(pki / "ours", "launcher")) as etcd:
        assert all(url.startswith("https://") for url in etcd.client_urls)
        with EtcdClient(etcd.client_urls, tls=_member_tls(pki)) as c:
            c.put("/t/failover", "before")
            etcd.kill(0)  # the endpoint the client used first
            assert c.put("/t/failover", "after") > 0
            kv = c.get("/t/failover")
            assert kv is not None and kv.value == b"after"


def _refused(url: str, tls: EtcdTls | None) -> str:
    c = EtcdClient([url], tls=tls, timeout_s=2.0)
    t0 = time.monotonic()
    try:
        with pytest.raises(ClusterUnavailable) as err:
            c.get("/anything")
    finally:
        c.close()
    assert time.monotonic() - t0 < REFUSED_WITHIN_S
    return str(err.value)


def test_a_client_certificate_from_another_ca_is_refused(tls_etcd: EtcdServer,
                                                         pki: Path) -> None:
    theirs = _member_tls(pki, "other")
    message = _refused(tls_etcd.client_url, EtcdTls(_member_tls(pki).ca, theirs.cert,
                                                    theirs.key))
    # etcd's alert ("bad certificate") or, when the close outruns it, the closed connection
    assert "TLS handshake refused: etcd" in message and "client certificate" in message
    assert tls_etcd.client_url in message


def test_a_client_trusting_another_ca_refuses_etcd(tls_etcd: EtcdServer, pki: Path) -> None:
    ours = _member_tls(pki)
    message = _refused(tls_etcd.client_url, EtcdTls(_member_tls(pki, "other").ca, ours.cert,
                                                    ours.key))
    assert "etcd's server certificate is not signed by the CA this member trusts " \
        "(--etcd-ca)" in message


@pytest.mark.parametrize("error", [
    "('Connection aborted.', RemoteDisconnected('Remote end closed connection without "
    "response'))",
    "('Connection aborted.', ConnectionResetError(104, 'Connection reset by peer'))",
])
def test_plain_http_to_a_tls_etcd_is_named_whether_it_closes_or_resets(error: str) -> None:
    # etcd answers a plain request on its TLS port by closing, or by a reset when the close
    # outruns the request: both are the same mistake
    assert _short(f"http://127.0.0.1:2379: {error}") == \
        "closed the connection without an answer (an https:// etcd asked over http://?)"


def test_a_client_without_tls_settings_is_refused(tls_etcd: EtcdServer) -> None:
    # https:// with no etcd_* settings: the system's CAs, which did not sign etcd's
    message = _refused(tls_etcd.client_url, None)
    assert "etcd's server certificate is not signed by the CA this member trusts" in message
    plain = _refused(tls_etcd.client_url.replace("https://", "http://"), None)
    assert "closed the connection without an answer (an https:// etcd asked over " \
        "http://?)" in plain


def test_etcd_refuses_a_handshake_without_a_client_certificate(tls_etcd: EtcdServer,
                                                               pki: Path) -> None:
    # the member's settings cannot express "right CA, no certificate" (all three or none),
    # so this speaks to etcd directly: what a client that trusts etcd but has no certificate
    # of its own gets
    context = ssl.create_default_context(cafile=_member_tls(pki).ca)
    conn = http.client.HTTPSConnection("127.0.0.1", tls_etcd.client_port, timeout=2.0,
                                       context=context)
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            conn.request("POST", "/v3/kv/range", body='{"key": "YQ=="}')
            conn.getresponse().read()
    finally:
        conn.close()


def test_tls_settings_with_a_plain_endpoint_are_refused(pki: Path) -> None:
    with pytest.raises(StoreError, match=r"'http://127.0.0.1:2379' is plain HTTP, but etcd "
                                         r"TLS \(--etcd-ca .*\) is set: use https://"):
        EtcdClient(["http://127.0.0.1:2379"], tls=_member_tls(pki))


# -- files refused at start, named ----------------------------------------------------------

def test_bad_files_are_refused_naming_the_flag_and_file(pki: Path, tmp_path: Path) -> None:
    good = _member_tls(pki)
    other = _member_tls(pki, "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    cases = [
        (EtcdTls(str(tmp_path / "none.pem"), good.cert, good.key),
         f"--etcd-ca {tmp_path / 'none.pem'}: cannot read: No such file or directory"),
        (EtcdTls(good.ca, str(tmp_path), good.key),
         f"--etcd-cert {tmp_path}: cannot read: Is a directory"),
        (EtcdTls(str(junk), good.cert, good.key), f"--etcd-ca {junk}: not a PEM CA"),
        (EtcdTls(good.cert, good.cert, good.key),
         f"--etcd-ca {good.cert}: holds no CA certificate"),
        (EtcdTls(good.ca, str(junk), good.key),
         f"--etcd-cert {junk} / --etcd-key {good.key}: not a PEM certificate"),
        (EtcdTls(good.ca, good.cert, other.key),
         f"--etcd-key {other.key} is not the key of --etcd-cert {good.cert}"),
    ]
    for tls, expected in cases:
        with pytest.raises(StoreError) as err:
            EtcdClient(["https://127.0.0.1:2379"], tls=tls)
        assert expected in str(err.value), (expected, str(err.value))


# -- settings --------------------------------------------------------------------------------------

def test_etcd_tls_settings_go_together_and_name_what_is_missing() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"CPN_CLUSTER_ETCD_CA": "/etc/cpn/etcd-ca.pem"})
    message = str(err.value)
    assert "etcd over TLS needs etcd_ca, etcd_cert and etcd_key together: etcd_cert, " \
        "etcd_key missing" in message
    assert "environment variable CPN_CLUSTER_ETCD_CA" in message
    s = load_settings(environ={"CPN_CLUSTER_ETCD_CA": "a.pem", "CPN_CLUSTER_ETCD_CERT": "c.pem"},
                      flags={"cluster.etcd_key": "k.pem"})
    assert (s.cluster.etcd_ca, s.cluster.etcd_cert, s.cluster.etcd_key) == \
        ("a.pem", "c.pem", "k.pem")
    assert s.source("cluster.etcd_key") == "flag --etcd-key"
    assert Settings.default("cluster.etcd_ca") is None


def test_etcd_tls_paths_in_a_config_file_are_from_its_directory(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("cluster:\n  etcd_ca: pki/ca.pem\n  etcd_cert: pki/c.pem\n"
                   "  etcd_key: pki/k.pem\n")
    s = load_settings(cfg, environ={})
    assert s.cluster.etcd_ca == str(tmp_path / "pki" / "ca.pem")
    assert s.cluster.etcd_key == str(tmp_path / "pki" / "k.pem")


# -- cpn-lab pki --etcd-member ----------------------------------------------------------------

def test_cpn_lab_pki_makes_an_etcd_ca_server_and_member_certificates(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert lab_main(["pki", str(tmp_path), "--etcd-member", "m1", "--etcd-member", "m2",
                     "--etcd-host", "etcd-a.example.net", "--etcd-host", "10.1.2.3"]) == 0
    out = capsys.readouterr().out
    files = etcd_pki_files(tmp_path)
    assert f"--etcd-cert {files.client_cert('m2')}" in out
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    openflow_ca = x509.load_pem_x509_certificate((tmp_path / "ca-cert.pem").read_bytes())
    assert ca.subject != openflow_ca.subject  # a CA of its own: a switch cannot open etcd
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    usage = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(n.value) for n in names} == {"localhost", "127.0.0.1", "etcd-a.example.net",
                                             "10.1.2.3"}
    for member in ("m1", "m2"):
        cert = x509.load_pem_x509_certificate(files.client_cert(member).read_bytes())
        cert.verify_directly_issued_by(ca)
        assert files.client_key(member).stat().st_mode & 0o777 == 0o600
    # again: everything kept, nothing made
    again = make_etcd_pki(tmp_path, ["m1", "m2"])
    assert again.made == [] and files.server_cert in again.kept


def test_bad_etcd_member_names_and_half_pairs_change_nothing(tmp_path: Path) -> None:
    with pytest.raises(CpnError, match="etcd member names"):
        make_etcd_pki(tmp_path / "a", ["m/1"])
    with pytest.raises(CpnError, match=r"--etcd-host: a DNS name or an IP address each \(got "
                                       r"\['etcd a'\]\)"):
        make_etcd_pki(tmp_path / "a", ["m1"], hosts=["etcd a", "::1"])
    assert not (tmp_path / "a").exists()
    make_etcd_pki(tmp_path / "b", ["m1"])
    files = etcd_pki_files(tmp_path / "b")
    files.client_key("m1").unlink()
    before = sorted(p.name for p in files.dir.iterdir())
    with pytest.raises(CpnError, match="client-m1-cert.pem exists but client-m1-key.pem"):
        make_etcd_pki(tmp_path / "b", ["m1"])
    assert sorted(p.name for p in files.dir.iterdir()) == before
    make_pki(tmp_path / "b")  # the OpenFlow files beside them are independent
    assert isinstance(server_tls(tmp_path / "c"), ServerTls)


# -- the API beyond loopback ----------------------------------------------------------------

def test_a_plain_api_beyond_loopback_is_refused_naming_the_fix(tmp_path: Path) -> None:
    settings = Settings.model_validate({
        "topology": {"file": str(topology_file("triangle"))},
        "state": {"dir": str(tmp_path)},
        "api": {"host": "0.0.0.0", "port": 0}})
    with pytest.raises(CpnError) as err:
        build_controller(settings)
    message = str(err.value)
    assert "the API on 0.0.0.0 (not a loopback address) would send bearer tokens in clear " \
        "text" in message
    for fix in ("--api-tls-cert FILE --api-tls-key FILE", "--api-host",
                "--api-allow-plaintext"):
        assert fix in message
    assert list(tmp_path.iterdir()) == []  # refused before anything was made
    for host in ("127.0.0.1", "::1", "localhost"):  # loopback: as before
        check_api_exposure(Settings.model_validate({"api": {"host": host}}).api)
    check_api_exposure(Settings.model_validate(
        {"api": {"host": "10.0.0.1", "tls_cert": "c.pem", "tls_key": "k.pem"}}).api)


def test_allow_plaintext_starts_beyond_loopback_with_a_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(environ={"CPN_API_ALLOW_PLAINTEXT": "true"}, flags={
        "topology.file": str(topology_file("triangle")), "state.dir": str(tmp_path),
        "api.host": "0.0.0.0", "api.port": 0})
    with caplog.at_level(logging.WARNING, logger="controller.main"):
        handle = build_controller(settings)
    try:
        assert handle.api.url.startswith("http://")
        warned = [r for r in caplog.records if getattr(r, "event", None) == "api_plaintext"]
        assert len(warned) == 1 and "clear text" in warned[0].getMessage()
    finally:
        handle.stop()


def test_the_command_refuses_a_plain_api_beyond_loopback_with_status_2(tmp_path: Path
                                                                       ) -> None:
    done = subprocess.run([sys.executable, "-m", "controller.main", "--topology",
                           str(topology_file("triangle")), "--api-host", "0.0.0.0",
                           "--state-dir", str(tmp_path)], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr
    assert "would send bearer tokens in clear text" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_member_with_unusable_etcd_files_is_refused_naming_the_file(pki: Path,
                                                                      tmp_path: Path) -> None:
    good = _member_tls(pki)
    settings = load_settings(environ={}, flags={
        "topology.file": str(topology_file("triangle")), "state.dir": str(tmp_path),
        "api.port": 0, "cluster.endpoints": "https://127.0.0.1:2379",
        "cluster.member_id": "m1", "cluster.etcd_ca": good.ca,
        "cluster.etcd_cert": good.cert, "cluster.etcd_key": str(tmp_path / "gone.pem")})
    with pytest.raises(StoreError, match=f"--etcd-key {tmp_path / 'gone.pem'}: cannot read"):
        build_controller(settings)


# -- etcd users (auth enable), over TLS -----------------------------------------------------

@pytest.fixture(scope="module")
def auth_etcd(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(workdir=tmp_path_factory.mktemp("etcd-auth"),
                        tls=server_tls(pki / "ours", "launcher"))
    server.start()
    server.enable_auth("root-secret", {"m1": "m1-secret"}, prefix="/cpn")
    yield server
    server.cleanup()


def test_an_etcd_user_works_within_its_prefix_and_after_etcd_restarts(
        auth_etcd: EtcdServer, pki: Path) -> None:
    c = EtcdClient([auth_etcd.client_url], tls=_member_tls(pki),
                   auth=EtcdAuth("m1", "m1-secret"))
    try:
        lease = c.lease_grant(5)
        c.put("/cpn/members/m1", "here", lease.id)
        with pytest.raises(StoreError, match="permission denied"):
            c.get("/elsewhere")
        seen: list[WatchEvent] = []
        start = c.get_prefix("/cpn/")[1] + 1
        watch = c.watch_prefix("/cpn/", start, lambda events, _r: seen.extend(events),
                               lambda exc: None)
        try:
            wait_until(lambda: watch.connected, 5.0, "the watch open as m1")
            # etcd forgets its tokens when it restarts: requests and the watch get new ones
            auth_etcd.restart()
            assert c.lease_keepalive(lease.id) >= 1
            c.put("/cpn/after-restart", "1")
            wait_until(lambda: any(e.key == "/cpn/after-restart" for e in seen), 10.0,
                       "the watch delivering again after etcd restarted")
        finally:
            watch.cancel()
    finally:
        c.close()


def test_wrong_or_missing_etcd_credentials_are_refused_naming_the_user(
        auth_etcd: EtcdServer, pki: Path) -> None:
    with EtcdClient([auth_etcd.client_url], tls=_member_tls(pki),
                    auth=EtcdAuth("m1", "wrong")) as bad, \
            pytest.raises(StoreError, match="etcd refused user 'm1': .*authentication failed"):
        bad.get("/cpn/x")
    with EtcdClient([auth_etcd.client_url], tls=_member_tls(pki)) as anonymous, \
            pytest.raises(StoreError, match="user name is empty"):
        anonymous.get("/cpn/x")
    assert "wrong" not in repr(EtcdAuth("m1", "wrong"))


def test_etcd_user_settings_and_the_password_file(pki: Path, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="etcd_user and etcd_password_file together"):
        load_settings(environ={"CPN_CLUSTER_ETCD_USER": "m1"})
    good = _member_tls(pki)
    for content, expected in ((None, "cannot read"), ("\n", "empty")):
        pw = tmp_path / "pw"
        pw.unlink(missing_ok=True)
        if content is not None:
            pw.write_text(content)
        settings = load_settings(environ={}, flags={
            "topology.file": str(topology_file("triangle")), "state.dir": str(tmp_path),
            "api.port": 0, "cluster.endpoints": "https://127.0.0.1:2379",
            "cluster.member_id": "m1", "cluster.etcd_ca": good.ca,
            "cluster.etcd_cert": good.cert, "cluster.etcd_key": good.key,
            "cluster.etcd_user": "m1", "cluster.etcd_password_file": str(pw)})
        with pytest.raises(CpnError, match=f"--etcd-password-file {pw}: {expected}"):
            build_controller(settings)
