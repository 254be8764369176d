"""A switch that does not answer a barrier in time: the core forgets its table (no intent
through it is confirmed, nothing is computed for it), and the service reads it again until it
answers, then reconciles; the change it stalled does not hold back the other switches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, flow_entries, running

from controller.network.core import ControllerCore
from controller.network.service import ControllerService
from controller.topology.model import IntentSpec, Topology


def dp(core: ControllerCore, node: str) -> int:
    return core.wiring.node_dpid[node]


# --- the pure core ---------------------------------------------------------------------------


def test_an_unconfirmed_switch_holds_back_only_the_intents_through_it(diamond: Topology
                                                                      ) -> None:
    core, net = running(diamond, load_intents=False)
    s2, s3 = dp(core, "s2"), dp(core, "s3")
    fast, c1 = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3.0, name="fast"), 2.0)
    cheap, c2 = core.add_intent(IntentSpec("h2", "h1", max_latency_ms=15.0, name="cheap"), 2.1)
    assert fast.path == ("s1", "s2", "s4") and cheap.path == ("s4", "s3", "s1")
    # s2 got c1 and c2 but did not confirm them: every switch but s2 applied them
    for change in (c1, c2):
        for phase in (change.phase0, change.phase1, change.phase2):
            net.apply_phase({d: m for d, m in phase.items() if d != s2})
    assert core.desync(s2, 2.2) is True
    assert core.desync(s2, 2.2) is False  # unknown already
    assert not core.synced(s2) and core.synced(s3)
    assert core.confirm(c2, 2.3) == [cheap]  # s3's intent is installed, s2's is not
    assert fast.state == "pending" and cheap.state == "installed"
    assert [e["kind"] for e in core.state.events].count("switch_unconfirmed") == 1
    # while s2 is unknown, nothing is computed for it, and it is still routed through
    other = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3.0, name="other",
                                       priority=200), 2.4)[1]
    assert s2 not in other.dpids and core.intent(3).path == ("s1", "s2", "s4")
    net.apply_change(other)
    assert core.confirm(other, 2.5) == [] and fast.state == "pending"
    # it answers again: it is read and reconciled; what it lacks is sent, then confirmed
    back = core.reconcile(s2, flow_entries(net, s2), 3.0)
    assert back.adds.get(s2) and set(back.intents) >= {fast.id, 3}
    apply_and_confirm(core, net, back, 3.1)
    assert fast.state == "installed" and core.intent(3).state == "installed"
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    assert net.trace("h1", {"eth_type": 0x0800, "ipv4_src": h1.ip,
                            "ipv4_dst": h2.ip}).delivered_to == "h2"


def test_a_switch_read_again_in_the_middle_of_a_change_is_vouched_for_by_its_reconcile(
        diamond: Topology) -> None:
    """s2 refuses its part of a change and is read and reconciled before that change is
    confirmed (the resync thread is quicker than the change's last phase): the change's
    confirmation must not install the intent through s2, which lacks its flows; the
    reconciliation's confirmation does."""
    core, net = running(diamond, load_intents=False)
    s2 = dp(core, "s2")
    fast, c1 = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3.0, name="fast"), 2.0)
    assert fast.path == ("s1", "s2", "s4")
    for phase in (c1.phase0, c1.phase1, c1.phase2):
        net.apply_phase({d: m for d, m in phase.items() if d != s2})  # s2 refused its part
    assert core.desync(s2, 2.1)
    back = core.reconcile(s2, flow_entries(net, s2), 2.2)  # read before c1 is confirmed
    assert back.adds.get(s2) and fast.id in back.intents
    assert core.confirm(c1, 2.3) == [] and fast.state == "pending"
    apply_and_confirm(core, net, back, 2.4)
    assert fast.state == "installed"
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    assert net.trace("h1", {"eth_type": 0x0800, "ipv4_src": h1.ip,
                            "ipv4_dst": h2.ip}).delivered_to == "h2"


