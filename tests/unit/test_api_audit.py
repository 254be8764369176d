"""The audit trail's queue (``controller/api/audit.py``) on a real SQLite store whose writes
the test makes fail for a while: records are kept in order while the store is down, bounded
by ``max_pending`` (the oldest dropped and counted), and written once it answers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from controller.api.audit import AuditTrail
from controller.errors import StoreError
from controller.network.counters import PROCESS_REGISTRY
from controller.store import SqliteStore
from tests.waiting import wait_until


def _rec(n: int) -> dict[str, Any]:
    return {"time": float(n), "token": "t", "remote": "127.0.0.1", "method": "POST",
            "path": f"/api/v1/intents/{n}", "status": 201, "body_sha256": "0" * 64}


def test_records_wait_in_order_while_the_store_is_down_bounded_by_max_pending(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="controller.api.audit")
    store = SqliteStore(tmp_path / "state.sqlite3")
    real = store.add_audit
    down = [True]

    def flaky(records: Any, *, retention: int) -> list[int]:
        if down[0]:
            raise StoreError("down (test)")
        return real(records, retention=retention)

    store.add_audit = flaky  # type: ignore[method-assign]
    trail = AuditTrail(store, retention=100, max_pending=5, batch=2, linger_s=0.0)
    try:
        for n in range(8):
            trail.record(**_rec(n))
        assert not trail.flush(0.5)  # the store does not answer: not written
        wait_until(lambda: trail.dropped == 3, timeout_s=5.0, message="3 oldest dropped")
        assert sum("cannot write the audit trail" in r.getMessage()
                   for r in caplog.records) == 1  # the outage is logged once
        down[0] = False
        assert trail.flush(5.0)
        assert [r["path"] for r in store.audit()] == [f"/api/v1/intents/{n}"
                                                      for n in range(3, 8)]
        assert trail.written == 5
        assert (PROCESS_REGISTRY.get_sample_value("cpn_api_audit_records_total",
                                                  {"outcome": "dropped"}) or 0) >= 3
        assert any("written to the store again" in r.getMessage() for r in caplog.records)
    finally:
        trail.close()
        store.close()


def test_close_writes_what_is_queued_and_a_burst_is_one_commit(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    calls: list[int] = []
    real = store.add_audit

    def counted(records: Any, *, retention: int) -> list[int]:
        calls.append(len(records))
        return real(records, retention=retention)

    store.add_audit = counted  # type: ignore[method-assign]
    trail = AuditTrail(store, retention=100, linger_s=5.0)
    for n in range(30):
        trail.record(**_rec(n))
    trail.close()  # does not wait out the linger: close flushes at once
    assert calls == [30]
    assert len(store.audit(limit=100)) == 30
    store.close()
