"""Fixtures for tests on real Open vSwitch + Mininet (root).

In this project's CI root, OVS and Mininet are present, so a missing one FAILS the test with a
message saying what is missing; nothing here skips.

Cleanup before and after: ``controller.lab.cleanup.cleanup_stale`` plays the part of ``mn -c``
for the lab. It removes exactly what cpn-lab created (bridges it marked, veths and host shells it
recorded) for labs whose process is gone. ``mn -c`` itself is not run: it kills processes by
name (``killall ping controller ...``, ``pkill -f mininet:``), deletes every OVS bridge and
``/tmp/*.log``, which would hit other work sharing the machine.

What the tests share beyond fixtures (the controller as a process, labs connected to it, flow
counters, pings) is in ``harness.py``; bounded waits are in ``tests/waiting.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.errors import LabError
from controller.lab import ovs
from controller.lab.cleanup import OWNER_KEY, STATE_DIR, cleanup_stale
from controller.lab.network import LabNetwork
from controller.topology.model import Topology


def pytest_configure(config: pytest.Config) -> None:
    # Mininet 2.3.0.dev6 compares OVS versions with distutils' StrictVersion.
    config.addinivalue_line(
        "filterwarnings", "ignore:distutils Version classes are deprecated:DeprecationWarning")
    config.addinivalue_line(
        "filterwarnings", "ignore:The 'warn' method is deprecated:DeprecationWarning")


def _lab_bridges() -> list[str]:
    return sorted(b["name"] for b in ovs.ovsdb_list("Bridge", ["name", "external_ids"])
                  if OWNER_KEY in b["external_ids"])


@pytest.fixture(scope="session")
def lab_env() -> ovs.LabEnvironment:
    """Root, the binaries, OVS running (started via controller.lab.ovs if not): else FAIL."""
    if os.geteuid() != 0:
        pytest.fail("the Mininet integration tests need root (euid is "
                    f"{os.geteuid()}); run them as root, as CI does", pytrace=False)
    missing = ovs.missing_binaries()
    if missing:
        pytest.fail("Mininet/OVS integration tests: missing " + ", ".join(missing),
                    pytrace=False)
    try:
        env = ovs.probe_environment(start_ovs=True)
    except LabError as exc:
        pytest.fail(f"Open vSwitch is not usable: {exc}", pytrace=False)
    cleanup_stale()
    return env


@pytest.fixture(autouse=True)
def _controller_log_tail(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that uses a module's ``controller`` fixture, print the tail of that
    controller's log (pytest shows it when the test failed)."""
    yield
    if "controller" in request.fixturenames:
        controller = request.getfixturevalue("controller")
        print(f"--- controller log (tail) ---\n{controller.log_tail(120)}")


@pytest.fixture
def make_lab(lab_env: ovs.LabEnvironment) -> Iterator[Callable[..., LabNetwork]]:
    """Factory for started :class:`LabNetwork` objects; all are stopped at teardown, and the
    test fails if any lab bridge or record is left behind."""
    cleanup_stale()
    labs: list[LabNetwork] = []

    def make(topology: Topology, start: bool = True, timeout_s: float = 120.0,
             **kwargs: Any) -> LabNetwork:
        lab = LabNetwork(topology, env=lab_env, **kwargs)
        labs.append(lab)
        if start:
            lab.start(timeout_s=timeout_s)
        return lab

    try:
        yield make
    finally:
        for lab in labs:
            lab.stop()
        cleanup_stale()
    left = _lab_bridges()
    record = Path(STATE_DIR) / f"{os.getpid()}.json"
    assert not left, f"lab bridges left after stop(): {left}"
    assert not record.exists(), f"lab record left after stop(): {record}"
