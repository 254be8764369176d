"""The store interface: the one way operator state is read and written.

Every implementation keeps the same records with the same meaning, so callers never know
which one they talk to:

* **intents**: ``(id, IntentSpec)``. Ids are never reused: :meth:`Store.high_water_intent_id`
  is at least every id ever stored, deleted ones included, so the flows (cookies) of a
  deleted intent never come back as someone else's.
* **compute steering**: ``sites`` (keyed by site id), ``placements`` (by placement id),
  ``services`` (by service name) and ``assignments`` (by ``(service, client host)``), each
  record JSON data as steering wrote it.
* **settings**: key -> JSON value.
* **audit**: the API's write records (:data:`AUDIT_FIELDS`), each with an id that grows with
  every record and is never reused; only the latest ``retention`` records are kept.

Rules every implementation keeps:

* **One change, one transaction.** Each write method commits everything it was given or
  nothing; when it cannot, it raises :class:`~controller.errors.StoreError` and the store is
  as it was. A write is durable before the method returns (callers acknowledge operators
  after it).
* **Ids by compare-and-swap.** :meth:`Store.add_intent` fails (``StoreError``) when the id is
  stored already, so two writers that picked the same id cannot both win; the loser asks for
  a fresh id and tries again.
* **Reads are consistent.** :meth:`Store.compute_state` returns the four compute tables as
  of one point in time.

:class:`~controller.store.sqlite.SqliteStore` is the implementation for one controller. A
store shared by several controllers (etcd) keeps the same methods: each write one
transaction, ``add_intent`` a create-if-absent on the id's key; it adds a way for every member
to watch the changes the others commit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from controller.topology.model import IntentSpec, Match

__all__ = ["AUDIT_FIELDS", "Store", "default_state_dir", "spec_from_dict", "spec_to_dict"]

AUDIT_FIELDS = ("time", "token", "remote", "method", "path", "status", "body_sha256")
"""What an audit record holds: ``time`` (Unix seconds), ``token`` (the token's name, None when
no valid token came), ``remote`` (the client's address), ``method``, ``path``, ``status``
(the HTTP status answered), ``body_sha256`` (hex SHA-256 of the request body)."""


@runtime_checkable
class Store(Protocol):
    """Operator state: intents, compute steering records and settings (see the module
    docstring for the rules). Safe to call from several threads."""

    def ok(self) -> bool:
        """The store answers (for ``/health``); never raises."""
        ...

    def close(self) -> None:
        """Release the store; no call may follow."""
        ...

    # -- intents ---------------------------------------------------------------------------
    def intents(self) -> list[tuple[int, IntentSpec]]:
        """Stored intents in id order."""
        ...

    def high_water_intent_id(self) -> int:
        """The largest intent id ever stored (0 when none), deleted ones included."""
        ...

    def add_intent(self, intent_id: int, spec: IntentSpec) -> None:
        """Store one intent under ``intent_id``; :class:`StoreError` when that id is stored
        already or the write fails (the store unchanged)."""
        ...

    def add_intents(self, items: Sequence[tuple[int, IntentSpec]]) -> None:
        """Store several intents in ONE transaction: all or nothing (:class:`StoreError`
        when one of the ids is stored already, the store unchanged)."""
        ...

    def replace_intent_id(self, old_id: int, new_id: int) -> None:
        """Move a stored intent to another id (a topology file now claims ``old_id``)."""
        ...

    def remove_intent(self, intent_id: int) -> bool:
        """Delete one intent; False when it was not stored. Its id stays retired."""
        ...

    # -- settings --------------------------------------------------------------------------
    def setting(self, key: str, default: Any = None) -> Any:
        """The JSON value stored under ``key``, or ``default``."""
        ...

    def set_setting(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key`` (inserted or replaced)."""
        ...

    # -- compute steering ------------------------------------------------------------------
    def compute_state(self) -> dict[str, list[Any]]:
        """``sites``, ``placements``, ``services`` and ``assignments`` as written, sites,
        placements and services in the order first written (a replaced site keeps its
        place), assignments by service and client."""
        ...

    def write_compute(self, *, sites: Mapping[str, Any] | None = None,
                      placements: Mapping[str, Any] | None = None,
                      services: Mapping[str, Any] | None = None,
                      assignments: Mapping[tuple[str, str], Any] | None = None) -> None:
        """Apply one change to the compute records in ONE transaction: in each mapping a key
        maps to the new record (inserted or replaced; JSON data) or to None (deleted)."""
        ...


    # -- audit trail -----------------------------------------------------------------------
    def add_audit(self, records: Sequence[Mapping[str, Any]], *, retention: int) -> list[int]:
        """Append audit records (:data:`AUDIT_FIELDS`) in ONE transaction and drop the
        oldest beyond the latest ``retention``; the new records' ids, ascending."""
        ...

    def audit(self, *, limit: int = 100, since_id: int = 0) -> list[dict[str, Any]]:
        """Audit records oldest first, each with its ``id``: those after ``since_id`` (the
        first ``limit`` of them) or, with ``since_id`` 0, the latest ``limit``."""
        ...


def default_state_dir() -> Path:
    """``$XDG_DATA_HOME/cpn-controller``, else ``~/.local/share/cpn-controller``."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cpn-controller"


def spec_to_dict(spec: IntentSpec) -> dict[str, Any]:
    """An :class:`IntentSpec` as the plain JSON data a store keeps (``match`` fields left out
    when unset)."""
    out: dict[str, Any] = {"src": spec.src, "dst": spec.dst,
                           "max_latency_ms": spec.max_latency_ms,
                           "min_bandwidth_mbps": spec.min_bandwidth_mbps,
                           "priority": spec.priority, "protection": spec.protection,
                           "police": spec.police, "sla_reroute": spec.sla_reroute}
    if spec.name is not None:
        out["name"] = spec.name
    if spec.match is not None:
        out["match"] = {k: v for k, v in (("ip_proto", spec.match.ip_proto),
                                          ("src_port", spec.match.src_port),
                                          ("dst_port", spec.match.dst_port),
                                          ("dscp", spec.match.dscp)) if v is not None}
    return out


def spec_from_dict(data: Mapping[str, Any]) -> IntentSpec:
    """The inverse of :func:`spec_to_dict` (defaults for fields an older record lacks)."""
    match = data.get("match")
    return IntentSpec(src=data["src"], dst=data["dst"],
                      max_latency_ms=float(data["max_latency_ms"]),
                      min_bandwidth_mbps=float(data.get("min_bandwidth_mbps", 0.0)),
                      name=data.get("name"),
                      match=Match(**match) if match is not None else None,
                      priority=int(data.get("priority", 100)),
                      protection=bool(data.get("protection", False)),
                      police=bool(data.get("police", False)),
                      sla_reroute=bool(data.get("sla_reroute", False)))
