"""Mastership assignment (controller.cluster.assign): balanced, sticky, deterministic;
checked against properties on hypothesis-generated clusters and against a brute-force
minimum of moves on small ones."""

from __future__ import annotations

import itertools
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cluster.assign import assign, quotas

MEMBERS = ["m1", "m2", "m3", "m4", "m5"]


@st.composite
def clusters(draw: st.DrawFn) -> tuple[list[int], list[str], dict[int, str]]:
    dpids = draw(st.lists(st.integers(1, 2**20), min_size=0, max_size=80, unique=True))
    live = draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=5, unique=True))
    anyone = st.sampled_from([*MEMBERS, "gone"])
    current = {d: draw(anyone) for d in dpids if draw(st.booleans())}
    return dpids, live, current


def test_52_switches_over_three_members_is_17_or_18_each() -> None:
    out = assign(range(1, 53), ["m1", "m2", "m3"], {})
    assert sorted(Counter(out.values()).values()) == [17, 17, 18]
    assert set(out) == set(range(1, 53))


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_every_switch_gets_a_live_member_and_shares_differ_by_at_most_one(
        c: tuple[list[int], list[str], dict[int, str]]) -> None:
    dpids, live, current = c
    out = assign(dpids, live, current)
    assert set(out) == set(dpids)
    assert set(out.values()) <= set(live)
    counts = Counter(out.values())
    loads = [counts.get(m, 0) for m in live]
    assert max(loads) - min(loads) <= (1 if dpids else 0)


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_a_balanced_assignment_is_kept_and_the_answer_is_deterministic(
        c: tuple[list[int], list[str], dict[int, str]]) -> None:
    dpids, live, current = c
    out = assign(dpids, live, current)
    assert assign(dpids, list(reversed(live)), dict(reversed(list(current.items())))) == out
    assert assign(dpids, live, out) == out  # a fixed point: nothing moves once balanced


@settings(max_examples=300, deadline=None)
@given(clusters())
def test_a_switch_moves_only_when_its_master_is_gone_or_over_its_share(
        c: tuple[list[int], list[str], dict[int, str]]) -> None:
    dpids, live, current = c
    out = assign(dpids, live, current)
    held = Counter(m for d, m in current.items() if m in live and d in dpids)
    quota = quotas(len(dpids), live, held)
    for d in dpids:
        owner = current.get(d)
        if owner in quota and held[owner] <= quota[owner]:
            assert out[d] == owner, (d, owner)


def test_a_member_leaving_moves_only_its_own_switches() -> None:
    before = assign(range(1, 53), ["m1", "m2", "m3"], {})
    after = assign(range(1, 53), ["m1", "m3"], before)
    moved = {d for d in before if before[d] != after[d]}
    assert moved == {d for d, m in before.items() if m == "m2"}
    assert sorted(Counter(after.values()).values()) == [26, 26]


def test_a_member_joining_takes_just_its_share() -> None:
    before = assign(range(1, 53), ["m1", "m2"], {})
    after = assign(range(1, 53), ["m1", "m2", "m3"], before)
    moved = {d for d in before if before[d] != after[d]}
    assert all(after[d] == "m3" for d in moved)
    assert len(moved) == Counter(after.values())["m3"] in (17, 18)


def _min_moves(dpids: list[int], live: list[str], current: dict[int, str]) -> int:
    """Brute force: the fewest switches any balanced assignment over ``live`` must move."""
    n, m = len(dpids), len(live)
    base, extra = divmod(n, m)
    best = n
    for choice in itertools.product(live, repeat=n):
        counts = Counter(choice)
        loads = sorted(counts.get(x, 0) for x in live)
        if loads != sorted([base] * (m - extra) + [base + 1] * extra):
            continue
        best = min(best, sum(1 for d, x in zip(dpids, choice, strict=True)
                             if current.get(d) != x))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 50), min_size=1, max_size=6, unique=True),
       st.lists(st.sampled_from(MEMBERS[:3]), min_size=1, max_size=3, unique=True),
       st.data())
def test_no_balanced_assignment_moves_fewer_switches(dpids: list[int], live: list[str],
                                                      data: st.DataObject) -> None:
    current = {d: data.draw(st.sampled_from([*MEMBERS[:3], "gone"])) for d in dpids}
    out = assign(dpids, live, current)
    moves = sum(1 for d in dpids if current.get(d) != out[d])
    assert moves == _min_moves(dpids, live, current)
