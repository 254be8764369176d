"""A batch of new intents on the national backbone, applied phase by phase to fake switches:
the traffic of every intent is delivered at every step (never sent to a label a switch on
its way lacks), and the batch's phases are exactly the plan's difference, split as
make-before-break requires. The fake switches (``fakeoftable``) read the OpenFlow messages,
not the controller's flow model; the split is checked against the flows themselves."""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from fakeoftable import FakeNetwork, apply_and_confirm, ipv4, running
from waiting import wait_until

from controller.network.change import Change
from controller.network.core import ControllerCore
from controller.network.flows import (
    OWNER_ID_BITS,
    OWNER_ID_MASK,
    OWNER_INTENT,
    OWNER_TUNNEL,
    diff_entries,
)
from controller.network.intents import intent_match, intent_match_items
from controller.network.service import ControllerService
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Match, Topology


@pytest.fixture(scope="module")
def national() -> Topology:
    return load_topology(topology_file("national"))


def random_specs(topology: Topology, rng: random.Random, n: int, port0: int,
                 used: set[tuple[str, str]]) -> list[IntentSpec]:
    """``n`` intents between random hosts with bounds the network meets (the benchmarks'
    workload): a pair's first intent (not in ``used`` yet) takes all its traffic, the next
    ones a TCP port each, at a higher priority."""
    graph, _ = topology.to_graph()
    hosts = list(topology.hosts)
    out = []
    port = itertools.count(port0)
    while len(out) < n:
        a, b = rng.sample(hosts, 2)
        if a.node == b.node:
            continue
        best = graph.shortest_path(a.node, b.node)
        assert best is not None
        bound = round(best.latency_ms * rng.uniform(1.3, 2.5) + 1.0, 2)
        match, priority = None, 100
        if (a.name, b.name) in used:
            match, priority = Match(ip_proto=6, dst_port=next(port)), 200
        used.add((a.name, b.name))
        out.append(IntentSpec(src=a.name, dst=b.name, max_latency_ms=bound, match=match,
                              priority=priority))
    return out


def traffic(topology: Topology, spec: IntentSpec) -> dict[str, object]:
    fields = ipv4(topology.host(spec.src).ip, topology.host(spec.dst).ip)
    if spec.match is not None:
        fields.update(ip_proto=6, tcp_dst=spec.match.dst_port)
    return fields


def assert_delivered(topology: Topology, net: FakeNetwork, specs: list[IntentSpec]) -> None:
    for spec in specs:
        tr = net.trace(spec.src, traffic(topology, spec))
        assert tr.delivered_to == spec.dst, (spec, tr)
        assert not tr.dropped and not tr.to_controller and not tr.loop, (spec, tr)


def kind(cookie: int) -> int:
    return cookie >> OWNER_ID_BITS


