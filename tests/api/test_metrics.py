"""The metrics collector folds the service's Change records into histograms once each."""

from __future__ import annotations

import collections
import re

from controller.api.metrics import Metrics
from controller.network.change import ChangeKind
from controller.network.counters import count_openflow_message, count_packet_in
from controller.network.sender import ChangeRecord
from controller.network.service import ControllerService
from controller.topology.loader import load_topology

from .conftest import TOPOLOGIES


class _Sender:
    """Stands in for the ChangeSender thread: only its ``records`` (and backlog) are read."""

    def __init__(self) -> None:
        self.records: collections.deque[ChangeRecord] = collections.deque()

    def backlog(self) -> dict[int, tuple[int, float]]:
        return {}  # no switch is behind


def _value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, f"{name} not in exposition"
    return float(m.group(1))


def test_change_records_become_histograms_once() -> None:
    service = ControllerService(load_topology(TOPOLOGIES / "diamond.yaml"))
    sender = _Sender()
    service.sender = sender  # type: ignore[assignment]
    metrics = Metrics(service)
    sender.records.extend([
        ChangeRecord(token=1, cause="port s1:1 down", kind=ChangeKind.PORT_DOWN, messages=6,
                     switches=2, compute_ms=0.4, event_to_confirm_ms=12.5),
        ChangeRecord(token=2, cause="intent fast added", kind=ChangeKind.INTENTS, messages=4,
                     switches=3, compute_ms=0.2, event_to_confirm_ms=3.0),
        ChangeRecord(token=3, cause="switch s2 lost", kind=ChangeKind.SWITCH_LOST, messages=2,
                     switches=1, compute_ms=0.1, event_to_confirm_ms=40.0, timed_out=(4,)),
    ])
    text = metrics.exposition().decode()
    assert _value(text, "cpn_restoration_ms_count") == 1.0  # the timed-out one is left out
    assert _value(text, "cpn_restoration_ms_sum") == 12.5
    assert _value(text, 'cpn_path_computation_ms_count{source="change"}') == 3.0
    assert _value(text, "cpn_change_messages_total") == 12.0
    sender.records.append(ChangeRecord(token=4, cause="port s1:1 up", kind=ChangeKind.PORT_UP,
                                       messages=2, switches=1, compute_ms=0.1,
                                       event_to_confirm_ms=5.0))
    text = metrics.exposition().decode()
    assert _value(text, 'cpn_path_computation_ms_count{source="change"}') == 4.0
    assert _value(text, "cpn_restoration_ms_count") == 1.0
    assert _value(text, "cpn_changes_total") == 4.0


def test_restoration_causes_and_app_counters() -> None:
    restoring = {k for k in ChangeKind if k.restoration}
    assert restoring == {ChangeKind.PORT_DOWN, ChangeKind.SWITCH_LOST, ChangeKind.RESTORE}
    service = ControllerService(load_topology(TOPOLOGIES / "diamond.yaml"))
    metrics = Metrics(service)
    before = metrics.exposition().decode()
    count_openflow_message("OFPFlowMod", "out", 3)
    count_packet_in(0x1)
    after = metrics.exposition().decode()
    name = 'cpn_openflow_messages_total{direction="out",type="OFPFlowMod"}'
    old = _value(before, name) if name in before else 0.0
    assert _value(after, name) == old + 3
    assert _value(after, 'cpn_packet_ins_total{dpid="0x1"}') >= 1.0
