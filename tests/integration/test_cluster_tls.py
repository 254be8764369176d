"""A cluster on an etcd that speaks only TLS with client certificates (``--client-cert-auth``)
and has its authentication on (a user per member, allowed the cluster's prefix only); members
as processes, no switches: two members with their own certificates and users join, split the
switches between them, share an intent through etcd, and one takes over when the other is
killed; a member whose certificate another CA signed is refused at start, naming the reason."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_harness import TOKEN, MemberProcess
from harness import REPO, free_port
from waiting import wait_until

from controller.cluster.etcdproc import EtcdServer
from controller.lab.pki import etcd_pki_files, make_etcd_pki, server_tls
from controller.topology.files import topology_file

DIAMOND = topology_file("diamond")
PASSWORDS = {"m1": "m1-etcd-password", "m2": "m2-etcd-password"}


def _tls_flags(pki: Path, member: str) -> list[str]:
    files = etcd_pki_files(pki)
    return ["--etcd-ca", str(files.ca_cert), "--etcd-cert", str(files.client_cert(member)),
            "--etcd-key", str(files.client_key(member))]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_etcd_pki(d, ["m1", "m2"])
    return d


@pytest.fixture(scope="module")
def etcd(pki: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(workdir=tmp_path_factory.mktemp("etcd"),
                        tls=server_tls(pki, "launcher"))
    server.start()
    server.enable_auth("root-etcd-password", PASSWORDS, prefix="/cpn")
    yield server
    server.cleanup()


@pytest.fixture
def members(etcd: EtcdServer, pki: Path, tmp_path: Path) -> Iterator[list[MemberProcess]]:
    started: list[MemberProcess] = []
    try:
        for member_id in ("m1", "m2"):
            password_file = tmp_path / f"{member_id}-etcd-password"
            password_file.write_text(PASSWORDS[member_id] + "\n")
            m = MemberProcess(DIAMOND, tmp_path, member_id, etcd.client_url,
                              extra=[*_tls_flags(pki, member_id), "--etcd-user", member_id,
                                     "--etcd-password-file", str(password_file)])
            m.api_token = TOKEN
            m.start(timeout_s=30.0)
            started.append(m)
        yield started
    finally:
        for m in started:
            m.stop()


def test_members_on_a_tls_etcd_with_users_elect_share_and_take_over(members: list[MemberProcess],
                                                         etcd: EtcdServer) -> None:
    m1, m2 = members
    assert etcd.client_url.startswith("https://")

    def spread() -> bool:
        masters = m2.masters()
        return None not in masters.values() and set(masters.values()) == {"m1", "m2"}

    wait_until(spread, 15.0, "every switch mastered, by both members",
               detail=lambda: str(m2.masters()))
    assert all(m["alive"] for m in m1.cluster()["members"])
    assert m1.cluster()["etcd"]["healthy"] is True

    r = m1.post("/intents", {"src": "h1", "dst": "h2", "max_latency_ms": 50.0,
                             "name": "over-tls"})
    assert r.status_code == 201, r.text
    wait_until(lambda: "over-tls" in {i["name"] for i in m2.get("/intents")}, 10.0,
               "the intent replicated to m2 through the TLS etcd's watch")

    m1.kill()
    wait_until(lambda: set(m2.masters().values()) == {"m2"}, 15.0,
               "m2 master of every switch after m1 died", detail=lambda: str(m2.masters()))
    assert "event=etcd_watch_broken" not in m2.log_text()


def test_a_member_with_a_certificate_of_another_ca_is_refused(etcd: EtcdServer, pki: Path,
                                                              tmp_path: Path) -> None:
    other = tmp_path / "other-pki"
    make_etcd_pki(other, ["m3"])
    # trusts etcd's CA, but presents a certificate etcd's CA did not sign
    flags = ["--etcd-ca", str(etcd_pki_files(pki).ca_cert), *_tls_flags(other, "m3")[2:]]
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "controller.main", "--topology",
                           str(DIAMOND), "--ofp-port", str(free_port()), "--api-port",
                           str(free_port()), "--state-dir", str(tmp_path / "st"),
                           "--cluster", etcd.client_url, "--member-id", "m3", *flags],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    assert f"etcd does not answer at {etcd.client_url}" in done.stderr
    assert "TLS handshake refused" in done.stderr
    assert took < 15.0, f"refused after {took:.1f} s"
