"""The etcd layer on real etcd child processes: the client (transactions, leases, watches,
failover between members), the process launcher, and what :class:`EtcdStore` adds to the
store contract (tests/unit/test_store.py runs that contract on etcd too)."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from waiting import wait_until

from controller.cluster.etcd import (
    KV,
    Compare,
    EtcdClient,
    Op,
    WatchEvent,
    prefix_end,
    prefix_range,
)
from controller.cluster.etcdproc import NOT_INSTALLED, EtcdCluster, EtcdServer, etcd_binary
from controller.errors import ClusterUnavailable, StaleWrite, StoreError
from controller.store import Store
from controller.store.etcd import EtcdStore, StoreEvent, open_etcd_store
from controller.topology.model import IntentSpec

SPEC = IntentSpec("h1", "h2", 10.0)


@pytest.fixture
def client(etcd_server: EtcdServer) -> Iterator[EtcdClient]:
    c = EtcdClient([etcd_server.client_url])
    yield c
    c.close()


@pytest.fixture
def ns() -> str:
    """A key prefix no other test uses."""
    return f"/t/{uuid.uuid4().hex}/"


@pytest.fixture
def store(etcd_server: EtcdServer) -> Iterator[EtcdStore]:
    s = open_etcd_store(etcd_server.client_url, prefix=f"/t/{uuid.uuid4().hex}")
    yield s
    s.close()


class Collector:
    """A watch's callbacks, recorded."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[WatchEvent], int]] = []
        self.errors: list[Exception] = []
        self.lock = threading.Lock()

    def on_events(self, events: list[WatchEvent], revision: int) -> None:
        with self.lock:
            self.batches.append((list(events), revision))

    def on_error(self, exc: Exception) -> None:
        with self.lock:
            self.errors.append(exc)

    def events(self) -> list[WatchEvent]:
        with self.lock:
            return [e for batch, _ in self.batches for e in batch]

    def revisions(self) -> list[int]:
        return [e.mod_revision for e in self.events()]


# --- the launcher -----------------------------------------------------------------------------

