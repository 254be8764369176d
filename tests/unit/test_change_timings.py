"""A Change's record splits its time from the event to the confirmation into its parts: what
came before the compute (registering a batch's intents), the compute, the queue, the phases
and the confirmation itself."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_stalled_switch import running_service

from controller.topology.model import IntentSpec, Match, Topology

REGISTER_DELAY_S = 0.004
CONFIRM_DELAY_S = 0.03


def test_a_batch_record_counts_registration_and_confirmation_apart(
        diamond: Topology, monkeypatch: pytest.MonkeyPatch) -> None:
    service, _ = running_service(diamond)
    try:
        table, core = service.core.router.table, service.core
        add, confirm = table.add, core.confirm

        def slow_add(*args: Any, **kw: Any) -> Any:
            time.sleep(REGISTER_DELAY_S)
            return add(*args, **kw)

        def slow_confirm(*args: Any, **kw: Any) -> Any:
            time.sleep(CONFIRM_DELAY_S)
            return confirm(*args, **kw)

        monkeypatch.setattr(table, "add", slow_add)
        monkeypatch.setattr(core, "confirm", slow_confirm)
        specs = [IntentSpec("h2", "h1", 15.0, match=Match(ip_proto=6, dst_port=5000 + k),
                            priority=10) for k in range(5)]
        n = len(service.change_records())
        added = service.add_intents(specs, timeout_s=10.0)
        assert [i.state for i in added] == ["installed"] * 5
        (rec,) = [r for r in service.change_records()[n:] if r.cause == "5 intents added"]
        # five registrations before the compute, one slow confirmation after the barriers
        assert rec.prepare_ms >= 5 * REGISTER_DELAY_S * 1000
        assert rec.confirm_ms >= CONFIRM_DELAY_S * 1000
        parts = rec.prepare_ms + rec.compute_ms + rec.queued_ms + rec.confirm_ms
        assert parts <= rec.event_to_confirm_ms
        assert rec.prepare_ms < rec.event_to_confirm_ms - rec.confirm_ms
    finally:
        service.stop()

