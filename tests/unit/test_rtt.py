"""The waits for switches (controller/network/rtt.py) against RFC 6298's estimator written out
by hand: smoothed round trip and mean deviation, the floor and the cap, the estimate over all
switches for a switch with none, the doubling after a wait that ran out."""

from __future__ import annotations

import random

import pytest

from controller.network.rtt import RoundTrips


def rfc6298(samples: list[float]) -> float:
    """RTO = SRTT + 4 RTTVAR, as RFC 6298 section 2 computes them (no clock granularity)."""
    srtt, rttvar = samples[0], samples[0] / 2
    for r in samples[1:]:
        rttvar = 0.75 * rttvar + 0.25 * abs(srtt - r)
        srtt = 0.875 * srtt + 0.125 * r
    return srtt + 4 * rttvar


def test_the_wait_is_the_rfc_estimate_between_floor_and_cap() -> None:
    rng = random.Random(7)
    for _ in range(200):
        samples = [rng.uniform(0.0, 20.0) for _ in range(rng.randint(1, 30))]
        trips = RoundTrips(5.0, 60.0)
        for s in samples:
            trips.sample(1, s)
        assert trips.wait_s(1) == pytest.approx(min(60.0, max(5.0, rfc6298(samples))))
        assert trips.srtt_s(1) is not None


def test_a_quiet_network_waits_the_floor() -> None:
    trips = RoundTrips(5.0, 60.0)
    assert trips.wait_s(1) == 5.0  # nothing measured yet
    for _ in range(50):
        trips.sample(1, 0.002)
    assert trips.wait_s(1) == 5.0


def test_a_switch_not_measured_gets_the_estimate_over_all_switches() -> None:
    trips = RoundTrips(1.0, 60.0)
    trips.sample(1, 4.0)
    trips.sample(2, 8.0)
    assert trips.srtt_s(3) is None
    assert trips.wait_s(3) == pytest.approx(rfc6298([4.0, 8.0]))
    assert trips.wait_s(1) == pytest.approx(rfc6298([4.0]))


def test_a_wait_that_ran_out_doubles_until_the_switch_answers() -> None:
    trips = RoundTrips(5.0, 60.0)
    trips.expired(1)
    assert trips.wait_s(1) == 10.0
    trips.expired(1)
    assert trips.wait_s(1) == 20.0
    for _ in range(10):
        trips.expired(1)
    assert trips.wait_s(1) == 60.0  # capped
    assert trips.wait_s(2) == 5.0  # the others are not backed off
    trips.sample(1, 0.01)
    assert trips.wait_s(1) == 5.0


def test_nonsense_is_no_sample_and_bad_bounds_are_refused() -> None:
    trips = RoundTrips(5.0, 60.0)
    trips.sample(1, float("nan"))
    trips.sample(1, -1.0)
    assert trips.srtt_s(1) is None and trips.wait_s(1) == 5.0
    with pytest.raises(ValueError, match="floor_s <= cap_s"):
        RoundTrips(10.0, 5.0)
    with pytest.raises(ValueError):
        RoundTrips(0.0, 5.0)
