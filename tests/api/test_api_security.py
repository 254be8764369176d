"""REST security on a real server (uvicorn on loopback, real SQLite): HTTPS with a CA the
test makes, roles from a token file holding only hashes, the audit trail of every write and
refused write, the per-token write rate limit; and ``cpnctl`` against all of it."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from controller.api.tokens import TokenFileError, add_token
from controller.errors import CpnError
from controller.main import Controller, build_controller
from controller.settings import Settings
from controller.topology.files import topology_file
from tests.waiting import wait_until

from .conftest import ROOT, MakeApi, assert_error
from .test_cluster_api import FakeCluster

DEFAULT = "default-token-0123456789"
INTENT = {"src": "h1", "dst": "h2", "max_latency_ms": 50}
SITE = {"id": "cs:s4:gpu-1", "node": "s4", "capacity": 10, "kind": "intelligent"}

Start = Callable[..., Controller]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(**api_settings)``: a controller on the diamond with the default token
    ``DEFAULT`` and the given ``api`` settings (port 0)."""
    started: list[Controller] = []
    token_file = tmp_path / "api-token"
    token_file.write_text(DEFAULT)

    def make(read_open: bool | None = None, **api: Any) -> Controller:
        settings = Settings.model_validate({
            "topology": {"file": str(topology_file("diamond"))},
            "api": {"host": "127.0.0.1", "port": 0, "token_file": str(token_file), **api},
            "state": {"dir": str(tmp_path / "state")}})
        c = build_controller(settings, read_open=read_open)
        started.append(c)
        return c

    yield make
    for c in started:
        c.stop()  # a second stop of one a test stopped itself does nothing


def _client(c: Controller, token: str | None, **kw: Any) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=f"{c.url}/api/v1", headers=headers, timeout=10.0, **kw)


def _tokens(path: Path) -> dict[str, str]:
    return {role: add_token(path, f"{role}-1", role) for role in ("viewer", "operator", "admin")}


