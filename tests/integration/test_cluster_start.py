"""Starting cluster members with bad input (real etcd, members as processes, no switches):
a second member with a live member's id is refused, an etcd address that does not answer
fails start-up naming it, and hand-written junk in etcd is logged and skipped."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cluster_harness import TOKEN, MemberProcess
from harness import REPO, free_port
from waiting import wait_until

from controller.cluster.etcd import EtcdClient
from controller.cluster.etcdproc import EtcdServer
from controller.topology.files import topology_file

DIAMOND = topology_file("diamond")


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(workdir=tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def member(etcd: EtcdServer, tmp_path: Path) -> Iterator[MemberProcess]:
    m = MemberProcess(DIAMOND, tmp_path, "m1", etcd.client_url,
                      extra=["--log-level", "info"])
    m.api_token = TOKEN
    m.start(timeout_s=30.0)
    yield m
    m.stop()


def _run(args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.main", "--topology",
                           str(DIAMOND), "--ofp-port", str(free_port()), "--api-port",
                           str(free_port()), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout_s)


def test_a_second_member_with_a_live_members_id_is_refused(member: MemberProcess,
                                                            tmp_path: Path) -> None:
    t0 = time.monotonic()
    done = _run(["--cluster", member.endpoints, "--member-id", "m1", "--state-dir",
                 str(tmp_path / "dup")], 30.0)
    assert done.returncode == 2, done.stderr
    assert "member id 'm1' is in use by a live member (API http://127.0.0.1:" \
        f"{member.api_port}, OpenFlow tcp:127.0.0.1:{member.port})" in done.stderr
    assert time.monotonic() - t0 < 15.0
    assert member.cluster()["members"][0]["alive"]  # the first one is untouched


def test_an_etcd_address_that_does_not_answer_fails_start_up_naming_it(tmp_path: Path
                                                                     ) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    done = _run(["--cluster", dead, "--member-id", "m1", "--state-dir", str(tmp_path)], 30.0)
    took = time.monotonic() - t0
    assert done.returncode == 2, done.stderr
    assert f"etcd does not answer at {dead}" in done.stderr
    assert took < 10.0, f"start-up failed after {took:.1f} s"


def test_junk_written_by_hand_is_logged_and_skipped(member: MemberProcess,
                                                    etcd: EtcdServer) -> None:
    ok = member.post("/intents", {"src": "h1", "dst": "h2", "max_latency_ms": 50.0,
                                  "name": "good"})
    assert ok.status_code == 201, ok.text
    client = EtcdClient([etcd.client_url])
    client.put("/cpn/intents/0000000999", "{broken json")
    client.put("/cpn/intents/0000000998", '{"src": "h1"}')  # no dst, no bound
    client.put("/cpn/compute/sites/x", "not json")
    client.put("/cpn/masters/zz", "m1")
    client.put("/cpn/members/ghost", "[]")
    wait_until(lambda: member.log_text().count("event=store_malformed") >= 3, 10.0,
               "the junk logged", detail=member.log_tail)
    after = member.post("/intents", {"src": "h2", "dst": "h1", "max_latency_ms": 50.0,
                                     "name": "after-junk"})
    assert after.status_code == 201, after.text
    names = {i["name"] for i in member.get("/intents")}
    assert {"good", "after-junk"} <= names
    assert member.proc is not None and member.proc.poll() is None
    health = httpx.get(f"{member.url}/health", timeout=5.0).json()
    assert health["cluster"]["writable"] is True
    for key in ("/cpn/intents/0000000999", "/cpn/intents/0000000998",
                "/cpn/compute/sites/x", "/cpn/masters/zz", "/cpn/members/ghost"):
        client.delete(key)


def test_a_batch_is_one_transaction_with_consecutive_ids(member: MemberProcess,
                                                         etcd: EtcdServer) -> None:
    client = EtcdClient([etcd.client_url])
    before = client.get_prefix("/cpn/intents/")[0]
    bad = member.post("/intents/batch", {"intents": [
        {"src": "h1", "dst": "h2", "max_latency_ms": 50.0},
        {"src": "h1", "dst": "nowhere", "max_latency_ms": 50.0}]})
    assert bad.status_code == 404 and "intents[1]" in bad.json()["detail"], bad.text
    assert client.get_prefix("/cpn/intents/")[0] == before  # nothing committed
    batch = [{"src": "h1", "dst": "h2", "max_latency_ms": 50.0, "name": f"batch-{i}",
              "match": {"ip_proto": 17, "dst_port": 2000 + i}} for i in range(50)]
    r = member.post("/intents/batch", {"intents": batch})
    assert r.status_code == 201, r.text
    ids = [i["id"] for i in r.json()]
    assert ids == list(range(ids[0], ids[0] + 50))
    kvs = {kv.key: kv for kv in client.get_prefix("/cpn/intents/")[0]}
    revisions = {kvs[f"/cpn/intents/{i:010d}"].mod_revision for i in ids}
    assert len(revisions) == 1  # one etcd transaction
    assert {i["name"] for i in member.get("/intents")} >= {f"batch-{i}" for i in range(50)}
