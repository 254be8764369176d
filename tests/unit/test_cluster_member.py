"""Cluster members on a real etcd (a child process), with a stand-in service: mastership is
spread and agreed, a member's id is its own, a member that leaves, dies or freezes has its
switches taken over (at once, at once, and after the lease TTL), a member cut off fences
itself, and hand-written junk in the cluster's keys is skipped."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_fakes import FakeService
from waiting import wait_until

from controller.cluster.etcd import EtcdClient
from controller.cluster.etcdproc import EtcdServer
from controller.cluster.member import ClusterMember, master_key, member_key
from controller.errors import ClusterUnavailable, CpnError

REPO = Path(__file__).resolve().parents[2]
N = 52
_prefixes = itertools.count(1)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(workdir=tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"/test-member-{os.getpid()}-{next(_prefixes)}"


class Members:
    def __init__(self, etcd: EtcdServer, prefix: str) -> None:
        self.etcd, self.prefix = etcd, prefix
        self.all: list[tuple[ClusterMember, FakeService]] = []

    def start(self, member_id: str, **kw: Any) -> tuple[ClusterMember, FakeService]:
        service = FakeService(N)
        m = ClusterMember(EtcdClient([self.etcd.client_url]), service,  # type: ignore[arg-type]
                          member_id=member_id, prefix=self.prefix, **kw)
        m.join()
        self.all.append((m, service))
        return m, service

    def stop(self) -> None:
        for m, _ in self.all:
            m.leave()


@pytest.fixture
def members(etcd: EtcdServer, prefix: str) -> Iterator[Members]:
    ms = Members(etcd, prefix)
    yield ms
    ms.stop()


def _agreed(ms: list[tuple[ClusterMember, FakeService]]) -> dict[int, str | None] | None:
    views = [m.switch_masters() for m, _ in ms]
    if any(v != views[0] for v in views) or None in views[0].values():
        return None
    for m, service in ms:  # the service was told: exactly its share, as master
        if service.mastered() != {d for d, o in views[0].items() if o == m.member_id}:
            return None
    return views[0]


def test_three_members_spread_52_switches_and_agree(members: Members) -> None:
    ms = [members.start(f"m{i}") for i in (1, 2, 3)]
    view = wait_until(lambda: _agreed(ms), 10.0, "three members agreeing on the masters")
    assert sorted(Counter(view.values()).values()) == [17, 17, 18]
    status = ms[0][0].status()
    assert [r["id"] for r in status["members"]] == ["m1", "m2", "m3"]
    assert all(r["alive"] for r in status["members"])
    gens = {s["generation_id"] for s in status["switches"]}
    assert None not in gens and len(gens) >= 3  # one claim transaction per member at least


def test_a_second_member_with_the_same_id_is_refused(members: Members) -> None:
    members.start("m1", api_url="http://127.0.0.1:1111", openflow="tcp:127.0.0.1:6653")
    t0 = time.monotonic()
    with pytest.raises(CpnError, match=r"member id 'm1' is in use by a live member \(API "
                                       r"http://127.0.0.1:1111, OpenFlow tcp:127.0.0.1:6653\)"):
        members.start("m1")
    assert time.monotonic() - t0 < 10.0


def test_a_member_leaving_hands_its_switches_over_at_once(members: Members) -> None:
    ms = [members.start(f"m{i}") for i in (1, 2, 3)]
    wait_until(lambda: _agreed(ms), 10.0, "agreement")
    leaving, _ = ms[2]
    leaving.leave()
    members.all.remove(ms[2])
    t0 = time.monotonic()
    view = wait_until(lambda: _agreed(ms[:2]), 5.0, "the two left masters of everything")
    assert time.monotonic() - t0 < 1.0  # the lease was revoked, not left to expire
    assert sorted(Counter(view.values()).values()) == [26, 26]
    rows = {r["id"]: r for r in ms[0][0].status()["members"]}
    assert (rows["m3"]["alive"], rows["m3"]["masters"]) == (False, 0)  # shown as gone
    assert rows["m1"]["alive"] and rows["m2"]["alive"]


def _member_process(etcd: EtcdServer, prefix: str, member_id: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "unit" / "cluster_fakes.py"),
                             etcd.client_url, prefix, member_id, str(N)],
                            stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "joined"
    return proc


@pytest.mark.parametrize("how", ["sigkill", "sigstop"])
def test_a_dead_member_is_seen_at_once_and_a_frozen_one_after_its_lease(
        members: Members, etcd: EtcdServer, prefix: str, how: str) -> None:
    proc = _member_process(etcd, prefix, "m0")
    try:
        ms = [members.start("m1"), members.start("m2")]
        wait_until(lambda: (v := _agreed(ms)) is not None and set(v.values()) == {
            "m0", "m1", "m2"}, 10.0, "three masters")
        theirs = {d for d, o in ms[0][0].switch_masters().items() if o == "m0"}
        assert len(theirs) in (17, 18)
        before = sum(len(m.takeovers) for m, _ in ms)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGSTOP)
        wait_until(lambda: (v := _agreed(ms)) is not None and "m0" not in v.values(), 10.0,
                   "the survivors mastering every switch", poll_s=0.01)
        took = time.monotonic() - t0
        if how == "sigkill":
            assert took < 0.5, f"takeover after a kill took {took:.2f} s"
        else:
            # the lease (1 s) ran out: the last renewal came at most a quarter TTL earlier
            assert 0.6 < took < 4.0, f"takeover after a freeze took {took:.2f} s"
        assert sum(len(m.takeovers) for m, _ in ms) - before == len(theirs)
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.kill()
        proc.wait(timeout=10)


def test_a_member_that_cannot_reach_etcd_fences_itself(members: Members,
                                                       etcd: EtcdServer) -> None:
    ms = [members.start("m1")]
    m, service = ms[0]
    wait_until(lambda: len(service.mastered()) == N, 10.0, "m1 masters all")
    etcd.kill()
    try:
        wait_until(lambda: not m.writable(), 3.0, "m1 fenced", poll_s=0.05)
        assert service.mastered() == set() and service.demotions >= 1
        assert m.stale() and m.status()["etcd"]["healthy"] is False
    finally:
        etcd.restart()
    wait_until(lambda: m.writable() and len(service.mastered()) == N, 15.0,
               "m1 back as master of everything")


def test_junk_in_the_cluster_keys_is_skipped(members: Members, etcd: EtcdServer,
                                             prefix: str, caplog: pytest.LogCaptureFixture
                                             ) -> None:
    client = EtcdClient([etcd.client_url])
    client.put(member_key(prefix, "junk"), "{not json")
    client.put(f"{prefix}/masters/not-a-dpid", "m9")
    client.put(f"{prefix}/status/m1", "[]")
    ms = [members.start("m1")]
    wait_until(lambda: _agreed(ms), 10.0, "m1 masters every switch despite the junk")
    client.put(master_key(prefix, 10**9), "m7")  # a dpid outside the topology
    client.put(member_key(prefix, "junk2"), "42")
    time.sleep(0.3)
    assert ms[0][0].writable()
    assert "malformed cluster key" in caplog.text


def test_an_etcd_address_that_does_not_answer_fails_fast() -> None:
    client = EtcdClient(["http://127.0.0.1:9"], timeout_s=1.0)
    m = ClusterMember(client, FakeService(4), member_id="m1",  # type: ignore[arg-type]
                      prefix="/nowhere")
    t0 = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="127.0.0.1:9"):
        m.join()
    assert time.monotonic() - t0 < 5.0
    m.leave()
