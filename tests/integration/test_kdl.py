"""The largest carrier map end to end: the 754-switch Topology Zoo map Kdl (899 links, a host
per switch) as a lab of userspace Open vSwitch bridges connected to the controller, which
reconciles every switch and forwards a sample of host pairs (up to 58 hops apart, 17 at the
median). Behaviour only, with generous bounds: the times are measured by
``benchmarks/bench_scale.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import ControllerProcess, start_lab

from controller.lab.network import LabNetwork
from controller.lab.ping import plan_ping_pairs
from controller.topology.files import load_topology_argument
from controller.topology.model import Topology

KDL = "zoo:Kdl"
SAMPLE_PAIRS = 40


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology_argument(KDL)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(Path(KDL), tmp_path_factory.mktemp("ctl"))
    ctl.start(timeout_s=60)
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, topology: Topology, controller: ControllerProcess
        ) -> Iterator[LabNetwork]:
    net, took_s = start_lab(lab_env, topology, controller, timeout_s=600)
    try:
        print(f"\nKdl lab: network up in {took_s:.1f} s")
        yield net
    finally:
        # the controller goes first: taking 754 bridges away under it only makes it work
        # out 754 switches lost while ovs-vswitchd deletes them
        controller.stop()
        net.stop()


def test_every_switch_is_reconciled_and_host_pairs_answer(
        lab: LabNetwork, topology: Topology, controller: ControllerProcess) -> None:
    assert len(topology.nodes) == 754 and len(topology.hosts) == 754
    controller.wait_synced(len(topology.nodes), 300)
    pairs, _ = plan_ping_pairs([h.name for h in topology.hosts])
    sample = pairs[:SAMPLE_PAIRS]
    # the first packet: within 60 s on a quiet machine (benchmarks/bench_scale.py measures
    # it); twice in a row on a loaded one (the lab up in 121 s instead of 75) it took longer,
    # with nothing of the controller's own in the way (no intents, every bridge reconciled)
    lab.wait_until_reachable(*sample[0], timeout_s=180)
    matrix = lab.ping_matrix(sample, count=1, wait_s=5, parallel_sources=8)
    assert len(matrix.results) == len(sample)
    # a pair whose one echo went unanswered is asked once more: on a loaded machine 754
    # bridges in one ovs-vswitchd answered the first round at 2-4 s round trips and lost
    # about half, while every bridge was reconciled
    again = [(r.src, r.dst) for r in matrix.failed]
    retry = lab.ping_matrix(again, count=3, wait_s=5, parallel_sources=8) if again else None
    assert retry is None or [r for r in retry.results if r.received == 0] == [], (
        matrix.summary_table(lab.plan) + "\nagain:\n" + retry.summary_table(lab.plan))
