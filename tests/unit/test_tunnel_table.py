"""The tunnel table in pathcore against the pure-Python model it replaced
(``tunnels_reference.py``): the same updates, in the same order, must give the same labels,
the same flows in the plan, the same ingress answers and the same riders, step by step."""

from __future__ import annotations

import zlib
from itertools import count
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tunnels_reference import ReferenceTunnels

from controller.network.flows import MPLS_LABEL_MIN, MPLS_LABEL_SPACE, OWNER_TUNNEL, make_cookie
from controller.network.plan import OwnerPlan
from controller.network.tunnels import Tunnels

NODES = ["a", "b", "s'1", 'q"2', "ß3", "back\\slash", "tab\there"]
"""switch names, some whose repr is not plain (labels hash the repr of their key)"""
HOSTS = {f"h{i}": (NODES[i % len(NODES)], 1 + i) for i in range(6)}
"""host -> (switch, port)"""


def hop(node: str, link_id: int) -> tuple[str, int]:
    """A hop action that depends on the switch and the link, as the controller's does."""
    return ("output", 2 + (link_id * 7 + len(node)) % 5)


def pair() -> tuple[Any, Any, dict[str, Any]]:
    """The pathcore table and the reference model, each over its own plan."""
    state = SimpleNamespace(
        hosts={h: SimpleNamespace(port_no=p) for h, (_, p) in HOSTS.items()},
        wiring=SimpleNamespace(node_dpid={n: i + 1 for i, n in enumerate(NODES)}))
    return (Tunnels(state, OwnerPlan(), hop),  # type: ignore[arg-type]
            ReferenceTunnels(state, OwnerPlan(), hop),  # type: ignore[arg-type]
            state.hosts)


def intent(iid: int, src: str, dst: str, path: tuple[str, ...] | None,
           links: tuple[int, ...] | None, protection: bool = False) -> SimpleNamespace:
    return SimpleNamespace(id=iid, path=path, links=links, mpls_label=None, mpls_labels=(),
                           spec=SimpleNamespace(src=src, dst=dst, protection=protection))


def labels_of(plan: OwnerPlan) -> set[int]:
    return {e.cookie & ((1 << 56) - 1) for es in plan.snapshot().flows.values() for e in es
            if e.cookie >> 56 == OWNER_TUNNEL}


def same(native: Any, ref: Any, mine: dict[int, Any], theirs: dict[int, Any]) -> None:
    """Everything either table tells the controller is the same."""
    assert native.plan.snapshot() == ref.plan.snapshot()
    assert native.plan.take_delta() == ref.plan.take_delta()
    for iid in sorted(mine):
        assert native.ingress(mine[iid]) == ref.ingress(theirs[iid]), iid
        assert (mine[iid].mpls_label, mine[iid].mpls_labels) == \
            (theirs[iid].mpls_label, theirs[iid].mpls_labels), iid
    for label in labels_of(ref.plan) | {x.mpls_label for x in theirs.values()} - {None}:
        assert native.head_target(label) == ref.head_target(label), label
        assert native.first_segment(label) == ref.first_segment(label), label
        assert native.head_riders(label) == ref.head_riders(label), label
    assert native.riders() == ref.riders()




ROUTES = [["a", "b", "s'1"], ["a", 'q"2', "s'1"], ["a", "b", 'q"2', "s'1"], ["b", "s'1"],
          ["b", "a", "s'1"], ["a", "ß3", "back\\slash", "tab\there"], ["b", "ß3", "tab\there"],
          ["a"]]
"""paths that start at two switches and share tails: intents share heads and segments,
and moving between them retargets heads"""


def link_ids(nodes: list[str], parallel: list[int]) -> tuple[int, ...]:
    """Directed link ids for a path: as pathcore's, an id names its two ends (and which of
    parallel links it is)."""
    return tuple(100 * p + 10 * NODES.index(u) + NODES.index(v)
                 for u, v, p in zip(nodes, nodes[1:], parallel, strict=False))