def test_a_batch_delivers_at_every_step_and_its_phases_are_the_plans_difference(
        national: Topology) -> None:
    core, net = running(national, startup_grace_s=0.0)
    rng = random.Random(7)
    used = {(i.src, i.dst) for i in national.intents}  # the file's own intents are there
    now = 2.0
    # intents already there: the batch finds some of its tunnels made, others not
    apply_and_confirm(core, net, core.add_intents(
        random_specs(national, rng, 60, 20000, used), now)[1], now)
    for k in range(3):
        specs = random_specs(national, rng, 300, 30000 + 1000 * k, used)
        before = core.installed_plan()
        added, change = core.add_intents(specs, now)
        after = core.wanted_plan()
        # the batch's flows are the plan's difference, every one in exactly one phase
        for dpid in set(before.flows) | set(after.flows):
            d = diff_entries(before.entries(dpid), after.entries(dpid))
            assert sorted(change.adds.get(dpid, ())) == list(d.adds)
            assert sorted(change.deletes.get(dpid, ())) == list(d.deletes)
        made = {e.cookie & OWNER_ID_MASK for es in change.adds.values() for e in es
                if kind(e.cookie) == OWNER_TUNNEL}
        head_target = core.router.head_target
        segments = {label for label in made if head_target(label) is None}
        late = {(kind(m.cookie), m.cookie & OWNER_ID_MASK) for msgs in change.phase1.values()
                for m in msgs[:-1]}
        first_segment = core.router.first_segment
        riders = {(OWNER_INTENT, i.id) for i in added
                  if i.mpls_label is not None and first_segment(i.mpls_label) in segments}
        heads = {(OWNER_TUNNEL, label) for label in made if head_target(label) in segments}
        # phase 1 holds the ingress flows that enter a tunnel this change makes (by a head
        # or by its label) and the heads pointing at such a tunnel, and only them
        assert riders and late == riders | heads
        assert not change.phase2
        untouched = copy.deepcopy(net, {id(net.wiring): net.wiring})
        # the worst order within phase 0: the ingress switches apply it before the others;
        # no packet may carry a label a switch on its way does not know yet
        ingress = {core.wiring.node_dpid[i.path[0]] for i in added if i.path}
        net.apply_phase({d: m for d, m in change.phase0.items() if d in ingress})
        assert_delivered(national, net, specs)
        net.apply_phase({d: m for d, m in change.phase0.items() if d not in ingress})
        assert_delivered(national, net, specs)
        # a switch's phase 1 needs only its own phase-0 switches (phase1_after): with
        # nothing else of phase 0 applied (a fresh copy of the network before the batch),
        # its ingress flows deliver their traffic
        assert set(change.phase1_after) == set(change.phase1)
        for dpid, msgs in change.phase1.items():
            alone = copy.deepcopy(untouched, {id(net.wiring): net.wiring})
            alone.apply_phase({d: m for d, m in change.phase0.items()
                               if d == dpid or d in change.phase1_after[dpid]})
            alone.apply(dpid, msgs)
            riders = [spec for intent, spec in zip(added, specs, strict=True)
                      if intent.path and core.wiring.node_dpid[intent.path[0]] == dpid]
            assert riders
            assert_delivered(national, alone, riders)
        net.apply_phase(change.phase1)
        assert_delivered(national, net, specs)
        core.confirm(change, now)
        for intent, spec in zip(added, specs, strict=True):
            assert intent.state == "installed"
            tr = net.trace(spec.src, traffic(national, spec))
            assert [core.wiring.dpid_node[d] for d in dict.fromkeys(tr.dpids())] == \
                list(intent.path)


def test_match_items_are_the_match_sorted_by_field_name() -> None:
    """``intent_match_items`` builds the items in order without a sort: the same as the
    match dict's items sorted, for every combination of fields."""
    values = itertools.product((None, 1, 6, 17), (None, 80), (None, 443), (None, 46))
    for proto, src_port, dst_port, dscp in values:
        for match in (None, Match(ip_proto=proto, src_port=src_port, dst_port=dst_port,
                                  dscp=dscp)):
            spec = IntentSpec(src="a", dst="b", max_latency_ms=5.0, match=match)
            assert intent_match_items(spec, "10.0.0.1", "10.0.0.2") == \
                tuple(sorted(intent_match(spec, "10.0.0.1", "10.0.0.2").items()))


def test_a_batch_plans_as_a_full_routing_does(national: Topology) -> None:
    """The batch (its routes by the shortcut, its flows through the one-loop refresh) ends
    in the plan a core routing every intent in full computes from scratch."""
    rng = random.Random(11)
    specs = random_specs(national, rng, 400, 40000, {(i.src, i.dst) for i in national.intents})
    core = ControllerCore(national, now=0.0, startup_grace_s=0.0)
    core.add_intents(specs[:100], 1.0)
    core.add_intents(specs[100:], 1.0)
    fresh = ControllerCore(national, now=0.0, startup_grace_s=0.0)
    fresh.router.table.incremental = False
    fresh.add_intents(specs, 1.0)
    assert core.wanted_plan() == fresh.wanted_plan()
    assert [(i.path, i.mpls_labels) for i in core.intents()] == \
        [(i.path, i.mpls_labels) for i in fresh.intents()]


# --- the sender: a switch's phase 1 goes once its own phase-0 switches answered ---------------


