"""The intents' write protocol: core and store agree after every request, failed or not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.errors import Conflict, NotFound, StoreError
from controller.network.service import ControllerService
from controller.operations import IntentOperations
from controller.store import SqliteStore, Store, open_store
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec

SPEC = IntentSpec("h1", "h2", 50.0, name="gold", priority=200)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(tmp_path)
    yield s
    s.close()


def make(store: Store) -> tuple[ControllerService, IntentOperations]:
    """The diamond (file intents 1 and 2), no switch: intents stay pending."""
    service = ControllerService(load_topology(topology_file("diamond")))
    return service, IntentOperations(service, store, timeout_s=0.1)


def test_an_added_intent_is_in_core_and_store_with_the_next_id(store: Store) -> None:
    service, ops = make(store)
    intent = ops.add(SPEC)
    assert intent.id == 3 and store.intents() == [(3, SPEC)]
    assert [i.id for i in service.intents()] == [1, 2, 3]
    assert (ops.source(1), ops.source(3)) == ("file", "api")
    ops.remove(3)
    assert store.intents() == [] and [i.id for i in service.intents()] == [1, 2]
    assert ops.add(SPEC).id == 4  # 3 stays retired


def test_a_store_failure_takes_the_intent_out_of_the_core_again(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    service, ops = make(store)

    def broken(*_a: object) -> None:
        raise StoreError("disk full (test)")

    monkeypatch.setattr(store, "add_intent", broken)
    with pytest.raises(StoreError, match="disk full"):
        ops.add(SPEC)
    assert [i.id for i in service.intents()] == [1, 2] and store.intents() == []
    assert ops.source(3) == "file"


def test_a_core_failure_on_removal_puts_the_stored_intent_back(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    service, ops = make(store)
    ops.add(SPEC)

    def broken(*_a: object, **_k: object) -> None:
        raise RuntimeError("core refused (test)")

    monkeypatch.setattr(service, "remove_intent", broken)
    with pytest.raises(RuntimeError, match="core refused"):
        ops.remove(3)
    assert store.intents() == [(3, SPEC)] and [i.id for i in service.intents()] == [1, 2, 3]
    assert ops.source(3) == "api"


def test_file_intents_and_unknown_ids_are_refused(store: Store) -> None:
    _, ops = make(store)
    with pytest.raises(Conflict, match="topology file"):
        ops.remove(1)
    with pytest.raises(NotFound):
        ops.remove(42)


def test_reload_renumbers_an_id_the_file_now_holds(store: Store) -> None:
    assert isinstance(store, SqliteStore)
    store.add_intent(2, SPEC)  # intent 2 is the file's "cheap"
    store.add_intent(7, IntentSpec("h2", "h1", 30.0))
    service, ops = make(store)
    added = ops.reload()
    assert sorted(i.id for i in added) == [7, 8]
    assert [i for i, _ in store.intents()] == [7, 8]
    assert {i.id: i.name for i in service.intents()}[8] == "gold"
    assert (ops.source(2), ops.source(7), ops.source(8)) == ("file", "api", "api")
