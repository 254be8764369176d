"""Live site metrics (CATS): parsing refuses nonsense naming the field, freshness, the levels."""

from __future__ import annotations

import math
from typing import Any

import pytest
from compute_oracles import small
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.compute.metrics import (
    COMPUTE_DELAY_REF_MS,
    SiteMetrics,
    is_fresh,
    levels,
    parse_metrics,
)
from controller.compute.sites import ComputeRegistry
from controller.errors import ComputeSiteError, NotFound

GOOD: dict[str, Any] = {"utilisation": 0.5, "compute_delay_ms": 10.0, "free_capacity": 2.0,
                        "healthy": True}


def test_a_good_report_is_kept_with_its_other_fields_time_and_source() -> None:
    m = parse_metrics({**GOOD, "gpu_temp_c": 61, "model": "llm-7b"}, now=12.5, source="pull")
    assert (m.utilisation, m.compute_delay_ms, m.free_capacity, m.healthy) == (0.5, 10.0, 2.0,
                                                                                True)
    assert dict(m.extra) == {"gpu_temp_c": 61, "model": "llm-7b"}
    assert (m.received_at, m.source) == (12.5, "pull")
    assert parse_metrics({**GOOD, "free_capacity": None}, 0, "push").free_capacity is None


NONSENSE = [
    ("compute_delay_ms", -1.0), ("compute_delay_ms", math.nan), ("compute_delay_ms", math.inf),
    ("compute_delay_ms", "3"), ("compute_delay_ms", None), ("compute_delay_ms", True),
    ("utilisation", 1.01), ("utilisation", -0.1), ("utilisation", math.nan),
    ("utilisation", "high"), ("free_capacity", -2), ("free_capacity", math.inf),
    ("healthy", "yes"), ("healthy", 1), ("extra_field", math.nan), ("extra_field", [1, 2]),
    ("extra_field", {"a": 1}),
]


@pytest.mark.parametrize(("field", "value"), NONSENSE)
def test_nonsense_is_refused_naming_the_field(field: str, value: Any) -> None:
    with pytest.raises(ComputeSiteError, match=field) as err:
        parse_metrics({**GOOD, field: value}, 0.0, "push")
    assert err.value.http_status == 400


def test_missing_fields_and_unknown_sources_are_refused() -> None:
    for field in ("utilisation", "compute_delay_ms", "healthy"):
        body = {k: v for k, v in GOOD.items() if k != field}
        with pytest.raises(ComputeSiteError, match=field):
            parse_metrics(body, 0.0, "push")
    with pytest.raises(ComputeSiteError, match="source"):
        parse_metrics(GOOD, 0.0, "carrier-pigeon")
    with pytest.raises(ComputeSiteError, match="at most"):
        parse_metrics({**GOOD, **{f"x{i}": i for i in range(40)}}, 0.0, "push")


_JUNK = st.one_of(st.text(max_size=5), st.floats(allow_nan=True, allow_infinity=True),
                  st.integers(-10**6, 10**6), st.none(), st.booleans(),
                  st.lists(st.integers(), max_size=2))


@settings(max_examples=300, deadline=None)
@given(util=_JUNK, delay=_JUNK, free=_JUNK, healthy=_JUNK)
def test_anything_accepted_is_in_range_and_anything_else_names_a_field(
        util: Any, delay: Any, free: Any, healthy: Any) -> None:
    body = {"utilisation": util, "compute_delay_ms": delay, "free_capacity": free,
            "healthy": healthy}
    try:
        m = parse_metrics(body, 1.0, "push")
    except ComputeSiteError as exc:
        assert any(f in str(exc) for f in body)
        return
    assert 0 <= m.utilisation <= 1 and math.isfinite(m.utilisation)
    assert 0 <= m.compute_delay_ms and math.isfinite(m.compute_delay_ms)
    assert m.free_capacity is None or (m.free_capacity >= 0 and math.isfinite(m.free_capacity))
    assert isinstance(m.healthy, bool)
    lv = levels(m)
    assert 0 <= lv["score"] <= 1
    assert all(v is None or 0 <= v <= 1 for v in lv["categories"].values())


