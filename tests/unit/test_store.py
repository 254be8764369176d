"""The store interface (``controller.store.Store``): a contract every implementation must pass,
run against each one (SQLite, and etcd on a real etcd child process), then what is particular
to the SQLite file."""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from controller.cluster.etcdproc import EtcdServer
from controller.store import (
    SCHEMA_VERSION,
    STORE_FILE_NAME,
    SqliteStore,
    Store,
    StoreError,
    open_etcd_store,
    open_store,
)
from controller.topology.model import IntentSpec, Match

OpenStore = Callable[[], Store]
"""opens the store under test at one fixed place (again after a close: the same data)"""

Opener = Callable[[pytest.FixtureRequest], Callable[[Path], Store]]
"""given the test's request, a function opening the store at a place (the same place again:
the same data)"""


def _sqlite(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    return lambda place: open_store(place)


def _etcd(request: pytest.FixtureRequest) -> Callable[[Path], Store]:
    server: EtcdServer = request.getfixturevalue("etcd_server")
    # a fresh prefix per test keeps the tests independent on the one server
    prefix = f"/cpn-test/{uuid.uuid4().hex}"
    return lambda place: open_etcd_store(server.client_url, prefix=prefix)


IMPLEMENTATIONS: dict[str, Opener] = {"sqlite": _sqlite, "etcd": _etcd}

FULL = IntentSpec("h1", "h2", 12.5, min_bandwidth_mbps=40.0, name="gold",
                  match=Match(ip_proto=6, dst_port=443), priority=700, protection=True,
                  police=True)
PLAIN = IntentSpec("h2", "h3", 30.0)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def reopen(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    opened: list[Store] = []
    open_at = IMPLEMENTATIONS[request.param](request)

    def open_() -> Store:
        store = open_at(tmp_path / "state")
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def test_a_new_store_is_empty_and_answers(reopen: OpenStore) -> None:
    store = reopen()
    assert isinstance(store, Store)
    assert store.ok()
    assert store.intents() == [] and store.high_water_intent_id() == 0
    assert store.compute_state() == {"sites": [], "placements": [], "services": [],
                                     "assignments": []}
    assert store.setting("missing") is None and store.setting("missing", 3) == 3


def test_intents_come_back_whole_in_id_order_after_a_reopen(reopen: OpenStore) -> None:
    store = reopen()
    store.add_intent(9, PLAIN)
    store.add_intent(4, FULL)
    store.close()
    again = reopen()
    assert again.intents() == [(4, FULL), (9, PLAIN)]
    assert again.high_water_intent_id() == 9


def test_an_id_is_taken_once_and_a_refused_write_changes_nothing(reopen: OpenStore) -> None:
    store = reopen()
    store.add_intent(5, FULL)
    with pytest.raises(StoreError):
        store.add_intent(5, PLAIN)
    assert store.intents() == [(5, FULL)]


def test_a_batch_of_intents_is_stored_whole_or_not_at_all(reopen: OpenStore) -> None:
    store = reopen()
    store.add_intent(7, PLAIN)
    with pytest.raises(StoreError):
        store.add_intents([(20, FULL), (7, FULL), (21, PLAIN)])  # 7 is taken
    assert store.intents() == [(7, PLAIN)] and store.high_water_intent_id() == 7
    store.add_intents([(20, FULL), (21, PLAIN)])
    store.add_intents([])
    assert store.intents() == [(7, PLAIN), (20, FULL), (21, PLAIN)]
    assert store.high_water_intent_id() == 21


def test_deleted_ids_stay_retired(reopen: OpenStore) -> None:
    store = reopen()
    store.add_intent(3, PLAIN)
    store.add_intent(8, FULL)
    assert store.remove_intent(8) and not store.remove_intent(8)
    assert store.intents() == [(3, PLAIN)] and store.high_water_intent_id() == 8
    store.close()
    again = reopen()
    assert again.high_water_intent_id() == 8
    assert not again.remove_intent(99)


def test_an_intent_moves_to_a_new_id_and_the_high_water_follows(reopen: OpenStore) -> None:
    store = reopen()
    store.add_intent(1, FULL)
    store.replace_intent_id(1, 12)
    assert store.intents() == [(12, FULL)] and store.high_water_intent_id() == 12
    with pytest.raises(StoreError):
        store.add_intent(12, PLAIN)


def test_settings_are_json_values_replaced_whole(reopen: OpenStore) -> None:
    store = reopen()
    store.set_setting("seeded", ["cs:a:1", "cs:b:2"])
    store.set_setting("policy", {"weight": "latency", "bound_ms": 5.5})
    store.set_setting("seeded", ["cs:c:3"])
    store.close()
    again = reopen()
    assert again.setting("seeded") == ["cs:c:3"]
    assert again.setting("policy") == {"weight": "latency", "bound_ms": 5.5}
    with pytest.raises(StoreError):
        again.set_setting("bad", {1, 2})  # not JSON data
    assert again.setting("bad", "unset") == "unset"


def test_compute_records_insert_replace_delete_in_order(reopen: OpenStore) -> None:
    store = reopen()
    store.write_compute(sites={"cs:b:1": {"id": "cs:b:1", "v": 1},
                               "cs:a:1": {"id": "cs:a:1", "v": 1}},
                        placements={"p-1": {"id": "p-1"}},
                        services={"web": {"name": "web"}},
                        assignments={("web", "h9"): {"c": "h9"}, ("web", "h2"): {"c": "h2"},
                                     ("api", "h5"): {"c": "h5"}})
    # a replaced site keeps its place; deletes and inserts in one change
    store.write_compute(sites={"cs:b:1": {"id": "cs:b:1", "v": 2}, "cs:c:1": {"id": "cs:c:1"}},
                        placements={"p-1": None, "p-2": {"id": "p-2"}},
                        assignments={("web", "h9"): None})
    store.close()
    state = reopen().compute_state()
    assert state["sites"] == [{"id": "cs:b:1", "v": 2}, {"id": "cs:a:1", "v": 1},
                              {"id": "cs:c:1"}]
    assert state["placements"] == [{"id": "p-2"}]
    assert state["services"] == [{"name": "web"}]
    assert state["assignments"] == [{"c": "h5"}, {"c": "h2"}]  # by service, then client


def test_a_compute_change_is_one_transaction(reopen: OpenStore) -> None:
    store = reopen()
    store.write_compute(sites={"cs:a:1": {"id": "cs:a:1"}})
    before = store.compute_state()
    with pytest.raises(StoreError):
        store.write_compute(sites={"cs:a:1": None, "cs:z:9": {"id": "cs:z:9"}},
                            services={"web": {"name": "web", "bad": object()}})
    assert store.compute_state() == before


def test_concurrent_writers_all_land(reopen: OpenStore) -> None:
    store = reopen()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for j in range(20):
                store.add_intent(w * 100 + j, PLAIN)
                store.write_compute(sites={f"cs:w{w}:{j}": {"id": f"cs:w{w}:{j}"}})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert [i for i, _ in store.intents()] == sorted(w * 100 + j for w in range(1, 5)
                                                     for j in range(20))
    assert len(store.compute_state()["sites"]) == 80


def test_a_closed_store_does_not_answer(reopen: OpenStore) -> None:
    store = reopen()
    store.close()
    assert store.ok() is False


# --- the SQLite file ------------------------------------------------------------------------------

def _audit_record(n: int) -> dict:
    return {"time": 1_700_000_000.0 + n, "token": None if n % 3 == 0 else f"t{n % 2}",
            "remote": "127.0.0.1", "method": "POST", "path": f"/api/v1/intents/{n}",
            "status": 201 if n % 2 else 403, "body_sha256": f"{n:064x}"}


def test_audit_records_keep_order_and_retention_drops_the_oldest(reopen: OpenStore) -> None:
    store = reopen()
    assert store.audit() == []
    ids = store.add_audit([_audit_record(n) for n in range(1, 8)], retention=5)
    assert ids == sorted(ids) and len(set(ids)) == 7
    kept = store.audit(limit=100)
    assert [r["path"] for r in kept] == [f"/api/v1/intents/{n}" for n in range(3, 8)]
    assert kept[0] == {"id": ids[2], **_audit_record(3)}
    assert [r["id"] for r in store.audit(limit=2)] == ids[5:]
    assert [r["id"] for r in store.audit(limit=2, since_id=ids[3])] == ids[4:6]
    assert store.audit(since_id=ids[-1]) == []
    # a batch larger than one etcd transaction holds, then a smaller retention on reopen
    more = store.add_audit([_audit_record(n) for n in range(8, 128)], retention=200)
    assert len(more) == 120 and more[0] > ids[-1]
    assert len(store.audit(limit=1000)) == 125
    store.close()
    again = reopen()
    last = again.add_audit([_audit_record(200)], retention=10)
    assert last[0] > more[-1]  # ids are never reused
    assert [r["id"] for r in again.audit(limit=1000)] == [*more[-9:], last[0]]


def test_open_store_puts_the_file_in_the_state_dir(tmp_path: Path) -> None:
    store = open_store(tmp_path / "deep" / "state")
    try:
        assert isinstance(store, SqliteStore)
        assert store.path == tmp_path / "deep" / "state" / STORE_FILE_NAME
        assert store.path.exists()
    finally:
        store.close()


def test_store_is_wal_versioned_and_atomic(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / STORE_FILE_NAME)
    assert store.schema_version == 3  # v2 added the compute service tables, v3 the audit
    mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    store.add_intent(7, IntentSpec("h1", "h2", 5.0))
    with pytest.raises(StoreError):
        store.add_intent(7, IntentSpec("h1", "h2", 9.0))
    assert [(i, s.max_latency_ms) for i, s in store.intents()] == [(7, 5.0)]
    assert store.remove_intent(7) and not store.remove_intent(7)
    assert store.high_water_intent_id() == 7
    store.set_setting("policy", {"weight": "latency"})
    store.close()
    again = SqliteStore(tmp_path / STORE_FILE_NAME)
    assert again.setting("policy") == {"weight": "latency"} and again.intents() == []
    assert again.high_water_intent_id() == 7


def test_store_migrates_a_v1_file(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE intents (id INTEGER PRIMARY KEY, spec TEXT NOT NULL,
                              created_at REAL NOT NULL);
        CREATE TABLE compute_sites (id TEXT PRIMARY KEY, spec TEXT NOT NULL);
        CREATE TABLE placements (id TEXT PRIMARY KEY, data TEXT NOT NULL);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
    """)
    db.execute("INSERT INTO intents VALUES (7, ?, 0)",
               (json.dumps({"src": "h1", "dst": "h2", "max_latency_ms": 5.0}),))
    db.commit()
    db.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version == SCHEMA_VERSION == 3
        assert store.audit() == []
        assert [i for i, _ in store.intents()] == [7]
        assert store.compute_state() == {"sites": [], "placements": [], "services": [],
                                         "assignments": []}
        store.write_compute(sites={"cs:a:b": {"id": "cs:a:b"}},
                            services={"s": {"name": "s"}},
                            assignments={("s", "h1"): {"x": 1}})
        store.write_compute(sites={"cs:a:b": None}, assignments={("s", "h1"): None})
        assert store.compute_state()["services"] == [{"name": "s"}]
        assert store.compute_state()["assignments"] == [] == store.compute_state()["sites"]
    finally:
        store.close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99"):
        SqliteStore(path)