def test_a_missing_etcd_is_named_with_how_to_install_it(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(StoreError, match="etcd is not installed: scripts/setup.sh installs "
                                         "Debian's etcd-server"):
        etcd_binary()
    assert "etcd-server" in NOT_INSTALLED


def test_a_server_restarts_on_its_ports_and_data_and_logs_to_its_dir() -> None:
    with EtcdServer(name="relaunch") as server:
        c = EtcdClient([server.client_url], timeout_s=1.0)
        try:
            revision = c.put("/k", "kept")
            url, log_path = server.client_url, server.log_path
            server.kill()
            assert not server.running()
            with pytest.raises(ClusterUnavailable, match=url):
                c.get("/k")
            server.restart()
            assert server.client_url == url
            kv = c.get("/k")
            assert kv is not None and kv.value == b"kept" and kv.mod_revision == revision
        finally:
            c.close()
        assert log_path.parent == server.workdir and log_path.stat().st_size > 0
        workdir = server.workdir
    assert not server.running() and not workdir.exists()


# --- key-value and transactions ----------------------------------------------------------------

def test_prefix_ranges() -> None:
    assert prefix_end(b"/cpn/") == b"/cpn0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"
    assert prefix_range(b"") == (b"\0", b"\0")


def test_txn_compares_and_branches(client: EtcdClient, ns: str) -> None:
    a, b = ns + "a", ns + "b"
    first = client.txn([Compare.absent(a)], [Op.put(a, "1")], [Op.get(a)])
    assert first.succeeded and first.responses == [None]
    kv = client.get(a)
    assert kv == KV(a, b"1", first.revision, first.revision, 1, 0)

    # absent no longer holds: the failure branch runs and reads
    again = client.txn([Compare.absent(a)], [Op.put(a, "2")], [Op.get(a), Op.get(b)])
    assert not again.succeeded and again.revision == first.revision
    assert again.responses == [[kv], []]

    rev = kv.mod_revision
    for op, operand, holds in (("=", rev, True), ("=", rev + 1, False), ("<", rev + 1, True),
                               ("<", rev, False), (">", rev - 1, True), (">", rev, False),
                               ("!=", rev, False)):
        result = client.txn([Compare.mod_revision(a, op, operand)], [])
        assert result.succeeded is holds, (op, operand)
    assert client.txn([Compare.value(a, b"1")], []).succeeded
    assert not client.txn([Compare.value(a, "2")], []).succeeded
    assert not client.txn([Compare.value(b, "")], []).succeeded  # no value to compare
    assert client.txn([Compare.mod_revision(b, "<", 1)], []).succeeded  # absent: revision 0
    # every compare must hold
    assert not client.txn([Compare.value(a, "1"), Compare.absent(a)], []).succeeded
    with pytest.raises(ValueError, match="compare op"):
        Compare.mod_revision(a, "<=", 1)

    # several ops, one revision; a refusal is a StoreError, not an outage
    both = client.txn([], [Op.put(a, "3"), Op.put(b, "x")])
    assert (client.get(a), client.get(b)) == (
        KV(a, b"3", first.revision, both.revision, 2, 0),
        KV(b, b"x", both.revision, both.revision, 1, 0))
    with pytest.raises(StoreError, match="duplicate key") as refused:
        client.txn([], [Op.put(a, "4"), Op.put(a, "5")])
    assert not isinstance(refused.value, ClusterUnavailable)


def test_prefix_reads_deletes_and_history(client: EtcdClient, ns: str) -> None:
    for name in ("c", "a", "b/1", "b/2"):
        client.put(ns + name, name)
    outside = client.put(ns[:-1] + "x", "outside")  # shares the text but not the prefix
    kvs, revision = client.get_prefix(ns)
    assert [kv.key for kv in kvs] == [ns + k for k in ("a", "b/1", "b/2", "c")]
    assert revision == outside  # the store's revision, not the newest key's
    keys_only, _ = client.get_prefix(ns, keys_only=True)
    assert [kv.value for kv in keys_only] == [b""] * 4

    put_rev = client.put(ns + "a", "new")
    old, at = client.get_prefix(ns + "a", revision=put_rev - 1)
    assert [kv.value for kv in old] == [b"a"] and at == put_rev  # header: the present

    deleted = client.txn([], [Op.delete_prefix(ns + "b/"), Op.delete(ns + "zzz")])
    assert deleted.responses == [2, 0]
    assert client.delete(ns + "c") > deleted.revision
    assert [kv.key for kv in client.get_prefix(ns)[0]] == [ns + "a"]
    assert client.get(ns + "c") is None
    assert client.get(ns[:-1] + "x") is not None


def test_reads_and_watches_of_a_compacted_revision_say_so(client: EtcdClient, ns: str
                                                          ) -> None:
    first = client.put(ns + "k", "1")
    latest = client.put(ns + "k", "2")
    client.compact(latest)
    with pytest.raises(StoreError, match="compacted"):
        client.get_prefix(ns, revision=first)
    seen = Collector()
    watch = client.watch_prefix(ns, first, seen.on_events, seen.on_error)
    try:
        wait_until(lambda: seen.errors, 5, "the compaction reported")
        assert isinstance(seen.errors[0], StoreError)
        assert "compacted" in str(seen.errors[0]) and seen.batches == []
        wait_until(lambda: not watch.alive(), 2, "the watch ended")
    finally:
        watch.cancel()


# --- leases -------------------------------------------------------------------------------------

def test_a_lease_expires_about_its_ttl_after_the_last_keepalive(client: EtcdClient, ns: str
                                                                 ) -> None:
    lease = client.lease_grant(1)
    assert lease.ttl_s == 1 and lease.id > 0
    client.put(ns + "held", "x", lease=lease.id)
    assert client.get(ns + "held") == KV(ns + "held", b"x", client.get_prefix(ns)[1],
                                         client.get_prefix(ns)[1], 1, lease.id)
    # kept alive well past its TTL
    until = time.monotonic() + 2.0
    while time.monotonic() < until:
        assert client.lease_keepalive(lease.id) == 1
        time.sleep(0.25)
    assert client.get(ns + "held") is not None
    assert client.lease_time_to_live(lease.id) >= 0

    last = time.monotonic()
    client.lease_keepalive(lease.id)
    wait_until(lambda: client.get(ns + "held") is None, 5, "the key of the expired lease gone",
               poll_s=0.02)
    gone_after_s = time.monotonic() - last
    print(f"a 1 s lease expired {gone_after_s:.2f} s after its last keepalive")
    assert 0.9 <= gone_after_s <= 2.5
    assert client.lease_keepalive(lease.id) == 0  # gone: 0, not an error
    assert client.lease_time_to_live(lease.id) == -1


def test_a_revoked_lease_takes_its_keys_at_once(client: EtcdClient, ns: str) -> None:
    lease = client.lease_grant(30)
    client.put(ns + "a", "1", lease=lease.id)
    client.put(ns + "b", "2", lease=lease.id)
    client.lease_revoke(lease.id)
    assert client.get_prefix(ns)[0] == []
    client.lease_revoke(lease.id)  # unknown now: not an error
    assert client.lease_keepalive(lease.id) == 0
    with pytest.raises(StoreError, match="lease not found"):
        client.put(ns + "c", "3", lease=lease.id)


# --- watches ------------------------------------------------------------------------------------

def test_a_watch_delivers_each_response_in_revision_order_and_stops_at_once(
        client: EtcdClient, ns: str) -> None:
    start = client.put(ns[:-1] + "-before", "x") + 1
    seen = Collector()
    watch = client.watch_prefix(ns, start, seen.on_events, seen.on_error)
    try:
        r1 = client.put(ns + "a", "1")
        client.put("/elsewhere" + ns, "not watched")
        r2 = client.txn([], [Op.put(ns + "b", "2"), Op.put(ns + "c", "3"),
                             Op.delete(ns + "a")]).revision
        wait_until(lambda: seen.revisions()[-1:] == [r2], 5, "the txn's events")
        events = seen.events()
        assert [(e.type, e.key, e.value, e.mod_revision) for e in events] == [
            ("put", ns + "a", b"1", r1), ("put", ns + "b", b"2", r2),
            ("put", ns + "c", b"3", r2), ("delete", ns + "a", b"", r2)]
        assert events[1].create_revision == r2 and events[0].create_revision == r1
        # one transaction, one response: its events come in one callback (etcd may put an
        # earlier revision's events in the same response, never split a revision's)
        with_txn = [b for b, _ in seen.batches if any(e.mod_revision == r2 for e in b)]
        assert len(with_txn) == 1
        assert sum(e.mod_revision == r2 for e in with_txn[0]) == 3
        assert all(rev >= b[-1].mod_revision for b, rev in seen.batches if b)
        assert seen.errors == [] and watch.connected
    finally:
        began = time.monotonic()
        watch.cancel()
        stopped_s = time.monotonic() - began
    assert stopped_s < 1.0 and not watch.alive()
    count = len(seen.batches)
    client.put(ns + "after", "x")
    time.sleep(0.2)  # a stopped watch stays silent: nothing to wait for
    assert len(seen.batches) == count


def test_a_watch_resumes_across_an_etcd_restart_without_loss_or_repeats(
        caplog: pytest.LogCaptureFixture) -> None:
    with EtcdServer(name="watch-restart") as server:
        c = EtcdClient([server.client_url], timeout_s=1.0)
        start = c.put("/w/start", "x") + 1
        seen = Collector()
        watch = c.watch_prefix("/w/", start, seen.on_events, seen.on_error)
        confirmed: list[int] = []

        def write(i: int) -> None:
            def attempt() -> bool:
                confirmed.append(c.put(f"/w/k{i % 7}", str(i)))
                return True
            wait_until(attempt, 10, f"write {i}", poll_s=0.05, ignore=(ClusterUnavailable,))

        try:
            for i in range(15):
                write(i)
            server.kill()  # a crash while the watch is open
            server.start()
            for i in range(15, 30):
                write(i)
            wait_until(lambda: seen.revisions()[-1:] == confirmed[-1:], 10,
                       "the resumed watch catching up",
                       detail=lambda: f"{seen.revisions()} vs {confirmed}")
            resumed = [(e.key, e.value, e.mod_revision) for e in seen.events()]
            # the same range watched afresh on the running server is the truth
            fresh = Collector()
            check = c.watch_prefix("/w/", start, fresh.on_events, fresh.on_error)
            wait_until(lambda: fresh.revisions()[-1:] == confirmed[-1:], 5, "the fresh watch")
            check.cancel()
            assert resumed == [(e.key, e.value, e.mod_revision) for e in fresh.events()]
            revisions = [r for _, _, r in resumed]
            assert revisions == sorted(set(revisions))  # in order, none twice
            assert set(confirmed) <= set(revisions)  # none lost
            assert seen.errors == [] and watch.alive()
            assert any(getattr(r, "event", None) == "etcd_watch_broken" for r in caplog.records)
        finally:
            watch.cancel()
            c.close()


# --- several members ----------------------------------------------------------------------------

def test_requests_fail_over_and_report_a_lost_quorum_within_a_bound() -> None:
    with EtcdCluster(3) as cluster:
        c = EtcdClient(cluster.client_urls, timeout_s=1.0)
        try:
            assert c.put("/f/0", "0") > 0
            status = c.status()
            assert status["healthy"] and [r["endpoint"] for r in status["status"]] == \
                cluster.client_urls
            assert sum(r["leader"] for r in status["status"]) == 1
            seen = Collector()
            watch = c.watch_prefix("/f/", 1, seen.on_events, seen.on_error)
            wait_until(lambda: watch.connected, 5, "the watch open")

            cluster.kill(0)  # the member both the requests and the watch use
            # when it was the leader, the others elect one first (500 ms election timeout,
            # longer on a loaded machine): until then they answer "no leader"
            revisions = [wait_until(lambda: c.put("/f/1", "1"), 10, "a write after the kill",
                                    ignore=(ClusterUnavailable,))]
            revisions += [c.put(f"/f/{i}", str(i)) for i in range(2, 6)]
            wait_until(lambda: seen.revisions()[-1:] == revisions[-1:], 10,
                       "the watch on another member")
            assert len(seen.revisions()) == len(set(seen.revisions())) == 6

            cluster.kill(1)  # one of three left: no quorum
            began = time.monotonic()
            with pytest.raises(ClusterUnavailable) as lost:
                c.put("/f/x", "x")
            assert time.monotonic() - began < 4.0
            assert all(url in str(lost.value) for url in cluster.client_urls)
            began = time.monotonic()
            with pytest.raises(ClusterUnavailable):
                c.get("/f/0")
            assert time.monotonic() - began < 4.0
            down = c.status()
            assert not down["healthy"]
            assert [r["healthy"] for r in down["status"]] == [False, False, False]
            assert all(r["error"] for r in down["status"])

            cluster.restart(0)
            cluster.restart(1)
            wait_until(lambda: c.put("/f/back", "1"), 10, "writes after the restarts",
                       ignore=(ClusterUnavailable,))
            back = c.get("/f/back")
            assert back is not None and back.value == b"1"
            watch.cancel()
        finally:
            c.close()


def test_no_endpoint_answering_is_cluster_unavailable_naming_each() -> None:
    dead = [f"http://127.0.0.1:{_free_port()}", f"http://127.0.0.1:{_free_port()}"]
    c = EtcdClient(dead, timeout_s=0.5)
    with pytest.raises(ClusterUnavailable, match="etcd does not answer at") as err:
        c.get("/x")
    assert all(f"{url}: connection refused" in str(err.value) for url in dead)
    status = c.status()
    assert [(r["endpoint"], r["healthy"], r["error"]) for r in status["status"]] == [
        (url, False, "connection refused") for url in dead]
    c.close()


def test_loopback_transaction_rate(client: EtcdClient, ns: str) -> None:
    n = 300
    began = time.perf_counter()
    for i in range(n):
        client.txn([Compare.mod_revision(ns + "k", "<", 1 << 62)], [Op.put(ns + "k", str(i))])
    elapsed_s = time.perf_counter() - began
    print(f"{n / elapsed_s:.0f} txn/s on loopback ({elapsed_s / n * 1000:.2f} ms each)")
    assert elapsed_s / n < 0.02  # a few ms each on a loaded machine, not tens


# --- EtcdStore beyond the contract ------------------------------------------------------------

def test_concurrent_id_allocation_never_hands_out_an_id_twice(etcd_server: EtcdServer
                                                              ) -> None:
    prefix = f"/t/{uuid.uuid4().hex}"
    stores = [open_etcd_store(etcd_server.client_url, prefix=prefix) for _ in range(4)]
    got: list[list[int]] = [[] for _ in stores]
    errors: list[BaseException] = []

    def member(i: int) -> None:
        try:
            for _ in range(50):
                intent_id, revision = stores[i].add_next_intent(SPEC)
                assert revision == stores[i].last_revision
                got[i].append(intent_id)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=member, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        ids = [i for ids in got for i in ids]
        assert len(ids) == len(set(ids)) == 200
        assert all(ids == sorted(ids) for ids in got)  # each member sees the counter grow
        assert [i for i, _ in stores[0].intents()] == sorted(ids)
        assert stores[0].high_water_intent_id() == max(ids)
        assert stores[0].add_next_intent(SPEC, floor=1000)[0] == 1001
        assert stores[1].add_next_intent(SPEC)[0] == 1002
    finally:
        for s in stores:
            s.close()


def test_batches_interleaved_with_single_writes_get_disjoint_consecutive_ids(
        etcd_server: EtcdServer) -> None:
    prefix = f"/t/{uuid.uuid4().hex}"
    stores = [open_etcd_store(etcd_server.client_url, prefix=prefix) for _ in range(3)]
    batches: list[list[int]] = []
    singles: list[int] = []
    errors: list[BaseException] = []

    def batcher(store: EtcdStore) -> None:
        try:
            for _ in range(10):
                ids, revision = store.add_next_intents([SPEC] * 7)
                assert ids == list(range(ids[0], ids[0] + 7)) and revision > 0
                batches.append(ids)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def single(store: EtcdStore) -> None:
        try:
            singles.extend(store.add_next_intent(SPEC)[0] for _ in range(30))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=batcher, args=(stores[0],)),
               threading.Thread(target=batcher, args=(stores[1],)),
               threading.Thread(target=single, args=(stores[2],))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        ids = [i for b in batches for i in b] + singles
        assert len(ids) == len(set(ids)) == 2 * 10 * 7 + 30
        assert [i for i, _ in stores[0].intents()] == sorted(ids)
        assert stores[0].add_next_intents([]) == ([], stores[0].last_revision)
    finally:
        for s in stores:
            s.close()