class _Answer:
    """A barrier the test answers (``set``); tells the sender at once (``notify``)."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def notify(self, callback: Callable[[], None]) -> None:
        with self._lock:
            if not self._done.is_set():
                self._callbacks.append(callback)
                return
        callback()

    def set(self) -> None:
        with self._lock:
            self._done.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class SteppedSwitches:
    """The service's Transport over a :class:`FakeNetwork`. While ``auto`` every switch
    applies what it is sent and answers at once; otherwise what it is sent waits until the
    test calls :meth:`step` for it (apply, then answer), in whatever order the test picks."""

    def __init__(self, net: FakeNetwork) -> None:
        self.net = net
        self.auto = True
        self._lock = threading.Lock()
        self.pending: dict[int, list[tuple[Sequence[Any], _Answer]]] = {}
        self.applied: list[tuple[int, Sequence[Any]]] = []
        """(dpid, the message list as sent) in the order the switches applied them"""

    def send(self, handle: Any, msgs: Sequence[Any]) -> _Answer:
        dpid, answer = int(handle), _Answer()
        with self._lock:
            if not self.auto:
                self.pending.setdefault(dpid, []).append((msgs, answer))
                return answer
        self.net.apply(dpid, list(msgs))
        answer.set()
        return answer

    def alive(self, handle: Any) -> bool:
        return True

    def request(self, handle: Any, msg: Any) -> None:
        return None

    def waiting(self) -> list[int]:
        """dpids sent something they have not applied yet."""
        with self._lock:
            return sorted(d for d, q in self.pending.items() if q)

    def step(self, dpid: int) -> Sequence[Any]:
        """Switch ``dpid`` applies the oldest message list it was sent and answers it."""
        with self._lock:
            msgs, answer = self.pending[dpid].pop(0)
        self.net.apply(dpid, list(msgs))
        self.applied.append((dpid, msgs))
        answer.set()
        return msgs


@pytest.fixture
def stepped(national: Topology) -> Iterator[tuple[ControllerService, SteppedSwitches,
                                                  list[Change]]]:
    """A running service over national's fake switches, 60 random intents installed; then
    the switches apply what they are sent only when the test steps them. The list collects
    every Change submitted from then on."""
    service = ControllerService(national, startup_grace_s=0.0, port_stats_interval_s=0.0,
                                gc_reclaim_interval_s=0.0, barrier_timeout_s=30.0)
    switches = SteppedSwitches(FakeNetwork(service.wiring))
    service.start(switches)
    wiring = service.wiring
    for dpid in sorted(wiring.dpid_node):
        service.switch_connected(dpid, dict.fromkeys(wiring.ports_of(dpid), True), dpid)
        service.reconcile(dpid, [], dpid)
    used = {(i.src, i.dst) for i in national.intents}
    service.add_intents(random_specs(national, random.Random(5), 60, 20000, used),
                        timeout_s=10.0)
    assert service.wait_idle(10)
    changes: list[Change] = []
    submit = service.submit

    def recording(change: Change | None, *args: Any, **kw: Any) -> Any:
        if change is not None:
            changes.append(change)
        return submit(change, *args, **kw)

    service.submit = recording  # type: ignore[method-assign]
    switches.auto = False
    try:
        yield service, switches, changes
    finally:
        switches.auto = True
        for dpid in switches.waiting():  # let a test that failed midway end its waits
            while switches.pending.get(dpid):
                switches.step(dpid)
        service.stop()


def _batch_in_thread(service: ControllerService, specs: list[IntentSpec]
                     ) -> tuple[threading.Thread, list[Any]]:
    added: list[Any] = []
    adder = threading.Thread(target=lambda: added.extend(service.add_intents(
        specs, timeout_s=30.0)), daemon=True)
    adder.start()
    return adder, added


def test_the_sender_sends_phase_1_per_switch_and_traffic_is_delivered_at_every_step(
        stepped: tuple[ControllerService, SteppedSwitches, list[Change]],
        national: Topology) -> None:
    """A batch through the real sender, the switches applying one at a time in the worst
    order (an ingress switch as soon as it has something, the others at random): the
    traffic of every intent is delivered after every switch's step, and a switch applies
    its phase 1 only after the phase-0 switches it waits for (whether it goes before the
    last of phase 0 here depends on the sender thread's pace; the next test holds that)."""
    service, switches, changes = stepped
    rng = random.Random(3)
    used = {(i.spec.src, i.spec.dst) for i in service.intents()}
    specs = random_specs(national, rng, 300, 30000, used)
    adder, added = _batch_in_thread(service, specs)
    node_dpid = service.wiring.node_dpid
    ingress = {node_dpid[national.host(s.src).node] for s in specs}
    deadline = time.monotonic() + 60
    for _ in range(1000):
        waiting = wait_until(lambda: switches.waiting() or not adder.is_alive(), 10,
                             "a switch sent something, or the batch done", poll_s=0.001)
        if not adder.is_alive() and not switches.waiting():
            break
        assert isinstance(waiting, list) and time.monotonic() < deadline
        first = [d for d in waiting if d in ingress]
        switches.step(rng.choice(first or waiting))
        assert_delivered(national, switches.net, specs)
    adder.join(10)
    assert not adder.is_alive() and all(i.state == "installed" for i in added)
    change = max(changes, key=lambda c: c.message_count())
    assert change.phase1 and not change.phase2
    order = [(d, "phase1" if msgs is change.phase1.get(d) else "phase0")
             for d, msgs in switches.applied
             if msgs is change.phase1.get(d) or msgs is change.phase0.get(d)]
    assert sorted(d for d, name in order if name == "phase1") == sorted(change.phase1)
    for k, (dpid, name) in enumerate(order):
        if name == "phase1":  # only after every phase-0 switch it waits for
            done = {d for d, n in order[:k] if n == "phase0"}
            assert change.phase1_after[dpid] <= done


def test_a_slow_phase_0_switch_holds_back_only_the_phase_1_switches_that_need_it(
        stepped: tuple[ControllerService, SteppedSwitches, list[Change]],
        national: Topology) -> None:
    """One phase-0 switch does not answer: the phase-1 switches whose traffic crosses it
    wait for it, the others are sent their phase 1 and apply it meanwhile; once it answers,
    the batch completes and every intent is installed."""
    service, switches, changes = stepped
    used = {(i.spec.src, i.spec.dst) for i in service.intents()}
    specs = random_specs(national, random.Random(3), 300, 30000, used)
    adder, _ = _batch_in_thread(service, specs)
    wait_until(lambda: changes and len(switches.waiting()) == len(changes[-1].phase0), 10,
               "every phase-0 switch sent its part", poll_s=0.001)
    change = changes[-1]
    after = change.phase1_after
    # the slow switch: one that some phase-1 switches wait for and others do not
    slow = next(d for d in sorted(change.phase0)
                if any(d in a for a in after.values())
                and any(d not in a and d != p for p, a in after.items()))
    held = {p for p, a in after.items() if slow in a}
    free = set(change.phase1) - held - {slow}
    assert held and free
    stepped_phase1: set[int] = set()
    for _ in range(1000):
        ready = [d for d in switches.waiting() if d != slow]
        if not ready:
            if free <= stepped_phase1:
                break
            wait_until(lambda: [d for d in switches.waiting() if d != slow], 10,
                       "the free phase-1 switches sent their part", poll_s=0.001)
            continue
        for dpid in ready:
            if switches.step(dpid) is change.phase1.get(dpid):
                stepped_phase1.add(dpid)
        assert_delivered(national, switches.net, specs)
    assert stepped_phase1 == free  # sent and applied while the slow switch is silent
    assert adder.is_alive() and held.isdisjoint(switches.waiting())
    assert service.switch(slow).pending_changes >= 1
    assert all(service.intent(i.id).state == "pending" for i in service.intents()
               if i.spec in specs)
    switches.step(slow)
    assert_delivered(national, switches.net, specs)
    for _ in range(100):
        waiting = wait_until(lambda: switches.waiting() or not adder.is_alive(), 10,
                             "the held phase-1 switches sent their part", poll_s=0.001)
        if waiting is True:
            break
        for dpid in waiting:
            switches.step(dpid)
        assert_delivered(national, switches.net, specs)
    adder.join(10)
    assert not adder.is_alive()
    assert {d for d, msgs in switches.applied if msgs is change.phase1.get(d)} == \
        set(change.phase1)
    assert all(service.intent(i.id).state == "installed" for i in service.intents()
               if i.spec in specs)
