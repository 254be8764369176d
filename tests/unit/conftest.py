"""Fixtures the unit tests share: the shipped topologies, loaded afresh for each test through
:mod:`controller.topology.files` (``diamond``, ``national``, ``shipped("ring")``).

``etcd_server`` is one real etcd child process for the session (tests that stop or kill etcd
start their own). The controller core brought up on a fake network of switches is
``fakeoftable.running``; the bounded waits are ``tests/waiting.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from controller.cluster.etcdproc import EtcdServer, etcd_binary
from controller.errors import StoreError
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology


def _shipped(name: str) -> Topology:
    return load_topology(topology_file(name))


@pytest.fixture
def shipped() -> Callable[[str], Topology]:
    """Load a shipped topology by name: ``shipped("ring")``."""
    return _shipped


@pytest.fixture
def diamond() -> Topology:
    """s1 reaches s4 over s2 (fast, expensive) or s3 (slow, cheap); hosts h1 on s1, h2 on s4."""
    return _shipped("diamond")


@pytest.fixture
def national() -> Topology:
    """The national backbone: 52 switches, 112 links, its intents and compute sites."""
    return _shipped("national")


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[EtcdServer]:
    """One etcd child process for the session; each test works under its own key prefix and
    none stops it."""
    try:
        etcd_binary()
    except StoreError as exc:
        pytest.fail(str(exc), pytrace=False)
    with EtcdServer(name="unit-tests") as server:
        yield server