def test_a_switch_that_applied_everything_is_reconciled_without_messages(
        diamond: Topology) -> None:
    """The messages were only late (a stalled control channel): the read shows them."""
    core, net = running(diamond, load_intents=False)
    s2 = dp(core, "s2")
    fast, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3.0), 2.0)
    net.apply_change(change)
    core.desync(s2, 2.1)
    assert core.confirm(change, 2.2) == [] and fast.state == "pending"
    back = core.reconcile(s2, flow_entries(net, s2), 3.0)
    assert back.empty and fast.id in back.intents
    assert core.confirm(back, 3.1) == [fast]


# --- the service: the stall is bounded, the switch is read until it answers ---------------------


class _Barrier:
    def __init__(self, answered: threading.Event) -> None:
        self.answered = answered

    def wait(self, timeout: float | None = None) -> bool:
        return self.answered.wait(timeout)


class _Reply:
    def __init__(self, parts: list[Any], answered: bool) -> None:
        self.parts = parts
        self.error: str | None = None
        self._answered = answered

    def wait(self, timeout: float | None = None) -> bool:
        if not self._answered and timeout:
            time.sleep(min(timeout, 0.05))
        return self._answered

    def cancel(self) -> None:
        pass


class StallingSwitches:
    """The service's Transport over a :class:`FakeNetwork`: every switch applies what it is
    sent and answers at once, except the dpids in ``stalled``, which neither apply nor
    answer (barriers or reads) until :meth:`answer` releases them."""

    def __init__(self, net: FakeNetwork) -> None:
        self.net = net
        self.stalled: set[int] = set()
        self.held: dict[int, list[list[Any]]] = {}
        self.sent: dict[int, int] = {}
        self.reads: dict[int, int] = {}
        self._events: dict[int, threading.Event] = {}

    def _event(self, dpid: int) -> threading.Event:
        """Set once the switch has answered everything sent so far."""
        ev = self._events.get(dpid)
        if ev is None or (ev.is_set() and dpid in self.stalled):
            ev = self._events[dpid] = threading.Event()
        if dpid not in self.stalled:
            ev.set()
        return ev

    def send(self, handle: Any, msgs: Any) -> _Barrier:
        dpid = int(handle)
        self.sent[dpid] = self.sent.get(dpid, 0) + 1
        if dpid in self.stalled:
            self.held.setdefault(dpid, []).append(list(msgs))
        else:
            self.net.apply(dpid, list(msgs))
        return _Barrier(self._event(dpid))

    def alive(self, handle: Any) -> bool:
        return True

    def request(self, handle: Any, msg: Any) -> _Reply:
        dpid = int(handle)
        self.reads[dpid] = self.reads.get(dpid, 0) + 1
        return _Reply(self.net.flow_stats(dpid), dpid not in self.stalled)

    def answer(self, dpid: int) -> None:
        """The switch works through what it was sent, in order, and answers again."""
        self.stalled.discard(dpid)
        for msgs in self.held.pop(dpid, []):
            self.net.apply(dpid, msgs)
        self._event(dpid).set()


class _Refused:
    """A barrier answered at once, after the switch refused a FlowMod before it."""

    error = "OpenFlow error type 5 code 1 to a FlowMod"

    def wait(self, timeout: float | None = None) -> bool:
        return False


class RefusingSwitches(StallingSwitches):
    """Switches in ``refusing`` answer every barrier at once but apply none of the
    FlowMods sent before it (a full table): the barrier's waiter carries the refusal."""

    def __init__(self, net: FakeNetwork) -> None:
        super().__init__(net)
        self.refusing: set[int] = set()

    def send(self, handle: Any, msgs: Any) -> Any:
        dpid = int(handle)
        if dpid in self.refusing:
            self.sent[dpid] = self.sent.get(dpid, 0) + 1
            return _Refused()
        return super().send(handle, msgs)


