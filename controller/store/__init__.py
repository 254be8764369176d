"""What an operator said must survive a restart, behind one interface.

:class:`Store` (in :mod:`.interface`) is everything the controller reads from and writes to
its operator state: intents with their ids, compute sites, placements, anycast services with
their assignments, settings. Callers (the intent write protocol in
:mod:`controller.operations`, compute steering in :mod:`controller.compute.steering`, the
health check) depend on that interface only; :class:`SqliteStore` (:mod:`.sqlite`) is the
implementation for a single controller. :func:`open_store` opens the store of a state
directory. :class:`EtcdStore` (:mod:`.etcd`, opened by :func:`open_etcd_store`) is the store
the members of a cluster share; it is imported on first use, so the SQLite path never loads
the etcd client.

Switch state is never stored: it is read back from the switches (see docs/controller.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.errors import StoreError
from controller.store.interface import Store, default_state_dir, spec_from_dict, spec_to_dict
from controller.store.sqlite import SCHEMA_VERSION, STORE_FILE_NAME, SqliteStore

if TYPE_CHECKING:
    from controller.store.etcd import EtcdStore, open_etcd_store

__all__ = ["SCHEMA_VERSION", "STORE_FILE_NAME", "EtcdStore", "SqliteStore", "Store",
           "StoreError", "default_state_dir", "open_etcd_store", "open_store", "spec_from_dict",
           "spec_to_dict"]

_LAZY = {"EtcdStore", "open_etcd_store"}


def __getattr__(name: str) -> Any:
    # the etcd store (and its HTTP client) loads only when a caller asks for it
    if name in _LAZY:
        from controller.store import etcd
        return getattr(etcd, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_store(state_dir: str | Path | None = None) -> Store:
    """The store of ``state_dir`` (default :func:`default_state_dir`), created with the
    directory when missing: ``<state_dir>/state.sqlite3``. Raises :class:`StoreError`."""
    state = Path(state_dir) if state_dir is not None else default_state_dir()
    return SqliteStore(state / STORE_FILE_NAME)