def test_add_intent_and_allocation_share_the_counter(store: EtcdStore) -> None:
    store.add_intent(7, SPEC)
    assert store.add_next_intent(SPEC) == (8, store.last_revision)
    store.add_intent(3, SPEC)  # below the counter: allowed, the counter stays
    assert store.high_water_intent_id() == 8
    store.client.put(store.intent_key(9), b'{"src": "h1", "dst": "h2", "max_latency_ms": 1}')
    assert store.add_next_intent(SPEC)[0] == 10  # 9 taken by hand: skipped
    assert store.remove_intent(10)
    assert store.add_next_intent(SPEC)[0] == 11  # ids are never reused


def test_a_conditional_compute_write_loses_to_a_newer_one(store: EtcdStore) -> None:
    other = EtcdStore(EtcdClient(store.client.endpoints), store.prefix)
    try:
        store.write_compute(sites={"cs:a:1": {"id": "cs:a:1"}})
        since = store.load().revision
        store.set_setting("unrelated", 1)  # not a compute record: no conflict
        revision = store.write_compute_if_unchanged(since, sites={"cs:b:1": {"id": "cs:b:1"}})
        assert revision == store.last_revision > since

        other.write_compute(placements={"p-1": {"id": "p-1"}})
        with pytest.raises(StaleWrite, match=f"revision {other.last_revision}") as stale:
            store.write_compute_if_unchanged(revision, sites={"cs:c:1": {"id": "cs:c:1"}})
        assert stale.value.http_status == 409
        # the newer revision travels with the error: steering syncs to it and computes again
        assert stale.value.revision == other.last_revision
        assert [s["id"] for s in store.compute_state()["sites"]] == ["cs:a:1", "cs:b:1"]

        fresh = store.load().revision
        store.write_compute_if_unchanged(fresh, sites={"cs:c:1": {"id": "cs:c:1"}},
                                         assignments={("web", "h/1"): {"c": "h/1"}})
        state = store.compute_state()
        assert [s["id"] for s in state["sites"]] == ["cs:a:1", "cs:b:1", "cs:c:1"]
        assert state["assignments"] == [{"c": "h/1"}]  # a slash in a key part is quoted
    finally:
        other.close()