def cpnctl(url: str, *args: str, token: str | None = None,
           env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CPN_URL", "CPN_TOKEN",
                                                             "CPN_CACERT")}
    env.update({"CPN_URL": url, "XDG_DATA_HOME": "/nonexistent-cpnctl-test",
                **({"CPN_TOKEN": token} if token else {}), **(env_extra or {})})
    return subprocess.run([sys.executable, "-m", "controller.api.cli", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


# -- roles ---------------------------------------------------------------------------------

def test_each_role_may_do_its_calls_and_is_refused_beyond_them(start: Start,
                                                                tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens.yaml")
    c = start(read_open=False, tokens_file=str(tmp_path / "tokens.yaml"))
    viewer, operator, admin = (_client(c, tokens[r]) for r in ("viewer", "operator", "admin"))
    # reads: any valid token (this API needs a token for reads), none or a wrong one is 401
    assert viewer.get("/intents").status_code == 200
    assert_error(_client(c, None).get("/intents"), 401, "unauthorized")
    assert_error(_client(c, "nope").get("/intents"), 401, "unauthorized")
    # the viewer writes nothing; the body says which role the call needs
    body = assert_error(viewer.post("/intents", json=INTENT), 403, "forbidden")
    assert body["required_role"] == "operator" and "viewer-1" in body["detail"]
    # the operator: intents and placements, not the compute estate
    added = operator.post("/intents", json=INTENT)
    assert added.status_code == 201, added.text
    body = assert_error(operator.post("/compute-sites", json=SITE), 403, "forbidden")
    assert body["required_role"] == "admin"
    assert_error(operator.get("/audit"), 403, "forbidden")
    # the admin: everything; so is the single token of older setups
    assert admin.post("/compute-sites", json=SITE).status_code == 201
    assert operator.delete(f"/intents/{added.json()['id']}").status_code == 200
    old = _client(c, DEFAULT)
    assert old.delete(f"/compute-sites/{SITE['id']}").status_code == 200
    assert old.get("/audit").status_code == 200
    # nothing refused changed anything
    assert [s["id"] for s in admin.get("/compute-sites").json()] == \
        [s.id for s in c.service.topology.compute_sites]
    assert [i["id"] for i in viewer.get("/intents").json()] == [1, 2]


def test_open_reads_on_loopback_but_the_audit_needs_admin(start: Start) -> None:
    c = start()
    anyone = _client(c, None)
    assert anyone.get("/intents").status_code == 200
    assert_error(anyone.get("/audit"), 401, "unauthorized")
    assert_error(anyone.post("/intents", json=INTENT), 401, "unauthorized")


def test_a_bad_token_file_stops_the_start_naming_line_and_field(start: Start,
                                                                tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tokens:\n  - name: ops\n    role: superuser\n    sha256: " + "0" * 64 + "\n")
    with pytest.raises(TokenFileError, match=r"bad\.yaml:3: tokens\[0\]\.role: unknown role"):
        start(tokens_file=str(bad))
    with pytest.raises(TokenFileError, match="does not exist"):
        start(tokens_file=str(tmp_path / "missing.yaml"))


# -- the audit trail -----------------------------------------------------------------------

def test_every_write_and_refused_write_is_audited_with_a_digest_of_its_body(
        start: Start, tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens.yaml")
    c = start(tokens_file=str(tmp_path / "tokens.yaml"), audit_retention=6)
    viewer, operator = _client(c, tokens["viewer"]), _client(c, tokens["operator"])
    admin = _client(c, tokens["admin"])
    raw = json.dumps(INTENT).encode()
    js = {"content-type": "application/json"}
    calls = [
        (_client(c, None).post("/intents", content=raw, headers=js), None, 401),
        (viewer.post("/intents", content=raw, headers=js), "viewer-1", 403),
        (operator.post("/intents", content=raw, headers=js), "operator-1", 201),
        (operator.post("/intents", content=b'{"src": "h1"', headers=js), "operator-1", 422),
        (operator.delete("/intents/99"), "operator-1", 404),
    ]
    assert [r.status_code for r, _, _ in calls] == [s for _, _, s in calls]
    records = admin.get("/audit", params={"limit": 10}).json()
    assert [(a["method"], a["path"], a["token"], a["status"]) for a in records] == [
        ("POST", "/api/v1/intents", None, 401), ("POST", "/api/v1/intents", "viewer-1", 403),
        ("POST", "/api/v1/intents", "operator-1", 201),
        ("POST", "/api/v1/intents", "operator-1", 422),
        ("DELETE", "/api/v1/intents/99", "operator-1", 404)]
    assert {a["remote"] for a in records} == {"127.0.0.1"}
    assert records[0]["body_sha256"] == hashlib.sha256(raw).hexdigest()
    assert records[3]["body_sha256"] == hashlib.sha256(b'{"src": "h1"').hexdigest()
    assert records[4]["body_sha256"] == hashlib.sha256(b"").hexdigest()
    ids = [a["id"] for a in records]
    assert ids == sorted(ids) and records[0]["time"].endswith("+00:00")
    # reads are not audited; paging by id; retention keeps the latest 6
    assert [a["id"] for a in admin.get("/audit", params={"since": ids[2]}).json()] == ids[3:]
    for _ in range(3):
        viewer.post("/compute-sites", json=SITE)
    kept = admin.get("/audit", params={"limit": 100}).json()
    assert len(kept) == 6 and kept[0]["id"] == ids[2] and kept[-1]["path"] == \
        "/api/v1/compute-sites"
    assert_error(admin.get("/audit", params={"limit": 0}), 422)
    # cpnctl reads it too (admin), as a table and as JSON
    table = cpnctl(c.url, "audit", "--limit", "3", token=tokens["admin"])
    assert table.returncode == 0 and "viewer-1" in table.stdout and "403" in table.stdout
    as_json = json.loads(cpnctl(c.url, "--json", "audit", token=tokens["admin"]).stdout)
    assert [a["id"] for a in as_json] == [a["id"] for a in kept]
    refused = cpnctl(c.url, "audit", token=tokens["operator"])
    assert refused.returncode == 1 and "403 forbidden" in refused.stderr


def test_the_audit_trail_survives_a_restart_and_a_store_outage(start: Start,
                                                               tmp_path: Path) -> None:
    c = start()
    admin = _client(c, DEFAULT)
    store = c.store
    real_add = store.add_audit
    down: list[bool] = [True]

    def flaky(records: Any, *, retention: int) -> list[int]:
        if down[0]:
            raise CpnError("the store is down (test)")
        return real_add(records, retention=retention)

    store.add_audit = flaky  # type: ignore[method-assign]
    r = admin.post("/intents", json=INTENT)
    assert r.status_code == 201, r.text  # the request does not wait for, or fail with, it
    assert store.audit() == []
    down[0] = False
    wait_until(lambda: store.audit(), timeout_s=5.0, message="the record written later")
    assert [a["status"] for a in store.audit()] == [201]
    c.stop()
    again = start()
    assert [(a["path"], a["token"]) for a in _client(again, DEFAULT).get("/audit").json()] \
        == [("/api/v1/intents", "default")]


# -- the write rate limit ------------------------------------------------------------------

def test_writes_beyond_a_tokens_rate_answer_429_with_retry_after(start: Start,
                                                                 tmp_path: Path) -> None:
    tokens = _tokens(tmp_path / "tokens.yaml")
    c = start(tokens_file=str(tmp_path / "tokens.yaml"), write_rate_per_s=0.2, write_burst=2)
    refused_before = _refused(c)
    operator = _client(c, tokens["operator"])
    answers = [operator.delete(f"/intents/{90 + i}").status_code for i in range(3)]
    assert answers == [404, 404, 429]
    limited = operator.delete("/intents/99")
    body = assert_error(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) in (4, 5) and "operator-1" in body["detail"]
    # reads are not limited; another token has its own bucket; a refused write takes none
    assert all(operator.get("/intents").status_code == 200 for _ in range(10))
    viewer = _client(c, tokens["viewer"])
    assert [viewer.delete("/intents/9").status_code for _ in range(4)] == [403] * 4
    assert _client(c, tokens["admin"]).delete("/intents/99").status_code == 404
    statuses = [a["status"] for a in _client(c, DEFAULT).get("/audit").json()]
    assert statuses.count(429) == 2
    refused = _refused(c)
    assert refused["rate_limited"] - refused_before.get("rate_limited", 0) == 2
    assert refused["forbidden"] - refused_before.get("forbidden", 0) == 4


def _refused(c: Controller) -> dict[str, float]:
    """``cpn_api_refused_total`` by reason, as /metrics serves it."""
    text = httpx.get(f"{c.url}/metrics", timeout=10.0).text
    return {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^cpn_api_refused_total\{reason="(\w+)"\} (\S+)$', text, re.M)}


def test_openapi_states_roles_403_and_429(start: Start) -> None:
    doc = httpx.get(f"{start().url}/openapi.json", timeout=10.0).json()
    paths = doc["paths"]
    site_post = paths["/api/v1/compute-sites"]["post"]
    assert {"401", "403", "429"} <= set(site_post["responses"])
    assert "Needs role **admin**" in site_post["description"]
    assert "Retry-After" in site_post["responses"]["429"]["headers"]
    assert "Needs role **operator**" in paths["/api/v1/intents"]["post"]["description"]
    assert "403" not in paths["/api/v1/intents"]["get"]["responses"]
    assert {"401", "403"} <= set(paths["/api/v1/audit"]["get"]["responses"])
    assert "required_role" in doc["components"]["schemas"]["ErrorBody"]["properties"]


# -- HTTPS ---------------------------------------------------------------------------------

def _ca(tmp: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    path = tmp / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def _server_cert(tmp: Path, ca_key: ec.EllipticCurvePrivateKey,
                 ca_cert: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cpn-api")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path, key_path = tmp / "api.pem", tmp / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_with_a_ca_cpnctl_verifies_and_refuses_another_ca(start: Start,
                                                                tmp_path: Path) -> None:
    ca_path, ca_key, ca_cert = _ca(tmp_path, "cpn-test-ca")
    other_ca, _, _ = _ca(tmp_path, "other-ca")
    cert, key = _server_cert(tmp_path, ca_key, ca_cert)
    c = start(tls_cert=str(cert), tls_key=str(key))
    assert c.url.startswith("https://127.0.0.1:")
    trust_ca = ssl.create_default_context(cafile=str(ca_path))
    with _client(c, DEFAULT, verify=trust_ca) as tls:
        assert tls.get("/health").status_code == 200
        assert tls.post("/intents", json=INTENT).status_code == 201
    with pytest.raises(httpx.ConnectError):  # a client that does not trust the CA
        _client(c, None).get("/health")
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the TLS port
        httpx.get(c.url.replace("https://", "http://") + "/api/v1/health", timeout=5.0)
    ok = cpnctl(c.url, "--cacert", str(ca_path), "intents", "list")
    assert ok.returncode == 0 and "intent-3" in ok.stdout, ok.stderr
    env = cpnctl(c.url, "health", env_extra={"CPN_CACERT": str(ca_path)})
    assert env.returncode == 0 and "diamond" in env.stdout, env.stderr
    wrong = cpnctl(c.url, "--cacert", str(other_ca), "health")
    assert wrong.returncode == 3
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in wrong.stderr, wrong.stderr
    assert "certificate verify failed" in lines[0] and str(other_ca) in lines[0]
    missing = cpnctl(c.url, "--cacert", str(tmp_path / "nope.pem"), "health")
    assert missing.returncode == 2 and "cannot use CA file" in missing.stderr
    # the audit trail records HTTPS writes like any other
    audit = _client(c, DEFAULT, verify=trust_ca).get("/audit").json()
    assert [(a["path"], a["status"]) for a in audit] == [("/api/v1/intents", 201)]


def test_unusable_tls_files_stop_the_start_naming_them(start: Start, tmp_path: Path) -> None:
    _, ca_key, ca_cert = _ca(tmp_path, "ca")
    cert, key = _server_cert(tmp_path, ca_key, ca_cert)
    with pytest.raises(CpnError, match="no such file"):
        start(tls_cert=str(tmp_path / "absent.pem"), tls_key=str(key))
    with pytest.raises(CpnError, match=f"cannot use certificate {cert}"):
        start(tls_cert=str(cert), tls_key=str(cert))


# -- cpnctl token --------------------------------------------------------------------------

def test_cpnctl_token_new_prints_it_once_and_the_controller_takes_it(start: Start,
                                                                     tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    c = start(tokens_file=None)  # the state directory's api-tokens.yaml, absent for now
    made = cpnctl(c.url, "token", "new", "ops", "--role", "operator",
                  env_extra={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert made.returncode == 0 and "only time" in made.stderr
    default_file = tmp_path / "xdg" / "cpn-controller" / "api-tokens.yaml"
    assert default_file.exists()
    made = cpnctl(c.url, "token", "new", "ops", "--role", "operator", "--file", str(path))
    token = made.stdout.strip()
    assert made.returncode == 0 and len(token) == 43 and token not in path.read_text()
    listed = cpnctl(c.url, "token", "list", "--file", str(path))
    assert listed.returncode == 0 and "ops" in listed.stdout and "operator" in listed.stdout
    again = cpnctl(c.url, "token", "new", "ops", "--role", "admin", "--file", str(path))
    assert again.returncode == 2 and "exists already" in again.stderr
    cpnctl(c.url, "token", "new", "tmp", "--role", "viewer", "--file", str(path))
    removed = cpnctl(c.url, "token", "remove", "tmp", "--file", str(path))
    assert removed.returncode == 0 and "'tmp' (viewer) removed" in removed.stdout
    names = json.loads(cpnctl(c.url, "--json", "token", "list", "--file", str(path)).stdout)
    assert names == [{"name": "ops", "role": "operator"}]
    # the running controller re-reads its token file: move this one into place
    state_file = Path(c.store.path).parent / "api-tokens.yaml"  # type: ignore[attr-defined]
    ops = _client(c, token)
    assert_error(ops.post("/intents", json=INTENT), 401)
    state_file.write_text(path.read_text())
    wait_until(lambda: ops.post("/intents", json=INTENT).status_code == 201, timeout_s=5.0,
               message="the new token accepted")


def test_a_write_the_cluster_gate_refuses_is_audited(make_api: MakeApi) -> None:
    """The audit layer sits outside the cluster gate: a member cut off from etcd refuses
    writes with 503 before any handler, and the refusal is recorded with the token's name."""
    fake = FakeCluster({1: "s1", 2: "s2", 3: "s3", 4: "s4"}, {1: "m1", 2: "m1", 3: "m1",
                                                               4: "m1"})
    api = make_api("diamond", cluster=fake)
    fake.writable_ = False
    with api.client() as c:
        assert_error(c.post("/intents", json=INTENT), 503, "cluster_unavailable")
        fake.writable_ = True
        audit = c.get("/audit").json()
    assert [(a["token"], a["status"], a["path"]) for a in audit] == [
        ("default", 503, "/api/v1/intents")]
