"""The etcd store: operator state shared by the members of a cluster, implementing
:class:`~controller.store.interface.Store` on etcd (through
:class:`~controller.cluster.etcd.EtcdClient`), plus what the members need beyond it:
the revision of each write, id allocation by compare-and-swap, conditional compute writes,
a snapshot of everything at one revision and a watch of every change.

Keys, under a prefix ``p`` (default ``/cpn``; key parts are URL-quoted with ``safe=""``)::

    {p}/intents/{id:010d}                       JSON of spec_to_dict(spec)
    {p}/counters/intent                         decimal text: the high-water intent id
    {p}/compute/sites/{site id}                 JSON record
    {p}/compute/placements/{placement id}       JSON record
    {p}/compute/services/{service name}         JSON record
    {p}/compute/assignments/{service}/{client}  JSON record
    {p}/compute/order/{table}/{key}             decimal text: place in the creating write
    {p}/compute/version                         written by every compute write
    {p}/settings/{key}                          JSON value
    {p}/audit/{id:012d}                         JSON of one audit record
    {p}/counters/audit                          decimal text: the last audit id given

Order: sites, placements and services come back in the order first written, which is the
order of their keys' create revisions (a replaced record keeps its create revision, so its
place). Records created by one write share a revision; the ``order`` key written beside each
(only when the record is created) keeps their order within that write. Assignments come by
service, then client.

Every write method is one etcd transaction. ``write_compute`` reads which records exist
first and makes its transaction conditional on that (so a new record's ``order`` key is
written exactly when the record is created), retrying when another writer changed it in
between; ``add_intent`` and the id allocation are compare-and-swap on the counter.

A value that does not parse (bad JSON, a spec that does not load, a key that does not
parse), written by hand, is logged (``event=store_malformed``, naming key and reason) and
skipped by every read and by the watch; it never stops the caller.

Audit records take consecutive ids by compare-and-swap on their counter; the transaction
that adds records also deletes those the retention leaves behind (ids are dense, so the ones
``retention`` below each new id), and the first write of a store object also trims what an
older, larger retention left.

etcd limits the operations of one transaction (``--max-txn-ops``, 128 by default;
:mod:`controller.cluster.etcdproc` runs etcd with 4096): a compute write touching more
records than that is refused with :class:`~controller.errors.StoreError`.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from urllib.parse import quote, unquote

from controller.cluster.etcd import KV, Compare, EtcdClient, Op, TxnResult, Watch, WatchEvent
from controller.errors import ClusterUnavailable, StaleWrite, StoreError
from controller.store.interface import AUDIT_FIELDS, spec_from_dict, spec_to_dict
from controller.topology.model import IntentSpec

__all__ = ["EtcdStore", "StoreEvent", "StoreSnapshot", "open_etcd_store"]

log = logging.getLogger(__name__)

COMPUTE_TABLES = ("sites", "placements", "services", "assignments")
ORDERED_TABLES = ("sites", "placements", "services")
"""compute tables kept in the order first written (assignments come by service, client)"""

_AUDIT_BATCH = 50
"""audit records per transaction (each puts one key and deletes one: within etcd's default
128 operations)"""

_MAX_ATTEMPTS = 200
"""compare-and-swap attempts of one write before it gives up (each lost attempt means
another writer committed in between, so the cluster made progress)"""


@dataclass(frozen=True)
class StoreSnapshot:
    """Everything stored, as of one etcd ``revision``: ``intents`` in id order, ``compute``
    as :meth:`EtcdStore.compute_state` returns it, ``settings`` key -> value, and the
    high-water intent id."""

    revision: int
    intents: list[tuple[int, IntentSpec]]
    compute: dict[str, list[Any]]
    settings: dict[str, Any]
    high_water_intent_id: int = 0


EventTable = Literal["intent", "compute", "setting", "counter"]


@dataclass(frozen=True)
class StoreEvent:
    """One change another writer (or this one) committed, as the watch reports it.

    ``table`` and ``key``: "intent" with the intent id (int); "compute" with
    ``(table, id)`` or ``("assignments", service, client)``; "setting" with the setting's
    key; "counter" with ``"intent"``. ``value`` is the new record (an :class:`IntentSpec`
    for intents, the id as int for the counter, JSON data otherwise), None on delete."""

    revision: int
    table: EventTable
    key: Any
    value: Any


def _json(value: Any) -> bytes:
    """A record as stored: JSON with sorted keys; :class:`StoreError` for data JSON cannot
    hold (checked before the transaction, so nothing is half-written)."""
    try:
        return json.dumps(value, sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {type(value).__name__} data: {exc}") from exc


def _q(part: str) -> str:
    return quote(part, safe="")


class _Malformed(ValueError):
    """A key or value that does not parse."""


@dataclass
class _Parsed:
    """What one prefix read holds, parsed (malformed keys and values skipped)."""

    intents: dict[int, IntentSpec] = field(default_factory=dict)
    counter: int = 0
    records: dict[str, dict[Any, tuple[KV, Any]]] = field(
        default_factory=lambda: {t: {} for t in COMPUTE_TABLES})
    order: dict[str, dict[str, int]] = field(
        default_factory=lambda: {t: {} for t in ORDERED_TABLES})
    settings: dict[str, Any] = field(default_factory=dict)

    def compute(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for table in ORDERED_TABLES:
            rows = self.records[table]
            place = self.order[table]
            ranked = sorted(rows.items(), key=lambda item: (item[1][0].create_revision,
                                                            place.get(item[0], 0), item[0]))
            out[table] = [value for _, (_, value) in ranked]
        out["assignments"] = [value for _, (_, value) in sorted(
            self.records["assignments"].items())]
        return out


class EtcdStore:
    """The :class:`~controller.store.interface.Store` on etcd, under ``prefix``.

    ``client`` is closed with the store when ``own_client`` (as :func:`open_etcd_store`
    makes it). Safe to use from several threads and from several processes at once."""

    def __init__(self, client: EtcdClient, prefix: str = "/cpn", *,
                 own_client: bool = True) -> None:
        prefix = prefix.rstrip("/")
        if not prefix.startswith("/"):
            raise StoreError(f"an etcd store prefix starts with '/', not {prefix!r}")
        self.client = client
        self.prefix = prefix
        self._own_client = own_client
        self._closed = False
        self._lock = threading.Lock()
        self.last_revision = 0
        """the etcd revision of this object's last successful write (0: none yet)"""
        self._counter_key = f"{prefix}/counters/intent"
        self._version_key = f"{prefix}/compute/version"
        self._audit_counter_key = f"{prefix}/counters/audit"
        self._audit_trimmed = False

    # -- keys --------------------------------------------------------------------------------
    def intent_key(self, intent_id: int) -> str:
        """The key of intent ``intent_id``."""
        return f"{self.prefix}/intents/{intent_id:010d}"

    def compute_key(self, table: str, key: str | tuple[str, str]) -> str:
        """The key of one compute record (``key`` a ``(service, client)`` pair for
        assignments)."""
        if table == "assignments":
            if not (isinstance(key, tuple) and len(key) == 2):
                raise StoreError(f"an assignment key is (service, client), not {key!r}")
            return f"{self.prefix}/compute/assignments/{_q(key[0])}/{_q(key[1])}"
        if table not in ORDERED_TABLES or not isinstance(key, str):
            raise StoreError(f"no compute record {table}/{key!r}")
        return f"{self.prefix}/compute/{table}/{_q(key)}"

    def _order_key(self, table: str, key: str) -> str:
        return f"{self.prefix}/compute/order/{table}/{_q(key)}"

    def setting_key(self, key: str) -> str:
        """The key of setting ``key``."""
        return f"{self.prefix}/settings/{_q(key)}"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the etcd store is closed")

    def _wrote(self, result: TxnResult) -> None:
        with self._lock:
            self.last_revision = max(self.last_revision, result.revision)

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self, kv: KV, *, with_value: bool = True) -> tuple[str, Any, Any] | None:
        """``(table, key, value)`` of one stored key, with table one of "intent",
        "counter", "compute", "order", "version", "setting"; None for a key that is not
        the store's (outside the prefix, or the members' keys beside it).
        ``with_value=False`` parses the key alone (value None: a deleted key, or a keys-only
        read). Raises :class:`_Malformed`."""
        if not kv.key.startswith(self.prefix + "/"):
            return None
        kind, _, tail = kv.key[len(self.prefix) + 1:].partition("/")

        def value(parse: Callable[[bytes], Any]) -> Any:
            return parse(kv.value) if with_value else None

        if kind == "intents":
            if not tail.isdigit():
                raise _Malformed("the intent id is not a number")
            return "intent", int(tail), value(self._spec)
        if kind == "counters" and tail == "intent":
            return "counter", "intent", value(self._counter)
        if kind == "settings" and tail:
            return "setting", unquote(tail), value(_loads)
        if kind != "compute":
            # the cluster's members keep their own keys under the same prefix
            return None
        table, _, name = tail.partition("/")
        if table == "version" and not name:
            return "version", None, None
        if table == "order":
            ordered, _, key = name.partition("/")
            if ordered not in ORDERED_TABLES or not key or "/" in key:
                raise _Malformed("not an order key of a compute table")
            return "order", (ordered, unquote(key)), value(self._number)
        if table in ORDERED_TABLES and name and "/" not in name:
            return "compute", (table, unquote(name)), value(_loads)
        if table == "assignments":
            service, _, client = name.partition("/")
            if service and client and "/" not in client:
                return ("compute", ("assignments", unquote(service), unquote(client)),
                        value(_loads))
        raise _Malformed("not a key of a compute record")

    @staticmethod
    def _spec(value: bytes) -> IntentSpec:
        data = _loads(value)
        try:
            return spec_from_dict(data)
        except Exception as exc:  # noqa: BLE001 - any failure to load is "malformed"
            raise _Malformed(f"not an intent spec: {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _number(value: bytes) -> int:
        try:
            return int(value.decode().strip())
        except ValueError:
            raise _Malformed(f"{value[:40]!r} is not a number") from None

    _counter = _number

    def _malformed(self, key: str, reason: str) -> None:
        log.warning(f"skipped malformed etcd record {key!r}: {reason}",
                    extra={"event": "store_malformed", "key": key, "reason": reason})

    def _read(self, kvs: Sequence[KV], *, with_values: bool = True) -> _Parsed:
        parsed = _Parsed()
        for kv in kvs:
            try:
                item = self._parse(kv, with_value=with_values)
            except _Malformed as exc:
                self._malformed(kv.key, str(exc))
                continue
            if item is None:
                continue
            table, key, value = item
            if table == "intent":
                parsed.intents[key] = value
            elif table == "counter":
                parsed.counter = value
            elif table == "setting":
                parsed.settings[key] = value
            elif table == "order":
                parsed.order[key[0]][key[1]] = value
            elif table == "compute":
                record_key = key[1] if key[0] != "assignments" else (key[1], key[2])
                parsed.records[key[0]][record_key] = (kv, value)
        return parsed

    def _read_prefix(self, sub: str) -> tuple[_Parsed, int]:
        self._check_open()
        kvs, revision = self.client.get_prefix(f"{self.prefix}/{sub}")
        return self._read(kvs), revision

    # -- Store: health -------------------------------------------------------------------------
    def ok(self) -> bool:
        """etcd answers a quorum read (for ``/health``); never raises."""
        if self._closed:
            return False
        try:
            self.client.get(self._counter_key)
            return True
        except Exception:  # noqa: BLE001 - health says no, whatever the reason
            return False

    def close(self) -> None:
        """Release the store (and its client when it owns it); no call may follow."""
        self._closed = True
        if self._own_client:
            self.client.close()

    # -- Store: intents --------------------------------------------------------------------------
    def intents(self) -> list[tuple[int, IntentSpec]]:
        """Stored intents in id order."""
        parsed, _ = self._read_prefix("intents/")
        return sorted(parsed.intents.items())

    def high_water_intent_id(self) -> int:
        """The largest intent id ever stored (0 when none), deleted ones included."""
        self._check_open()
        result = self.client.txn((), [Op.get(self._counter_key),
                                      Op.get_prefix(f"{self.prefix}/intents/",
                                                    keys_only=True)])
        counter, _ = self._counter_of(result.responses[0])
        ids = self._read(result.responses[1], with_values=False).intents
        return max([counter, *ids])

    def _counter_of(self, kvs: Sequence[KV]) -> tuple[int, KV | None]:
        """(counter value, its KV) from a read of the counter key (0 when absent or
        malformed)."""
        if not kvs:
            return 0, None
        try:
            return self._counter(kvs[0].value), kvs[0]
        except _Malformed as exc:
            self._malformed(kvs[0].key, str(exc))
            return 0, kvs[0]

    def _counter_unchanged(self, kv: KV | None) -> Compare:
        return (Compare.absent(self._counter_key) if kv is None
                else Compare.mod_revision(self._counter_key, "=", kv.mod_revision))

    def add_intent(self, intent_id: int, spec: IntentSpec) -> None:
        """Store one intent under ``intent_id`` (one transaction: create-if-absent, and the
        counter raised to the id); :class:`StoreError` when the id is stored already."""
        self._check_open()
        data = _json(spec_to_dict(spec))
        key = self.intent_key(intent_id)
        counter, counter_kv = self._counter_of(self._get(self._counter_key))
        for attempt in range(_MAX_ATTEMPTS):
            compare = [Compare.absent(key)]
            ops = [Op.put(key, data)]
            if counter < intent_id:
                # the counter only grows, so it needs guarding only when this write raises it
                compare.append(self._counter_unchanged(counter_kv))
                ops.append(Op.put(self._counter_key, str(intent_id)))
            result = self.client.txn(compare, ops, [Op.get(key), Op.get(self._counter_key)])
            if result.succeeded:
                self._wrote(result)
                return
            if result.responses[0]:
                raise StoreError(f"cannot store intent {intent_id}: the id is taken")
            counter, counter_kv = self._counter_of(result.responses[1])
            _pause(attempt)
        raise StoreError(f"cannot store intent {intent_id}: the counter kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def add_next_intent(self, spec: IntentSpec, *, floor: int = 0) -> tuple[int, int]:
        """Store ``spec`` under the next free id, ``max(counter, floor) + 1``, allocated by
        compare-and-swap on the counter in the same transaction; ``(id, revision)``. Two
        writers calling at once never get the same id."""
        self._check_open()
        data = _json(spec_to_dict(spec))
        counter, counter_kv = self._counter_of(self._get(self._counter_key))
        for attempt in range(_MAX_ATTEMPTS):
            intent_id = max(counter, floor) + 1
            key = self.intent_key(intent_id)
            result = self.client.txn(
                [self._counter_unchanged(counter_kv), Compare.absent(key)],
                [Op.put(key, data), Op.put(self._counter_key, str(intent_id))],
                [Op.get(key), Op.get(self._counter_key)])
            if result.succeeded:
                self._wrote(result)
                return intent_id, result.revision
            if result.responses[0]:
                floor = max(floor, intent_id)  # an id above the counter, stored by hand
            counter, counter_kv = self._counter_of(result.responses[1])
            _pause(attempt)
        raise StoreError(f"cannot allocate an intent id: the counter kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def add_intents(self, items: Sequence[tuple[int, IntentSpec]]) -> None:
        """Store several intents under their ids in one transaction (all or nothing;
        :class:`StoreError` when one is stored already); the counter moves to the largest
        id when that is above it."""
        self._check_open()
        if not items:
            return
        keys = [self.intent_key(i) for i, _ in items]
        top = max(i for i, _ in items)
        puts = [Op.put(k, _json(spec_to_dict(spec)))
                for k, (_, spec) in zip(keys, items, strict=True)]
        for attempt in range(_MAX_ATTEMPTS):
            counter, counter_kv = self._counter_of(self._get(self._counter_key))
            result = self.client.txn(
                [self._counter_unchanged(counter_kv), *(Compare.absent(k) for k in keys)],
                [*puts, Op.put(self._counter_key, str(max(counter, top)))],
                [Op.get(k) for k in keys])
            if result.succeeded:
                self._wrote(result)
                return
            taken = [i for (i, _), got in zip(items, result.responses, strict=True) if got]
            if taken:
                raise StoreError(f"intent id {taken[0]} is stored already")
            _pause(attempt)
        raise StoreError(f"cannot store {len(items)} intents: the counter kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def add_next_intents(self, specs: Sequence[IntentSpec], *, floor: int = 0
                         ) -> tuple[list[int], int]:
        """Store ``specs`` under the next free ids, consecutive from ``max(counter, floor)
        + 1``, in ONE transaction that also moves the counter (compare-and-swap, as
        :meth:`add_next_intent`); ``(ids, revision)``. All or nothing. etcd bounds the
        operations of one transaction (``--max-txn-ops``; 128 by default): a batch larger
        than that is refused with :class:`StoreError` and nothing is stored."""
        self._check_open()
        if not specs:
            return [], self.last_revision
        data = [_json(spec_to_dict(spec)) for spec in specs]
        counter, counter_kv = self._counter_of(self._get(self._counter_key))
        for attempt in range(_MAX_ATTEMPTS):
            first = max(counter, floor) + 1
            ids = list(range(first, first + len(specs)))
            keys = [self.intent_key(i) for i in ids]
            result = self.client.txn(
                [self._counter_unchanged(counter_kv), *(Compare.absent(k) for k in keys)],
                [*(Op.put(k, d) for k, d in zip(keys, data, strict=True)),
                 Op.put(self._counter_key, str(ids[-1]))],
                [Op.get(self._counter_key), *(Op.get(k) for k in keys)])
            if result.succeeded:
                self._wrote(result)
                return ids, result.revision
            taken = [i for i, got in zip(ids, result.responses[1:], strict=True) if got]
            if taken:
                floor = max(floor, *taken)  # ids above the counter, stored by hand
            counter, counter_kv = self._counter_of(result.responses[0])
            _pause(attempt)
        raise StoreError(f"cannot allocate {len(specs)} intent ids: the counter kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def replace_intent_id(self, old_id: int, new_id: int) -> None:
        """Move a stored intent to ``new_id`` in one transaction, the counter raised to it
        (only the counter when ``old_id`` is not stored); :class:`StoreError` when
        ``new_id`` is taken."""
        self._check_open()
        old_key, new_key = self.intent_key(old_id), self.intent_key(new_id)
        for attempt in range(_MAX_ATTEMPTS):
            read = self.client.txn((), [Op.get(old_key), Op.get(self._counter_key)])
            old_kvs, counter_kvs = read.responses
            counter, counter_kv = self._counter_of(counter_kvs)
            compare: list[Compare] = []
            ops: list[Op] = []
            if old_kvs and old_id != new_id:
                compare += [Compare.mod_revision(old_key, "=", old_kvs[0].mod_revision),
                            Compare.absent(new_key)]
                ops += [Op.delete(old_key), Op.put(new_key, old_kvs[0].value)]
            if counter < new_id:
                compare.append(self._counter_unchanged(counter_kv))
                ops.append(Op.put(self._counter_key, str(new_id)))
            if not ops:
                return
            result = self.client.txn(compare, ops, [Op.get(new_key)])
            if result.succeeded:
                self._wrote(result)
                return
            if old_kvs and old_id != new_id and result.responses[0]:
                raise StoreError(f"cannot renumber intent {old_id}: id {new_id} is taken")
            _pause(attempt)
        raise StoreError(f"cannot renumber intent {old_id}: the records kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def remove_intent(self, intent_id: int) -> bool:
        """Delete one intent; False when it was not stored. The counter keeps its id."""
        self._check_open()
        result = self.client.txn((), [Op.delete(self.intent_key(intent_id))])
        self._wrote(result)
        return bool(result.responses[0])

    # -- Store: settings -----------------------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default`` (also for a malformed one)."""
        self._check_open()
        kvs = self._get(self.setting_key(key))
        if not kvs:
            return default
        try:
            return _loads(kvs[0].value)
        except _Malformed as exc:
            self._malformed(kvs[0].key, str(exc))
            return default

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (inserted or replaced)."""
        self._check_open()
        data = _json(value)
        self._wrote(self.client.txn((), [Op.put(self.setting_key(key), data)]))

    # -- Store: compute steering ---------------------------------------------------------------
    def compute_state(self) -> dict[str, list[Any]]:
        """``sites``, ``placements``, ``services`` (in the order first written) and
        ``assignments`` (by service, then client), as of one revision."""
        parsed, _ = self._read_prefix("compute/")
        return parsed.compute()

    def write_compute(self, *, sites: Mapping[str, Any] | None = None,
                      placements: Mapping[str, Any] | None = None,
                      services: Mapping[str, Any] | None = None,
                      assignments: Mapping[tuple[str, str], Any] | None = None) -> None:
        """Apply one change to the compute records in ONE transaction: in each mapping a key
        maps to the new record (inserted or replaced; JSON data) or to None (deleted)."""
        self._write_compute(None, {"sites": sites, "placements": placements,
                                   "services": services, "assignments": assignments})

    def write_compute_if_unchanged(self, since_revision: int, *,
                                   sites: Mapping[str, Any] | None = None,
                                   placements: Mapping[str, Any] | None = None,
                                   services: Mapping[str, Any] | None = None,
                                   assignments: Mapping[tuple[str, str], Any] | None = None
                                   ) -> int:
        """:meth:`write_compute`, but only if no compute record changed after
        ``since_revision`` (the revision the change was computed from); else
        :class:`StaleWrite` naming the newer revision. Returns the write's revision."""
        return self._write_compute(since_revision, {
            "sites": sites, "placements": placements, "services": services,
            "assignments": assignments})

    def _write_compute(self, since_revision: int | None,
                       tables: Mapping[str, Mapping[Any, Any] | None]) -> int:
        self._check_open()
        # every record encoded before anything is sent: a bad one fails the whole change
        changes = {table: [(self.compute_key(table, key),
                            None if value is None else _json(value), key)
                           for key, value in (records or {}).items()]
                   for table, records in tables.items()}
        changed = [t for t in COMPUTE_TABLES if changes.get(t)]
        puts = [(table, k, key) for table in ORDERED_TABLES
                for k, data, key in changes.get(table, []) if data is not None]
        for attempt in range(_MAX_ATTEMPTS):
            existing = self._existing([k for _, k, _ in puts])
            compare: list[Compare] = []
            ops: list[Op] = []
            if since_revision is not None:
                compare.append(Compare.mod_revision(self._version_key, "<",
                                                    since_revision + 1))
            position: dict[str, int] = {}
            for table, k, key in puts:
                created = existing.get(k, 0)
                # guard what was read: a record created in between would need no order
                # key, one deleted in between would need a new one
                compare.append(Compare.create_revision(k, "=", created))
                if not created:
                    position[table] = position.get(table, 0) + 1
                    ops.append(Op.put(self._order_key(table, key), str(position[table])))
            for table in COMPUTE_TABLES:
                for k, data, key in changes.get(table, []):
                    if data is not None:
                        ops.append(Op.put(k, data))
                    else:
                        ops.append(Op.delete(k))
                        if table in ORDERED_TABLES:
                            ops.append(Op.delete(self._order_key(table, key)))
            ops.append(Op.put(self._version_key, ",".join(changed)))
            result = self.client.txn(compare, ops, [Op.get(self._version_key)])
            if result.succeeded:
                self._wrote(result)
                return result.revision
            version = result.responses[0]
            if since_revision is not None and version and \
                    version[0].mod_revision > since_revision:
                raise StaleWrite(f"the compute records changed at revision "
                                 f"{version[0].mod_revision}, after revision "
                                 f"{since_revision} this change was computed from",
                                 revision=version[0].mod_revision)
            _pause(attempt)
        raise StoreError(f"cannot store the compute change: the records kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def _existing(self, keys: Sequence[str]) -> dict[str, int]:
        """key -> create revision of those of ``keys`` that exist (one read of the tables
        they are in, keys only)."""
        if not keys:
            return {}
        tables = sorted({k.rsplit("/", 1)[0] + "/" for k in keys})
        result = self.client.txn((), [Op.get_prefix(t, keys_only=True) for t in tables])
        wanted = set(keys)
        return {kv.key: kv.create_revision for kvs in result.responses for kv in kvs
                if kv.key in wanted}

    # -- Store: audit trail --------------------------------------------------------------------
    def audit_key(self, audit_id: int) -> str:
        """The key of audit record ``audit_id``."""
        return f"{self.prefix}/audit/{audit_id:012d}"

    def add_audit(self, records: Sequence[Mapping[str, Any]], *, retention: int) -> list[int]:
        """Append audit records under consecutive ids (compare-and-swap on their counter),
        deleting in the same transaction the records ``retention`` ids below each new one;
        batches of :data:`_AUDIT_BATCH` records, one transaction each. The new ids."""
        self._check_open()
        retention = max(retention, 1)
        data = [_json({k: r.get(k) for k in AUDIT_FIELDS}) for r in records]
        ids: list[int] = []
        for start in range(0, len(data), _AUDIT_BATCH):
            ids += self._add_audit_batch(data[start:start + _AUDIT_BATCH], retention)
        if ids and not self._audit_trimmed:
            self._trim_audit(ids[-1] - retention)
            self._audit_trimmed = True
        return ids

    def _add_audit_batch(self, data: Sequence[bytes], retention: int) -> list[int]:
        counter, counter_kv = self._number_at(self._audit_counter_key)
        for attempt in range(_MAX_ATTEMPTS):
            ids = list(range(counter + 1, counter + 1 + len(data)))
            unchanged = (Compare.absent(self._audit_counter_key) if counter_kv is None else
                         Compare.mod_revision(self._audit_counter_key, "=",
                                              counter_kv.mod_revision))
            # a batch longer than the retention keeps only its latest records, and the
            # deletes reach below the batch only
            floor = ids[-1] - retention
            result = self.client.txn(
                [unchanged],
                [*(Op.put(self.audit_key(i), d) for i, d in zip(ids, data, strict=True)
                   if i > floor),
                 *(Op.delete(self.audit_key(i - retention)) for i in ids
                   if 0 < i - retention < ids[0]),
                 Op.put(self._audit_counter_key, str(ids[-1]))],
                [Op.get(self._audit_counter_key)])
            if result.succeeded:
                self._wrote(result)
                return ids
            counter, counter_kv = self._counter_of(result.responses[0])
            _pause(attempt)
        raise StoreError(f"cannot store {len(data)} audit records: the counter kept moving "
                         f"({_MAX_ATTEMPTS} attempts)")

    def _number_at(self, key: str) -> tuple[int, KV | None]:
        return self._counter_of(self._get(key))

    def _trim_audit(self, up_to_id: int) -> None:
        """Delete every audit record with an id up to ``up_to_id`` (what a larger retention
        of an earlier run left), in transactions of at most 100 deletes."""
        if up_to_id <= 0:
            return
        kvs, _ = self.client.get_prefix(f"{self.prefix}/audit/", keys_only=True)
        old = [kv.key for kv in kvs
               if kv.key.rsplit("/", 1)[-1].isdigit()
               and int(kv.key.rsplit("/", 1)[-1]) <= up_to_id]
        for start in range(0, len(old), 100):
            self._wrote(self.client.txn((), [Op.delete(k) for k in old[start:start + 100]]))

    def audit(self, *, limit: int = 100, since_id: int = 0) -> list[dict[str, Any]]:
        """Audit records oldest first: the first ``limit`` after ``since_id``, or with
        ``since_id`` 0 the latest ``limit`` (one read of the audit keys; malformed records
        are logged and skipped)."""
        self._check_open()
        kvs, _ = self.client.get_prefix(f"{self.prefix}/audit/")
        out: list[dict[str, Any]] = []
        for kv in kvs:
            tail = kv.key.rsplit("/", 1)[-1]
            try:
                if not tail.isdigit():
                    raise _Malformed("the audit id is not a number")
                record = _loads(kv.value)
                if not isinstance(record, dict):
                    raise _Malformed("not a JSON object")
            except _Malformed as exc:
                self._malformed(kv.key, str(exc))
                continue
            audit_id = int(tail)
            if audit_id > since_id:
                out.append({"id": audit_id, **{k: record.get(k) for k in AUDIT_FIELDS}})
        return out[:limit] if since_id else out[-limit:] if limit > 0 else []

    # -- the cluster's extras ------------------------------------------------------------------
    def load(self) -> StoreSnapshot:
        """Everything stored but the audit trail, as of one revision (one read-only
        transaction of the tables' prefixes: a member that starts does not read up to
        ``audit_retention`` audit records it never uses)."""
        self._check_open()
        result = self.client.txn((), [Op.get_prefix(f"{self.prefix}/{table}/")
                                      for table in ("intents", "counters", "compute",
                                                    "settings")])
        revision = result.revision
        parsed = self._read([kv for kvs in result.responses for kv in kvs])
        return StoreSnapshot(revision=revision, intents=sorted(parsed.intents.items()),
                             compute=parsed.compute(), settings=dict(parsed.settings),
                             high_water_intent_id=max([parsed.counter, *parsed.intents]))

    def watch(self, start_revision: int,
              on_events: Callable[[list[StoreEvent], int], None],
              on_error: Callable[[Exception], None]) -> Watch:
        """Watch every change from ``start_revision`` (included; after a :meth:`load` at
        revision R, watch from R + 1). ``on_events(events, revision)`` gets the changes of
        one etcd watch response, in revision order; ``revision``: every change up to it has
        been delivered. Responses that change nothing of the store's (the members' own keys,
        the order bookkeeping) are not passed on; a progress notice of etcd is, without
        events. ``on_error`` as
        :meth:`EtcdClient.watch_prefix`: a :class:`StoreError` saying "compacted" means
        reload. Malformed records are logged and skipped."""
        self._check_open()

        def translate(events: list[WatchEvent], revision: int) -> None:
            mine = [e for e in map(self._event, events) if e is not None]
            if mine or not events:
                on_events(mine, revision)

        return self.client.watch_prefix(f"{self.prefix}/", start_revision, translate,
                                        on_error)

    def _event(self, event: WatchEvent) -> StoreEvent | None:
        kv = KV(key=event.key, value=event.value, create_revision=event.create_revision,
                mod_revision=event.mod_revision, version=0, lease=event.lease)
        try:
            item = self._parse(kv, with_value=event.type == "put")
        except _Malformed as exc:
            self._malformed(event.key, str(exc))
            return None
        if item is None or item[0] in ("order", "version"):
            return None  # bookkeeping of the compute records, not a record
        table, key, value = item
        return StoreEvent(revision=event.mod_revision, table=cast(EventTable, table), key=key,
                          value=value)

    def _get(self, key: str) -> list[KV]:
        kv = self.client.get(key)
        return [kv] if kv is not None else []

    def __repr__(self) -> str:
        return f"EtcdStore({self.client.endpoints!r}, prefix={self.prefix!r})"


def _loads(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise _Malformed(f"not JSON: {exc}") from None


def _pause(attempt: int) -> None:
    """A short random pause after a lost compare-and-swap, growing with the attempts, so
    writers that collide do not collide again in lockstep."""
    if attempt >= 2:
        time.sleep(random.uniform(0, min(0.05, 0.001 * attempt)))


def open_etcd_store(endpoints: str | Sequence[str], prefix: str = "/cpn",
                    timeout_s: float = 2.0) -> EtcdStore:
    """The store under ``prefix`` on the etcd cluster at ``endpoints`` (URLs, or one string
    of comma-separated URLs). Checks that etcd answers: :class:`ClusterUnavailable` naming
    the addresses when it does not (within about ``timeout_s`` per endpoint)."""
    urls = [u.strip() for u in endpoints.split(",")] if isinstance(endpoints, str) \
        else [u.strip() for u in endpoints]
    client = EtcdClient([u for u in urls if u], timeout_s=timeout_s)
    store = EtcdStore(client, prefix)
    try:
        client.get(f"{store.prefix}/counters/intent")
    except ClusterUnavailable:
        client.close()
        raise
    except StoreError as exc:
        client.close()
        raise ClusterUnavailable(f"etcd at {', '.join(client.endpoints)} does not serve "
                                 f"the store: {exc}") from exc
    return store