@st.composite
def route(draw: st.DrawFn) -> tuple[list[str], list[int]]:
    """A path (switches) and which of two parallel links each hop takes: mostly one of
    :data:`ROUTES` over the first links, else any."""
    if draw(st.integers(0, 3)):
        return draw(st.sampled_from(ROUTES)), [0] * 5 if draw(st.integers(0, 4)) else [1] * 5
    nodes = draw(st.lists(st.sampled_from(NODES), min_size=1, max_size=5, unique=True))
    return nodes, draw(st.lists(st.integers(0, 1), min_size=5, max_size=5))


op = st.one_of(
    st.tuples(st.just("route"), st.integers(1, 8), st.sampled_from(["h1", "h1", "h2", "h5"]),
              route(), st.booleans(), st.integers(0, 9)),
    st.tuples(st.just("remove"), st.integers(1, 8)),
    st.tuples(st.just("drop_idle")))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["h1", "h2"]), route()), min_size=8, max_size=8),
       st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=12))
def test_the_native_table_does_what_the_reference_does(
        first: list[tuple[str, tuple[list[str], list[int]]]],
        steps: list[list[tuple[Any, ...]]]) -> None:
    """``first``: intents 1-8 as one batch; then ``steps``, one update each."""
    native, ref, hosts = pair()
    mine: dict[int, Any] = {}
    theirs: dict[int, Any] = {}
    batch = [("route", iid, dst, r, False, 5) for iid, (dst, r) in enumerate(first, 1)]
    for step in [batch, *steps]:
        touched: set[int] = set()
        drop = False
        for o in step:
            if o[0] == "drop_idle":
                drop = True
            elif o[0] == "remove":
                mine.pop(o[1], None)
                theirs.pop(o[1], None)
                touched.add(o[1])
            else:
                _, iid, dst, (nodes, links), protection, how = o
                if how == 0:  # not routed
                    path, lks = None, None
                else:
                    path, lks = tuple(nodes), link_ids(nodes, links)
                src = "h5" if how == 1 else "h0"  # h5's record goes below: an unknown end
                for side in (mine, theirs):
                    side[iid] = intent(iid, src, dst, path, lks, protection and how == 2)
                touched.add(iid)
        if any(o[0] == "route" and o[5] == 1 for o in step):
            hosts.pop("h5", None)
        changed = sorted(touched & mine.keys())
        gone = sorted(touched - mine.keys())
        assert native.update([mine[i] for i in changed], gone) == \
            ref.update([theirs[i] for i in changed], gone)
        same(native, ref, mine, theirs)
        if drop:
            native.drop_idle()
            ref.drop_idle()
            same(native, ref, mine, theirs)
    # everything gone: nothing left in either
    for t, side in ((native, mine), (ref, theirs)):
        t.update([], sorted(side))
        t.drop_idle()
        assert not labels_of(t.plan)
    assert native.riders() == ref.riders() == {}


def _label(key: tuple[object, ...]) -> int:
    return MPLS_LABEL_MIN + zlib.crc32(repr(key).encode()) % MPLS_LABEL_SPACE


def test_labels_that_collide_move_on_to_the_next_free_one_as_the_reference_does() -> None:
    """Two segments whose keys hash to one label: the second made takes the next free label,
    in both tables (a restarted controller must pick the labels the switches hold)."""
    seen: dict[int, tuple[int, ...]] = {}
    for n in count(1):  # links tails until two one-hop segment keys at "b" collide
        tail = (n % 1000, n // 1000)
        label = _label(("b", tail, 7))
        if label in seen:
            first, second = seen[label], tail
            break
        seen[label] = tail
        assert n < 10_000_000, "no collision found"
    native, ref, hosts = pair()
    hosts["hx"] = SimpleNamespace(port_no=7)
    for t in (native, ref):
        t.update([intent(1, "h0", "hx", ("a", "b", "s'1"), (9,) + first),
                  intent(2, "h0", "hx", ("a", "b", "s'1"), (9,) + second)], [])
    assert native.plan.snapshot() == ref.plan.snapshot()
    taken = labels_of(native.plan)
    assert label in taken and label + 1 in taken
    assert native.plan.owner(make_cookie(OWNER_TUNNEL, label))
