"""The core's shortcuts against the long way: a core that routes only the intents added since
the last routing (``IntentTable.incremental``, the default) returns byte-identical Changes,
and keeps identical intents and plans, as a core that routes every intent on every change,
on random networks and operations and on the national backbone with batches of intents."""

from __future__ import annotations

import random
from typing import Any

from fakeoftable import FakeNetwork, bring_up
from hypothesis import given
from oracles import examples
from test_core_incremental import NOW, run_op, scenarios
from test_openflow_wire import DP

from controller.network.change import Change
from controller.network.core import ControllerCore
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import IntentSpec, Match, Topology


def recording(core: ControllerCore) -> list[Change]:
    """Every Change ``core`` returns from now on, in order."""
    out: list[Change] = []
    replan = core._replan

    def record(*args: Any, **kwargs: Any) -> Change:
        change = replan(*args, **kwargs)
        out.append(change)
        return change

    core._replan = record  # type: ignore[method-assign]
    return out


def wire(msg: Any) -> bytes:
    """A message as the switch gets it."""
    msg.datapath = DP
    msg.xid = 0
    msg.serialize()
    return bytes(msg.buf)


def messages(change: Change) -> list[tuple[int, int, list[bytes]]]:
    return [(k, dpid, [wire(m) for m in msgs])
            for k, phase in enumerate((change.phase0, change.phase1, change.phase2))
            for dpid, msgs in sorted(phase.items())]


def intents_view(core: ControllerCore) -> list[tuple[Any, ...]]:
    return [(i.id, i.state, i.path, i.links, i.reason, i.conflict_with, i.mpls_labels,
             i.latency_ms, i.cost, [(h.old_path, h.new_path, h.cause) for h in i.history])
            for i in core.intents()]


def same(long: ControllerCore, short: ControllerCore, changes_long: list[Change],
         changes_short: list[Change]) -> None:
    assert [messages(c) for c in changes_short] == [messages(c) for c in changes_long]
    assert [c.intents for c in changes_short] == [c.intents for c in changes_long]
    assert intents_view(short) == intents_view(long)
    assert short.wanted_plan() == long.wanted_plan()
    assert short.router.table.backup_mbps == long.router.table.backup_mbps
    changes_long.clear()
    changes_short.clear()


def pair(topology: Topology, **kw: Any) -> tuple[ControllerCore, ControllerCore]:
    long = ControllerCore(topology, **kw)
    long.router.table.incremental = False
    return long, ControllerCore(topology, **kw)


@given(scenarios())
@examples(120)
def test_routing_the_added_intents_alone_equals_routing_all(
        case: tuple[Topology, list[tuple[Any, ...]]]) -> None:
    t, ops = case
    long, short = pair(t, load_intents=False)
    nets = FakeNetwork(long.wiring), FakeNetwork(short.wiring)
    bring_up(long, nets[0])
    bring_up(short, nets[1])
    rec_long, rec_short = recording(long), recording(short)
    now = NOW
    for op in ops:
        run_op(long, nets[0], t, op, now)
        run_op(short, nets[1], t, op, now)
        same(long, short, rec_long, rec_short)
        now += 1.0


def test_national_batches_removals_and_cuts_equal_routing_all() -> None:
    """The national backbone with its file intents (some reserve bandwidth), batches of
    random city/cluster intents (some for the same traffic, some with explicit ids below
    the others'), removals, a cut and its return."""
    t = load_topology(topology_file("national"))
    long, short = pair(t, now=0.0, startup_grace_s=0.0)
    nets = FakeNetwork(long.wiring), FakeNetwork(short.wiring)
    bring_up(long, nets[0])
    bring_up(short, nets[1])
    rec_long, rec_short = recording(long), recording(short)
    routed: list[tuple[int, int]] = []  # (intents routed, intents held) of the short core
    route = short.router.table._route

    def counting(order: list[Any], *args: Any) -> set[int]:
        routed.append((len(order), len(short.router.intents)))
        return route(order, *args)

    short.router.table._route = counting  # type: ignore[method-assign]
    rng = random.Random(7)
    hosts = [h.name for h in t.hosts]

    def spec(police: bool = True) -> IntentSpec:
        a, b = rng.sample(hosts, 2)
        match = Match(ip_proto=6, dst_port=rng.randrange(5000, 5004)) \
            if rng.random() < 0.5 else None
        bw = 100.0 if rng.random() < 0.05 else 0.0
        return IntentSpec(a, b, max_latency_ms=rng.uniform(5.0, 60.0), match=match,
                          priority=200 if match else 100, min_bandwidth_mbps=bw,
                          police=police and bw > 0 and rng.random() < 0.5)

    now = 1.0
    for round_ in range(6):
        # ids above the meter ids from round 3 on: those intents are not policed
        specs = [spec(police=round_ < 3) for _ in range(rng.choice((1, 40, 300)))]
        ids = None
        if round_ == 3:  # ids below the others': a newcomer may hold older intents' traffic
            ids = [100_000 - k for k in range(len(specs))]
            for core in (long, short):
                core.add_intents(specs, now, ids)
        else:
            for core in (long, short):
                core.add_intents(specs, now)
        same(long, short, rec_long, rec_short)
        gone = rng.sample(sorted(i.id for i in long.intents()), 20)
        for core in (long, short):
            core.apply_intents([], gone, now)
        same(long, short, rec_long, rec_short)
        now += 1.0
    lk = t.links[5]
    pa, _ = long.wiring.link_ports[5]
    for up in (False, True):
        for core in (long, short):
            core.port_status(core.wiring.node_dpid[lk.a], pa, up, now)
        same(long, short, rec_long, rec_short)
        specs = [spec(police=False) for _ in range(30)]
        for core in (long, short):
            core.add_intents(specs, now)
        same(long, short, rec_long, rec_short)
    # the shortcut was taken (batches, removals) and the long way too (a cut, reservations)
    assert any(n < held for n, held in routed)
    assert any(n == held for n, held in routed)
    assert short.router.table.policed and short.meter_plan() == long.meter_plan()