AUDIT = {"time": 1.0, "token": "t", "remote": "127.0.0.1", "method": "POST",
         "path": "/api/v1/intents", "status": 201, "body_sha256": "0" * 64}


def test_load_is_one_revision_and_the_watch_reports_store_events(store: EtcdStore) -> None:
    store.add_intent(1, SPEC)
    store.write_compute(sites={"cs:a:1": {"id": "cs:a:1"}}, services={"web": {"name": "web"}})
    store.set_setting("policy", {"weight": "latency"})
    store.add_audit([AUDIT], retention=10)  # the audit trail is not part of the snapshot
    snap = store.load()
    assert snap.revision == store.last_revision
    assert snap.intents == [(1, SPEC)] and snap.high_water_intent_id == 1
    assert snap.compute == store.compute_state()
    assert snap.settings == {"policy": {"weight": "latency"}}

    got: list[tuple[list[StoreEvent], int]] = []
    errors: list[Exception] = []
    watch = store.watch(snap.revision + 1, lambda ev, rev: got.append((ev, rev)),
                        errors.append)
    try:
        intent_id, _ = store.add_next_intent(SPEC)
        store.write_compute(sites={"cs:a:1": None}, assignments={("web", "h2"): {"c": 2}})
        store.set_setting("policy", None)
        store.client.put(f"{store.prefix}/members/m1", "not the store's")  # silently ignored
        store.add_audit([AUDIT], retention=10)  # audit records are no store events
        store.remove_intent(1)
        last = store.last_revision
        wait_until(lambda: got and got[-1][1] >= last, 5, "the store's events")
        events = [(e.table, e.key, e.value) for batch, _ in got for e in batch]
        assert events == [
            ("intent", intent_id, SPEC), ("counter", "intent", intent_id),
            ("compute", ("sites", "cs:a:1"), None),
            ("compute", ("assignments", "web", "h2"), {"c": 2}),
            ("setting", "policy", None),
            ("intent", 1, None)]
        revisions = [e.revision for batch, _ in got for e in batch]
        assert revisions == sorted(revisions) and revisions[-1] == last
        assert errors == []
    finally:
        watch.cancel()


