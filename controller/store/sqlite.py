"""The SQLite store: operator state of a single controller in one file
(``<state dir>/state.sqlite3``), implementing :class:`~controller.store.interface.Store`.

Durability: WAL journal with ``synchronous=FULL`` and one transaction per change, so a change
is on disk before the API acknowledges it and a crash (even SIGKILL, even mid-write) loses
nothing that was acknowledged - SQLite rolls an unfinished transaction back on the next open.

Concurrency: one connection shared by all threads behind a lock. Writes are rare operator
actions, so serialising them costs nothing, and it keeps "read the high-water id, insert"
atomic without relying on SQLite's busy timeouts. Several processes on one file would also be
safe (SQLite locks the file), but the controller opens it once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from controller.errors import StoreError
from controller.store.interface import AUDIT_FIELDS, spec_from_dict, spec_to_dict
from controller.topology.model import IntentSpec

__all__ = ["SCHEMA_VERSION", "STORE_FILE_NAME", "SqliteStore"]

SCHEMA_VERSION = 3
STORE_FILE_NAME = "state.sqlite3"
"""the store's file in a state directory"""

_SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS intents (
    id INTEGER PRIMARY KEY,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS compute_sites (id TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS placements (id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

# v2: anycast services and their per-client assignments (compute steering, docs/compute.md)
_SCHEMA_V2 = """
CREATE TABLE IF NOT EXISTS compute_services (name TEXT PRIMARY KEY, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS service_assignments (
    service TEXT NOT NULL,
    client TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (service, client)
);
"""
# v3: the API's audit trail (AUTOINCREMENT: an id is never reused, even after retention
# dropped the newest row)
_SCHEMA_V3 = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    token TEXT,
    remote TEXT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    status INTEGER NOT NULL,
    body_sha256 TEXT NOT NULL
);
"""
_MIGRATIONS = ((1, _SCHEMA_V1), (2, _SCHEMA_V2), (3, _SCHEMA_V3))
"""(version, script): a store at version n gets every script above n, in order."""

def _json(value: Any) -> str:
    """A record as stored: JSON with sorted keys; :class:`StoreError` for data JSON cannot
    hold (checked before the transaction starts, so nothing is half-written)."""
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"cannot store {type(value).__name__} data: {exc}") from exc


class SqliteStore:
    """The SQLite state store at ``path`` (created with its directory if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False,
                                       isolation_level=None, timeout=10.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open state store {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any error)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"state store {self.path}: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreError(f"state store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, "
                       "value TEXT NOT NULL)")
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            current = 0 if row is None else int(row[0])
            if current > SCHEMA_VERSION:
                raise StoreError(f"state store {self.path} has schema version {row[0]}; this "
                                 f"controller knows up to {SCHEMA_VERSION}")
            for version, script in _MIGRATIONS:
                if version > current:
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
            db.execute("INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT(key) "
                       "DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'"
                                   ).fetchone()
        return int(row[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def ok(self) -> bool:
        """The store answers a query (for ``/health``)."""
        try:
            with self._lock:
                self._db.execute("SELECT 1").fetchone()
            return True
        except sqlite3.Error:
            return False

    # -- intents ---------------------------------------------------------------------------------
    def intents(self) -> list[tuple[int, IntentSpec]]:
        """Stored intents in id order."""
        with self._lock:
            rows = self._db.execute("SELECT id, spec FROM intents ORDER BY id").fetchall()
        return [(int(i), spec_from_dict(json.loads(s))) for i, s in rows]

    def high_water_intent_id(self) -> int:
        """The largest intent id ever stored (ids are never reused, so cookies of a deleted
        intent never come back as someone else's)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='intent_high_water'"
                                   ).fetchone()
            top = self._db.execute("SELECT MAX(id) FROM intents").fetchone()[0]
        return max(int(row[0]) if row else 0, int(top or 0))

    def add_intent(self, intent_id: int, spec: IntentSpec) -> None:
        """Store one intent (one transaction; raises :class:`StoreError` on failure, leaving
        the store as it was)."""
        data = _json(spec_to_dict(spec))
        try:
            with self._tx() as db:
                db.execute("INSERT INTO intents (id, spec, created_at) VALUES (?, ?, ?)",
                           (intent_id, data, time.time()))
                db.execute("INSERT INTO meta VALUES ('intent_high_water', ?) ON CONFLICT(key) "
                           "DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                           (intent_id,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store intent {intent_id}: {exc}") from exc

    def add_intents(self, items: Sequence[tuple[int, IntentSpec]]) -> None:
        """Store several intents in one transaction (all or nothing)."""
        if not items:
            return
        rows = [(iid, _json(spec_to_dict(spec)), time.time()) for iid, spec in items]
        try:
            with self._tx() as db:
                db.executemany("INSERT INTO intents (id, spec, created_at) VALUES (?, ?, ?)",
                               rows)
                db.execute("INSERT INTO meta VALUES ('intent_high_water', ?) ON CONFLICT(key) "
                           "DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                           (max(iid for iid, _ in items),))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store {len(items)} intents: {exc}") from exc

    def replace_intent_id(self, old_id: int, new_id: int) -> None:
        """Move a stored intent to another id (used when a topology file now claims its id)."""
        try:
            with self._tx() as db:
                db.execute("UPDATE intents SET id = ? WHERE id = ?", (new_id, old_id))
                db.execute("INSERT INTO meta VALUES ('intent_high_water', ?) ON CONFLICT(key) "
                           "DO UPDATE SET value = MAX(CAST(value AS INTEGER), excluded.value)",
                           (new_id,))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot renumber intent {old_id}: {exc}") from exc

    def remove_intent(self, intent_id: int) -> bool:
        """Delete one intent; False if it was not stored."""
        try:
            with self._tx() as db:
                cur = db.execute("DELETE FROM intents WHERE id = ?", (intent_id,))
                return cur.rowcount > 0
        except sqlite3.Error as exc:
            raise StoreError(f"cannot delete intent {intent_id}: {exc}") from exc

    # -- settings --------------------------------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        with self._lock:
            row = self._db.execute("SELECT value FROM settings WHERE key = ?", (key,)
                                   ).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        data = _json(value)
        try:
            with self._tx() as db:
                db.execute("INSERT INTO settings VALUES (?, ?) ON CONFLICT(key) DO UPDATE "
                           "SET value = excluded.value", (key, data))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store setting {key!r}: {exc}") from exc

    # -- compute steering (sites, placements, services, assignments) -----------------------------
    def compute_state(self) -> dict[str, list[Any]]:
        """Everything stored for compute steering: ``sites`` (site dicts), ``placements`` and
        ``assignments`` (dicts as written), ``services`` (service dicts), in the order written
        (assignments by service and client)."""
        with self._lock:
            sites = self._db.execute("SELECT spec FROM compute_sites ORDER BY rowid").fetchall()
            placements = self._db.execute("SELECT data FROM placements ORDER BY rowid").fetchall()
            services = self._db.execute("SELECT spec FROM compute_services ORDER BY rowid"
                                        ).fetchall()
            assignments = self._db.execute("SELECT data FROM service_assignments "
                                           "ORDER BY service, client").fetchall()
        return {"sites": [json.loads(r[0]) for r in sites],
                "placements": [json.loads(r[0]) for r in placements],
                "services": [json.loads(r[0]) for r in services],
                "assignments": [json.loads(r[0]) for r in assignments]}

    def write_compute(self, *, sites: Mapping[str, Any] | None = None,
                      placements: Mapping[str, Any] | None = None,
                      services: Mapping[str, Any] | None = None,
                      assignments: Mapping[tuple[str, str], Any] | None = None) -> None:
        """Apply a change to the compute tables in ONE transaction: in each mapping a key maps
        to the new record (inserted or replaced; JSON data) or to None (deleted). Site rows keep
        their position (registration order) when replaced. Raises :class:`StoreError` and
        leaves the store as it was."""
        rows = {table: [(key, None if value is None else _json(value))
                        for key, value in (records or {}).items()]
                for table, records in (("sites", sites), ("placements", placements),
                                       ("services", services))}
        assigned = [(key, None if value is None else _json(value))
                    for key, value in (assignments or {}).items()]
        try:
            with self._tx() as db:
                for key, data in rows["sites"]:
                    if data is None:
                        db.execute("DELETE FROM compute_sites WHERE id = ?", (key,))
                    else:
                        db.execute("INSERT INTO compute_sites (id, spec) VALUES (?, ?) "
                                   "ON CONFLICT(id) DO UPDATE SET spec = excluded.spec",
                                   (key, data))
                for key, data in rows["placements"]:
                    if data is None:
                        db.execute("DELETE FROM placements WHERE id = ?", (key,))
                    else:
                        db.execute("INSERT OR REPLACE INTO placements (id, data) VALUES (?, ?)",
                                   (key, data))
                for key, data in rows["services"]:
                    if data is None:
                        db.execute("DELETE FROM compute_services WHERE name = ?", (key,))
                    else:
                        db.execute("INSERT OR REPLACE INTO compute_services (name, spec) "
                                   "VALUES (?, ?)", (key, data))
                for (service, client), data in assigned:
                    if data is None:
                        db.execute("DELETE FROM service_assignments WHERE service = ? AND "
                                   "client = ?", (service, client))
                    else:
                        db.execute("INSERT OR REPLACE INTO service_assignments (service, "
                                   "client, data) VALUES (?, ?, ?)", (service, client, data))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store the compute change: {exc}") from exc

    # -- audit trail -----------------------------------------------------------------------------
    def add_audit(self, records: Sequence[Mapping[str, Any]], *, retention: int) -> list[int]:
        """Append audit records in one transaction, then drop all but the latest
        ``retention``; the new ids."""
        if not records:
            return []
        rows = [tuple(r.get(k) for k in AUDIT_FIELDS) for r in records]
        try:
            with self._tx() as db:
                ids = [int(db.execute(
                    f"INSERT INTO audit ({', '.join(AUDIT_FIELDS)}) VALUES "
                    f"({', '.join('?' * len(AUDIT_FIELDS))})", row).lastrowid or 0)
                    for row in rows]
                db.execute("DELETE FROM audit WHERE id <= ?", (ids[-1] - max(retention, 1),))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot store {len(rows)} audit records: {exc}") from exc
        return ids

    def audit(self, *, limit: int = 100, since_id: int = 0) -> list[dict[str, Any]]:
        """Audit records oldest first: the first ``limit`` after ``since_id``, or with
        ``since_id`` 0 the latest ``limit``."""
        columns = f"id, {', '.join(AUDIT_FIELDS)}"
        with self._lock:
            if since_id:
                rows = self._db.execute(f"SELECT {columns} FROM audit WHERE id > ? "
                                        "ORDER BY id LIMIT ?", (since_id, limit)).fetchall()
            else:
                rows = self._db.execute(f"SELECT {columns} FROM audit ORDER BY id DESC "
                                        "LIMIT ?", (limit,)).fetchall()[::-1]
        return [dict(zip(("id", *AUDIT_FIELDS), row, strict=True)) for row in rows]