def running_service(diamond: Topology, barrier_timeout_s: float = 5.0, **kw: Any
                    ) -> tuple[ControllerService, RefusingSwitches]:
    """A service (``kw``: its options) over the diamond's fake switches, every switch
    connected and reconciled, every intent installed."""
    service = ControllerService(diamond, startup_grace_s=0.0, port_stats_interval_s=0.0,
                                gc_reclaim_interval_s=0.0, barrier_timeout_s=barrier_timeout_s,
                                **kw)
    net = FakeNetwork(service.wiring)
    transport = RefusingSwitches(net)
    service.start(transport)
    wiring = service.wiring
    for dpid in sorted(wiring.dpid_node):
        assert service.switch_connected(dpid, dict.fromkeys(wiring.ports_of(dpid), True),
                                        dpid)
        service.reconcile(dpid, [], dpid)
    assert service.wait_idle(5)
    assert all(i.state == "installed" for i in service.intents())
    return service, transport


@pytest.fixture
def stalling(diamond: Topology) -> Iterator[tuple[ControllerService, RefusingSwitches]]:
    """A running service over the diamond's fake switches, every intent installed; the
    switches stall or refuse only when a test says so."""
    service, transport = running_service(diamond, 0.3)
    yield service, transport
    service.stop()


def test_a_stalled_switch_costs_one_timeout_and_is_reconciled_when_it_answers(
        stalling: tuple[ControllerService, StallingSwitches]) -> None:
    service, switches = stalling
    s2, s3 = 2, 3
    switches.stalled.add(s2)
    t0 = time.monotonic()
    # a route through s2 that needs new flows there (a tunnel the other way)
    gold = service.add_intent(IntentSpec("h2", "h1", 3.0, name="gold", priority=300),
                              timeout_s=5.0)
    took_s = time.monotonic() - t0
    # bounded: one barrier timeout (0.3 s), not one per phase
    assert took_s < 1.5, took_s
    assert gold.path == ("s4", "s2", "s1") and gold.state == "pending"
    assert not service.switch(s2).synced and service.switch(s3).synced
    sent_before = switches.sent[s2]
    # meanwhile changes elsewhere go out and are confirmed without waiting for s2
    t1 = time.monotonic()
    slow = service.add_intent(IntentSpec("h1", "h2", 15.0, name="slow", priority=300),
                              timeout_s=5.0)
    assert slow.state == "installed" and time.monotonic() - t1 < 0.3
    assert switches.sent[s2] == sent_before  # nothing more to the stalled switch
    assert service.intent(gold.id).state == "pending"
    # s2 is read again and again (bounded reads) while it does not answer
    deadline = time.monotonic() + 5
    while switches.reads.get(s2, 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert switches.reads.get(s2, 0) >= 2
    assert service.intent(gold.id).state == "pending"
    # it answers: read, reconciled, and the intent installed, without an operator
    switches.answer(s2)
    deadline = time.monotonic() + 5
    while service.intent(gold.id).state != "installed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.intent(gold.id).state == "installed"
    assert service.switch(s2).synced
    assert service.wait_idle(5)
    kinds = [e["kind"] for e in service.events()]
    assert "switch_unconfirmed" in kinds and "reconciled" in kinds
    # and the network holds the plan: the controller's view of s2 is what s2 holds
    held = sorted(flow_entries(switches.net, s2))
    assert held == service.plan_flows(s2)[1]
    # later changes reach s2 again
    before = switches.sent[s2]
    service.remove_intent(gold.id, timeout_s=5.0)
    assert switches.sent[s2] > before


def test_a_switch_that_refuses_a_flowmod_is_read_again_until_it_takes_the_change(
        stalling: tuple[ControllerService, RefusingSwitches], diamond: Topology) -> None:
    service, switches = stalling
    s2 = 2
    switches.refusing.add(s2)
    t0 = time.monotonic()
    gold = service.add_intent(IntentSpec("h2", "h1", 3.0, name="gold", priority=300),
                              timeout_s=5.0)
    # answered at once (no barrier timeout to wait out), and truthfully
    assert time.monotonic() - t0 < 0.3
    assert gold.path == ("s4", "s2", "s1") and gold.state == "pending"
    # its table was forgotten (it may be read and reconciled again at once: the first
    # retry is immediate, so its synced flag is not asserted here)
    assert any(e["kind"] == "switch_unconfirmed" and e.get("dpid") == s2
               for e in service.events())
    # read and reconciled again, refused each time, at doubling intervals (1 s, 2 s,
    # 4 s, ...): within 4 s at most 3 reads, where every second would make 4 or more
    deadline = time.monotonic() + 5
    while switches.reads.get(s2, 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert switches.reads.get(s2, 0) >= 2
    time.sleep(max(0.0, t0 + 4.0 - time.monotonic()))
    assert switches.reads[s2] <= 3, switches.reads[s2]
    assert service.intent(gold.id).state == "pending"
    # the table has room again: the next round installs it, without an operator
    switches.refusing.discard(s2)
    deadline = time.monotonic() + 20
    while service.intent(gold.id).state != "installed" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.intent(gold.id).state == "installed" and service.switch(s2).synced
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    assert switches.net.trace("h2", {"eth_type": 0x0800, "ipv4_src": h2.ip,
                                     "ipv4_dst": h1.ip}).delivered_to == "h1"


@pytest.fixture
def patient(diamond: Topology) -> Iterator[tuple[ControllerService, RefusingSwitches]]:
    """As :func:`stalling`, with a barrier bound long enough that a test can act while a
    switch has not answered and has not been given up on yet."""
    service, transport = running_service(diamond, 30.0)
    yield service, transport
    service.stop()


def _add_gold_while_s2_is_silent(service: ControllerService, switches: RefusingSwitches
                                 ) -> tuple[threading.Thread, list[Any]]:
    """Stall s2 and add (in a thread) an intent through it; return once s2 was sent its
    part (the thread, and the list the added intent lands in)."""
    s2 = 2
    switches.stalled.add(s2)
    added: list[Any] = []
    adder = threading.Thread(target=lambda: added.append(service.add_intent(
        IntentSpec("h2", "h1", 3.0, name="gold", priority=300), timeout_s=20.0)))
    adder.start()
    deadline = time.monotonic() + 5
    while not switches.held.get(s2) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert switches.held.get(s2), "the change through s2 was not sent"
    return adder, added


def test_a_slow_switch_does_not_hold_back_changes_to_the_others(
        patient: tuple[ControllerService, RefusingSwitches], diamond: Topology) -> None:
    """s2 has not answered a change (within the bound): a later change that does not need
    s2 is sent, answered and confirmed meanwhile; s2 shows as behind; when s2 answers, its
    change is confirmed and its table is the plan, with no stall and no read."""
    service, switches = patient
    s2 = 2
    adder, added = _add_gold_while_s2_is_silent(service, switches)
    # a change elsewhere: sent, answered and confirmed while s2's barrier is outstanding
    # (the old sender waited for s2 first: up to the 30 s bound)
    slow = service.add_intent(IntentSpec("h1", "h2", 15.0, name="slow", priority=300),
                              timeout_s=10.0)
    assert slow.path == ("s1", "s3", "s4") and slow.state == "installed"
    assert adder.is_alive() and switches.held.get(s2)
    view = service.switch(s2)
    assert view.connected and not view.synced
    assert view.pending_changes >= 1 and view.behind_s is not None and view.behind_s >= 0
    assert service.switch(3).pending_changes == 0 and service.switch(3).synced
    # s2 answers: its change is confirmed, without a timeout, a stall or a read
    switches.answer(s2)
    adder.join(10)
    assert not adder.is_alive() and added[0].state == "installed"
    assert service.wait_idle(5)
    assert "switch_unconfirmed" not in [e["kind"] for e in service.events()]
    assert switches.reads.get(s2, 0) == 0
    assert sorted(flow_entries(switches.net, s2)) == service.plan_flows(s2)[1]
    view = service.switch(s2)
    assert view.synced and view.pending_changes == 0 and view.behind_s is None
    h1, h2 = diamond.host("h1"), diamond.host("h2")
    assert switches.net.trace("h2", {"eth_type": 0x0800, "ipv4_src": h2.ip,
                                     "ipv4_dst": h1.ip}).delivered_to == "h1"


def test_a_change_confirmed_ahead_of_an_earlier_one_holds_back_intents_through_its_switches(
        patient: tuple[ControllerService, RefusingSwitches]) -> None:
    """An intent whose path crosses a switch an earlier Change in flight is not done with is
    not ``installed`` by a later Change's confirmation; it is when the earlier one ends."""
    service, switches = patient
    adder, results = _add_gold_while_s2_is_silent(service, switches)
    gold = next(i for i in service.intents() if i.name == "gold")
    assert gold.path == ("s4", "s2", "s1")
    # a later change (an intent elsewhere) lists every pending intent, gold too
    service.add_intent(IntentSpec("h1", "h2", 15.0, name="slow", priority=300), timeout_s=10.0)
    assert service.intent(gold.id).state == "pending"
    switches.answer(2)
    adder.join(10)
    assert results and results[0].state == "installed"


class _LateBarrier:
    """Answered ``delay_s`` after it was sent."""

    def __init__(self, delay_s: float) -> None:
        self.answered = threading.Event()
        timer = threading.Timer(delay_s, self.answered.set)
        timer.daemon = True
        timer.start()

    def wait(self, timeout: float | None = None) -> bool:
        return self.answered.wait(timeout)


def test_a_switch_measured_slow_is_waited_for_and_one_that_ran_out_waits_twice_as_long(
        stalling: tuple[ControllerService, RefusingSwitches]) -> None:
    """The barrier wait follows the switch's measured round trips (controller/network/rtt.py):
    a switch known to answer in about a second is not given up on at the 0.3 s floor, and
    after a wait runs out the next one is doubled."""
    service, switches = stalling
    s2 = 2
    assert service.sender is not None
    trips = service.sender.round_trips
    assert trips.wait_s(s2) == pytest.approx(0.3)  # answered at once so far: the floor
    trips.sample(s2, 1.0)  # as a read or a barrier of a loaded switch measures it
    waited = trips.wait_s(s2)
    assert waited > 0.9
    original = switches.send

    def late(handle: Any, msgs: Any) -> Any:
        if int(handle) == s2:
            switches.net.apply(s2, list(msgs))  # applied, answered 0.6 s later
            return _LateBarrier(0.6)
        return original(handle, msgs)

    switches.send = late  # type: ignore[method-assign]
    gold = service.add_intent(IntentSpec("h2", "h1", 3.0, name="gold", priority=300),
                              timeout_s=5.0)
    assert gold.path == ("s4", "s2", "s1") and gold.state == "installed"
    assert service.switch(s2).synced
    assert not [e for e in service.events() if e["kind"] == "switch_unconfirmed"]
    # s2 stops answering: its wait runs out once, and the next is twice as long
    switches.send = original  # type: ignore[method-assign]
    before = trips.wait_s(s2)
    switches.stalled.add(s2)
    service.remove_intent(gold.id, timeout_s=10.0)
    assert any(e["kind"] == "switch_unconfirmed" and e.get("dpid") == s2
               for e in service.events())
    assert trips.wait_s(s2) >= min(2 * before, trips.cap_s) - 1e-9
    # it answers again: read (a sample), the backoff ends
    switches.answer(s2)
    deadline = time.monotonic() + 10
    while not service.switch(s2).synced and time.monotonic() < deadline:
        time.sleep(0.05)
    assert service.switch(s2).synced
    assert trips.wait_s(s2) < 2 * before