def test_fresh_for_three_intervals_then_stale() -> None:
    m = parse_metrics(GOOD, now=100.0, source="push")
    assert is_fresh(m, 100.0, 5.0) and is_fresh(m, 115.0, 5.0)
    assert not is_fresh(m, 115.01, 5.0)
    assert not is_fresh(None, 100.0, 5.0)
    assert is_fresh(m, 99.0, 5.0)  # a clock reading earlier is age 0


def test_levels_follow_the_documented_normalisation() -> None:
    m = SiteMetrics(utilisation=0.5, compute_delay_ms=COMPUTE_DELAY_REF_MS, free_capacity=2.0,
                    healthy=True)
    lv = levels(m, capacity=8.0)
    assert lv["raw"] == {"utilisation": 0.5, "compute_delay_ms": 10.0, "free_capacity": 2.0,
                         "healthy": True}
    assert lv["categories"] == {"compute": 0.5, "capacity": 0.25, "health": 1.0}
    assert lv["score"] == pytest.approx((2 * 0.5 + 0.25) / 3, abs=1e-4)
    idle = SiteMetrics(utilisation=0.0, compute_delay_ms=0.0, free_capacity=None, healthy=True)
    assert levels(idle) == {"raw": idle.raw(), "categories": {"compute": 1.0, "capacity": None,
                                                               "health": 1.0}, "score": 1.0}
    sick = SiteMetrics(utilisation=0.0, compute_delay_ms=0.0, free_capacity=5.0, healthy=False)
    assert levels(sick)["score"] == 0.0
    assert levels(sick)["categories"]["capacity"] == 1.0  # free, capacity unknown
    full = SiteMetrics(utilisation=1.0, compute_delay_ms=0.0, free_capacity=0.0, healthy=True)
    assert levels(full)["categories"]["capacity"] == 0.0
    # more load, more delay: never a better score
    busier = SiteMetrics(utilisation=0.9, compute_delay_ms=50.0, free_capacity=2.0, healthy=True)
    assert levels(busier, 8.0)["score"] < lv["score"]


def test_the_registry_keeps_the_last_good_metrics_per_site() -> None:
    reg = ComputeRegistry.from_topology(small())
    site = reg.sites()[0].id
    assert reg.metrics(site) is None
    m = parse_metrics(GOOD, 1.0, "push")
    reg.set_metrics(site, m)
    assert reg.metrics(site) is m
    with pytest.raises(NotFound):
        reg.set_metrics("cs:nowhere:x", m)
    reg.remove_site(site)
    assert reg.metrics(site) is None


def test_a_site_token_names_its_site_and_may_write_only_its_metrics(tmp_path: Any) -> None:
    from controller.api.tokens import (
        TokenEntry,
        TokenFileError,
        add_token,
        allows,
        load_tokens_file,
        parse_tokens,
        required_role,
    )

    path = tmp_path / "tokens.yaml"
    add_token(path, "agent", "site", "cs:gansu-qingyang:ai-01")
    add_token(path, "ops", "operator")
    agent, ops = load_tokens_file(path)
    assert (agent.role, agent.site, ops.site) == ("site", "cs:gansu-qingyang:ai-01", None)
    for bad in [("x", "site", None), ("y", "operator", "cs:a:b"), ("z", "site", "not-a-site")]:
        with pytest.raises(TokenFileError, match="site"):
            add_token(path, *bad)
    with pytest.raises(TokenFileError, match="site"):
        parse_tokens("tokens:\n  - {name: a, role: site, sha256: " + "a" * 64 + "}\n")
    mine = "/api/v1/compute-sites/cs:gansu-qingyang:ai-01/metrics"
    other = "/api/v1/compute-sites/cs:gansu-qingyang:ai-02/metrics"
    need = required_role("PUT", mine)
    assert need == "site"
    admin = TokenEntry("root", "admin", "0" * 64)
    assert allows(agent, need, "PUT", mine) and allows(admin, need, "PUT", other)
    assert not allows(agent, need, "PUT", other) and not allows(ops, need, "PUT", mine)
    # a site token reads as a viewer and writes nothing else
    assert allows(agent, "viewer", "GET", "/api/v1/intents")
    assert not allows(agent, required_role("POST", "/api/v1/intents"), "POST",
                      "/api/v1/intents")
    assert not allows(agent, required_role("PATCH", "/api/v1/compute-sites/x"), "PATCH",
                      "/api/v1/compute-sites/cs:gansu-qingyang:ai-01")