def test_malformed_records_are_logged_and_skipped(store: EtcdStore,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    p = store.prefix
    store.add_intent(1, SPEC)
    store.write_compute(sites={"cs:a:1": {"id": "cs:a:1"}})
    good_revision = store.last_revision
    got: list[StoreEvent] = []
    watch = store.watch(good_revision + 1, lambda ev, rev: got.extend(ev), lambda e: None)
    bad = {f"{p}/intents/0000000002": b"{not json",
           f"{p}/intents/0000000003": b'{"src": "h1"}',  # no dst: not a spec
           f"{p}/intents/three": b'{"src": "h1", "dst": "h2", "max_latency_ms": 1}',
           f"{p}/compute/sites/cs%3Ab%3A1": b"[1, 2",
           f"{p}/compute/nosuch/x": b"{}",
           f"{p}/settings/policy": b"nan-json"}
    try:
        with caplog.at_level(logging.WARNING, logger="controller.store.etcd"):
            for key, value in bad.items():
                store.client.put(key, value)
            store.add_intent(4, SPEC)
            wait_until(lambda: any(e.key == 4 for e in got), 5, "the watch past the bad keys")
            assert [(e.table, e.key) for e in got] == [("intent", 4), ("counter", "intent")]
            assert watch.alive()

            assert [i for i, _ in store.intents()] == [1, 4]
            assert store.compute_state()["sites"] == [{"id": "cs:a:1"}]
            assert store.setting("policy", "default") == "default"
            snap = store.load()
            assert [i for i, _ in snap.intents] == [1, 4] and snap.settings == {}
        logged = {getattr(r, "key", None) for r in caplog.records
                  if getattr(r, "event", None) == "store_malformed"}
        assert logged == set(bad)
        reasons = [getattr(r, "reason", "") for r in caplog.records
                   if getattr(r, "key", None) == f"{p}/intents/0000000003"]
        assert reasons and all("not an intent spec" in r for r in reasons)
    finally:
        watch.cancel()


def test_the_etcd_store_is_a_store_and_ok_never_raises(etcd_server: EtcdServer) -> None:
    store = open_etcd_store([etcd_server.client_url], prefix="/t/ok")
    assert isinstance(store, Store) and store.ok()
    store.close()
    assert store.ok() is False
    with pytest.raises(StoreError, match="closed"):
        store.intents()
    cut_off = EtcdStore(EtcdClient([f"http://127.0.0.1:{_free_port()}"], timeout_s=0.3))
    assert cut_off.ok() is False
    with pytest.raises(ClusterUnavailable):
        cut_off.add_intent(1, SPEC)
    cut_off.close()


def test_opening_a_store_on_a_dead_address_fails_fast_naming_it() -> None:
    refused = f"http://127.0.0.1:{_free_port()}"
    began = time.monotonic()
    with pytest.raises(ClusterUnavailable, match=refused):
        open_etcd_store(refused)
    assert time.monotonic() - began < 5.0

    # a listener that never answers: the request times out
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        mute = f"http://127.0.0.1:{silent.getsockname()[1]}"
        began = time.monotonic()
        with pytest.raises(ClusterUnavailable, match=f"{mute}: no answer within 1 s"):
            open_etcd_store(f"{mute}, {refused}", timeout_s=1.0)
        assert time.monotonic() - began < 5.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
