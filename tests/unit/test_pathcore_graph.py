"""pathcore.Graph construction, updates, errors and the type stub.

Oracle: the API contract itself (docs/notes: unknown node -> KeyError; negative, NaN or
infinite values -> ValueError; k < 1 -> ValueError; duplicate node -> ValueError; a failed call
changes nothing) and the generated spec a graph was built from; ``mypy.stubtest`` for the stub.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from oracles import (
    Built,
    GraphSpec,
    build,
    examples,
    graph_specs,
    node_name,
    read_links,
)

import pathcore

REPO = Path(__file__).resolve().parents[2]
BAD_VALUES = [-1.0, -1e-12, math.nan, math.inf, -math.inf]


def _snapshot(g: Any) -> tuple[Any, ...]:
    return (g.node_count, g.link_count, sorted(g.nodes()), read_links(g))


def _small() -> Any:
    g = pathcore.Graph()
    for name in ("a", "b", "c"):
        g.add_node(name)
    g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=100.0, cost=1.0, bidirectional=True)
    g.add_link("b", "c", latency_ms=2.0, bandwidth_mbps=100.0, cost=1.0, bidirectional=False)
    return g


def test_module_exports_contract() -> None:
    assert hasattr(pathcore, "Graph")
    g = pathcore.Graph()
    for name in (
        "add_node",
        "add_link",
        "set_link_up",
        "set_residual_bandwidth",
        "nodes",
        "links",
        "shortest_path",
        "constrained_path",
        "k_shortest_paths",
        "disjoint_paths",
        "within_latency",
        "latency_matrix",
        "batch_constrained_paths",
    ):
        assert callable(getattr(g, name)), name
    assert g.node_count == 0 and g.link_count == 0


@given(graph_specs())
@examples(120)
def test_links_reflect_what_was_added(spec: GraphSpec) -> None:
    built: Built = build(spec)
    g, model = built.graph, built.model
    assert g.node_count == spec.n_nodes
    assert sorted(g.nodes()) == sorted(spec.names)
    n_directed = sum(2 if ls.bidirectional else 1 for ls in spec.links)
    assert len(model.links) == n_directed, "links() must list each direction once"
    assert g.link_count == n_directed, "link_count counts directed links (documented)"
    for ls, lid, added in zip(spec.links, built.forward_ids, built.new_ids, strict=True):
        assert lid in added, "add_link must return the id of a link it created"
        assert len(added) == (2 if ls.bidirectional else 1)
        fwd = model.links[lid]
        assert (fwd.u, fwd.v) == (node_name(ls.u), node_name(ls.v))
        assert (fwd.latency_ms, fwd.cost, fwd.bandwidth_mbps) == (
            ls.latency_ms,
            ls.cost,
            ls.bandwidth_mbps,
        )
        assert fwd.up is not ls.down
        expected_residual = ls.bandwidth_mbps if ls.residual_mbps is None else ls.residual_mbps
        assert fwd.residual_mbps == expected_residual
        if ls.bidirectional:
            (rid,) = added - {lid}
            assert g.reverse_link(lid) == rid and g.reverse_link(rid) == lid
            rev = model.links[rid]
            assert (rev.u, rev.v) == (fwd.v, fwd.u)
            assert (rev.latency_ms, rev.cost, rev.bandwidth_mbps) == (
                fwd.latency_ms,
                fwd.cost,
                fwd.bandwidth_mbps,
            )
        else:
            assert g.reverse_link(lid) is None


def test_link_up_down_round_trip() -> None:
    g = pathcore.Graph()
    g.add_node("a")
    g.add_node("b")
    lid = g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=10.0, cost=1.0, bidirectional=False)
    assert g.shortest_path("a", "b") is not None
    g.set_link_up(lid, False)
    assert read_links(g)[lid].up is False
    assert g.shortest_path("a", "b") is None
    g.set_link_up(lid, True)
    assert read_links(g)[lid].up is True
    assert list(g.shortest_path("a", "b").links) == [lid]


def test_link_is_a_typed_record() -> None:
    g = _small()
    ab = g.links_between("a", "b")[0]
    link = g.link(ab)
    assert isinstance(link, pathcore.Link)
    assert (link.id, link.u, link.v) == (ab, "a", "b")
    assert (link.latency_ms, link.bandwidth_mbps, link.residual_mbps, link.cost) == (
        1.0,
        100.0,
        100.0,
        1.0,
    )
    assert link.up is True and link.reverse == g.reverse_link(ab)
    bc = g.links_between("b", "c")[0]
    assert g.link(bc).reverse is None
    assert repr(g.link(bc)) == (
        f"Link(id={bc}, u='b', v='c', latency_ms=2.0, bandwidth_mbps=100.0, "
        "residual_mbps=100.0, cost=1.0, up=True, reverse=None)"
    )
    assert g.links() == [g.link(i) for i in range(g.link_count)]
    # a snapshot: equal while nothing changes, hashable, immutable
    assert g.link(ab) == link and hash(g.link(ab)) == hash(link)
    assert g.link(ab) != g.link(link.reverse) and link != "a-b"
    with pytest.raises(AttributeError):
        link.up = False  # type: ignore[misc]
    g.set_residual_bandwidth(ab, 40.0)
    g.set_link_up(ab, False)
    assert (link.residual_mbps, link.up) == (100.0, True)
    now = g.link(ab)
    assert (now.residual_mbps, now.up) == (40.0, False) and now != link


def test_parallel_links_are_distinct_and_named() -> None:
    g = pathcore.Graph()
    g.add_node("a")
    g.add_node("b")
    slow = g.add_link("a", "b", latency_ms=5.0, bandwidth_mbps=10.0, cost=1.0, bidirectional=False)
    fast = g.add_link("a", "b", latency_ms=1.0, bandwidth_mbps=10.0, cost=9.0, bidirectional=False)
    assert slow != fast
    assert list(g.shortest_path("a", "b", weight="latency").links) == [fast]
    assert list(g.shortest_path("a", "b", weight="cost").links) == [slow]
    p = g.constrained_path("a", "b", max_latency_ms=2.0)
    assert list(p.links) == [fast]


# ---------------------------------------------------------------------------------------------
# Errors: the right exception, and nothing changes
# ---------------------------------------------------------------------------------------------


def _expect_unchanged(
    g: Any, exc: type[BaseException] | tuple[type[BaseException], ...], call: Any
) -> None:
    before = _snapshot(g)
    with pytest.raises(exc):
        call()
    assert _snapshot(g) == before, "a failed call changed the graph"


def test_duplicate_node_is_value_error() -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: g.add_node("a"))


@pytest.mark.parametrize("field", ["latency_ms", "bandwidth_mbps", "cost"])
@pytest.mark.parametrize("bad", BAD_VALUES)
def test_add_link_rejects_bad_values(field: str, bad: float) -> None:
    g = _small()
    kwargs = {"latency_ms": 1.0, "bandwidth_mbps": 10.0, "cost": 1.0, field: bad}
    for bidirectional in (False, True):
        _expect_unchanged(
            g,
            ValueError,
            lambda b=bidirectional: g.add_link("a", "c", bidirectional=b, **kwargs),
        )


@pytest.mark.parametrize(
    "setter",
    ["set_residual_bandwidth", "set_link_bandwidth", "set_link_latency", "set_link_cost"],
)
@pytest.mark.parametrize("bad", BAD_VALUES)
@pytest.mark.parametrize("both", [False, True])
def test_link_setters_reject_bad_values(setter: str, bad: float, both: bool) -> None:
    g = _small()
    lid = next(iter(read_links(g)))
    _expect_unchanged(g, ValueError, lambda: getattr(g, setter)(lid, bad, both_directions=both))


def test_unknown_link_id_is_rejected() -> None:
    g = _small()
    missing = max(read_links(g)) + 1000
    _expect_unchanged(g, KeyError, lambda: g.set_link_up(missing, False))
    _expect_unchanged(g, KeyError, lambda: g.set_residual_bandwidth(missing, 1.0))
    _expect_unchanged(
        g,
        KeyError,
        lambda: g.constrained_path("a", "c", max_latency_ms=5.0, exclude_links=[missing]),
    )
    _expect_unchanged(g, KeyError, lambda: g.shortest_path("a", "c", exclude_links=[missing]))
    _expect_unchanged(g, KeyError, lambda: g.shortest_path("a", "c", exclude_links=[-1]))
    _expect_unchanged(g, KeyError, lambda: g.link(missing))
    _expect_unchanged(g, KeyError, lambda: g.link(-1))


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.shortest_path("a", "c", exclude_nodes="b"),
        lambda g: g.constrained_path("a", "c", max_latency_ms=5.0, exclude_nodes="b"),
    ],
)
def test_exclude_nodes_as_one_str_is_value_error(call: Any) -> None:
    """A str is an iterable of one-letter names: refused, for both queries alike."""
    g = _small()
    _expect_unchanged(g, ValueError, lambda: call(g))


def test_disjoint_paths_same_endpoints_is_value_error() -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: g.disjoint_paths("a", "a"))


def test_bulk_add_is_all_or_nothing() -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: g.add_nodes(["x", "y", "a"]))
    _expect_unchanged(
        g,
        ValueError,
        lambda: g.add_links([("a", "c", 1.0, 1.0, 1.0), ("b", "a", -1.0, 1.0, 1.0)]),
    )
    _expect_unchanged(
        g, KeyError, lambda: g.add_links([("a", "c", 1.0, 1.0), ("a", "zz", 1.0, 1.0)])
    )


UNKNOWN_NODE_CALLS = {
    "add_link_u": lambda g: g.add_link(
        "zz", "a", latency_ms=1.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=True
    ),
    "add_link_v": lambda g: g.add_link(
        "a", "zz", latency_ms=1.0, bandwidth_mbps=1.0, cost=1.0, bidirectional=False
    ),
    "shortest_src": lambda g: g.shortest_path("zz", "a"),
    "shortest_dst": lambda g: g.shortest_path("a", "zz"),
    "constrained": lambda g: g.constrained_path("a", "zz", max_latency_ms=5.0),
    "constrained_exclude": lambda g: g.constrained_path(
        "a", "c", max_latency_ms=5.0, exclude_nodes=["zz"]
    ),
    "shortest_exclude": lambda g: g.shortest_path("a", "c", exclude_nodes=["zz"]),
    "ksp": lambda g: g.k_shortest_paths("zz", "c", 2),
    "disjoint": lambda g: g.disjoint_paths("a", "zz"),
    "within": lambda g: g.within_latency("zz", 3.0),
    "matrix": lambda g: g.latency_matrix(["a", "zz"]),
    "batch": lambda g: g.batch_constrained_paths([("a", "c", 5.0, 0.0), ("zz", "c", 5.0, 0.0)]),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN_NODE_CALLS))
def test_unknown_node_is_key_error(name: str) -> None:
    g = _small()
    _expect_unchanged(g, KeyError, lambda: UNKNOWN_NODE_CALLS[name](g))


BAD_BOUND_CALLS = {
    "constrained_latency": lambda g, x: g.constrained_path("a", "c", max_latency_ms=x),
    "constrained_bandwidth": lambda g, x: g.constrained_path(
        "a", "c", max_latency_ms=5.0, min_bandwidth_mbps=x
    ),
    "ksp_latency": lambda g, x: g.k_shortest_paths("a", "c", 2, max_latency_ms=x),
    "within": lambda g, x: g.within_latency("a", x),
    "batch_latency": lambda g, x: g.batch_constrained_paths([("a", "c", x, 0.0)]),
    "batch_bandwidth": lambda g, x: g.batch_constrained_paths([("a", "c", 5.0, x)]),
}


@pytest.mark.parametrize("name", sorted(BAD_BOUND_CALLS))
@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_bad_bounds_are_value_error(name: str, bad: float) -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: BAD_BOUND_CALLS[name](g, bad))


@pytest.mark.parametrize("k", [0, -1])
def test_k_below_one_is_value_error(k: int) -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: g.k_shortest_paths("a", "c", k))


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.shortest_path("a", "c", weight="bogus"),
        lambda g: g.constrained_path("a", "c", max_latency_ms=5.0, weight="bogus"),
        lambda g: g.k_shortest_paths("a", "c", 2, weight="bogus"),
        lambda g: g.disjoint_paths("a", "c", weight="bogus"),
        lambda g: g.batch_constrained_paths([("a", "c", 5.0, 0.0)], weight="bogus"),
    ],
)
def test_unknown_weight_is_value_error(call: Any) -> None:
    g = _small()
    _expect_unchanged(g, ValueError, lambda: call(g))


def test_stub_matches_extension() -> None:
    """The shipped .pyi must describe the compiled module (mypy.stubtest)."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "pathcore"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"stubtest failed:\n{proc.stdout}\n{proc.stderr}"
