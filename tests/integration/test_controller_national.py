"""The controller on the national backbone lab (52 switches, real OVS in Mininet).

Hosts in demand cities reach hosts at data-center clusters (a bounded sample of pairs), and
every intent of the file carries its traffic on exactly the switches of the path the
controller reports, which must equal ``pathcore.constrained_path`` computed here from the
topology. Traffic is located by the packet counters of the intent's cookie.
"""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import Iterator

import pytest
from harness import (
    NATIONAL,
    ControllerProcess,
    assert_lab_ports_match_wiring,
    by_cookie,
    counter_delta,
    fast_ping,
    intent_cookie,
    ping_result,
    route_cookies,
    settled_counters,
    start_lab,
)

from controller.lab.network import LabNetwork
from controller.topology.loader import load_topology
from controller.topology.model import Topology

TOPOLOGY = NATIONAL
SAMPLE_PAIRS = 24


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(TOPOLOGY)


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    ctl = ControllerProcess(TOPOLOGY, tmp_path_factory.mktemp("ctl"))
    ctl.start()
    yield ctl
    ctl.stop()


@pytest.fixture(scope="module")
def lab(lab_env: object, topology: Topology, controller: ControllerProcess
        ) -> Iterator[LabNetwork]:
    assert_lab_ports_match_wiring(topology)
    net, took_s = start_lab(lab_env, topology, controller, timeout_s=180)
    t0 = time.monotonic()
    try:
        controller.wait_synced(len(topology.nodes), 60, "every switch")
        synced_s = time.monotonic() - t0
        print(f"\nnational lab: network up in {took_s:.1f} s, every switch reconciled "
              f"{synced_s:.1f} s later")
        yield net
    finally:
        net.stop()


def test_city_hosts_reach_cluster_hosts(lab: LabNetwork, topology: Topology) -> None:
    cities = [h.name for h in topology.hosts if h.name.startswith("h-city-")]
    clusters = [h.name for h in topology.hosts if h.name.startswith("h-dc-")]
    assert cities and clusters
    rng = random.Random(4)
    pairs = sorted({(rng.choice(cities), rng.choice(clusters)) for _ in range(SAMPLE_PAIRS)})
    pairs += [(i.src, i.dst) for i in topology.intents if (i.src, i.dst) not in pairs]
    lab.wait_until_reachable(pairs[0][0], pairs[0][1], timeout_s=20)
    matrix = lab.ping_matrix(pairs, count=2, wait_s=2)
    assert len(matrix.results) == len(pairs)
    assert matrix.failed == [], matrix.summary_table(lab.plan)


def test_lldp_confirms_the_backbone(topology: Topology, controller: ControllerProcess,
                                    lab: LabNetwork) -> None:
    n = len(topology.links)
    report = controller.wait_links_verified(n, timeout_s=20)
    assert report["missing"] == [] and report["unexpected"] == []


def _expected_path(topology: Topology, spec: object) -> list[str]:
    """The path an intent must take, computed here with pathcore on the file's graph."""
    graph, _ = topology.to_graph()
    src, dst = topology.host(spec.src).node, topology.host(spec.dst).node  # type: ignore[attr-defined]
    path = graph.constrained_path(src, dst, max_latency_ms=spec.max_latency_ms,  # type: ignore[attr-defined]
                                  min_bandwidth_mbps=spec.min_bandwidth_mbps,  # type: ignore[attr-defined]
                                  weight="cost")
    assert path is not None, f"no feasible path for {spec}"
    return list(path.nodes)


def _tcp_syns(lab: LabNetwork, src: str, dst: str, port: int, count: int) -> None:
    """``count`` TCP connection attempts from host ``src`` to ``dst``:``port``."""
    ip = lab.topology.host(dst).ip
    script = (f"for i in $(seq {count}); do timeout 1 bash -c 'exec 3<>/dev/tcp/{ip}/{port}' "
              "2>/dev/null; done; true")
    proc = lab.host(src).popen(["bash", "-c", script], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    proc.communicate(timeout=count * 2 + 10)


def test_file_intents_take_their_paths(lab: LabNetwork, topology: Topology,
                                       controller: ControllerProcess) -> None:
    assert len(topology.intents) >= 5
    expected: dict[int, list[str]] = {}
    routes: dict[int, tuple[int, ...]] = {}
    riders: dict[int, list[int]] = {}  # tunnel cookie -> intents riding it
    for iid, spec in enumerate(topology.intents, start=1):
        name = spec.name or f"intent-{iid}"
        intent = controller.wait_intent(name, lambda i: i["state"] == "installed", 20)
        expected[iid] = _expected_path(topology, spec)
        assert intent["path"] == expected[iid], (name, intent)
        assert intent["latency_ms"] <= spec.max_latency_ms
        routes[iid] = route_cookies(intent)
        assert (len(routes[iid]) == 1) == spec.protection, (name, intent)  # no tunnel: protected
        for c in routes[iid][1:]:
            riders.setdefault(c, []).append(iid)
    before = settled_counters(lab)
    for iid, path in expected.items():
        have = set(by_cookie(before, intent_cookie(iid)))
        if topology.intents[iid - 1].protection:
            # fast-failover detours put the intent's flows on switches beside the path too;
            # that traffic moves only on the path is checked by the counters below
            assert set(path) <= have, (iid, have, path)
            assert all(any(n in topology.neighbors(p) for p in path) for n in have - set(path))
        else:
            # its own flow is at the ingress, its tunnel's segments one on each later switch
            # of its path, in order, and none anywhere else
            assert have == {path[0]}, (iid, have, path)
            segments = [set(by_cookie(before, c)) for c in routes[iid][1:]]
            assert segments == [{n} for n in path[1:]], (iid, segments, path)
    # each intent's match is specific to its traffic, so all can run before one reading
    pings = {}
    for iid, spec in enumerate(topology.intents, start=1):
        m = spec.match
        if m is not None and m.ip_proto == 6:
            _tcp_syns(lab, spec.src, spec.dst, m.dst_port or 80, count=3)
        else:
            pings[iid] = fast_ping(lab, spec.src, spec.dst, 10)
    for iid, proc in pings.items():
        sent, received, out = ping_result(proc, 20)
        assert received == sent == 10, (iid, out)
    after = settled_counters(lab)
    for iid, spec in enumerate(topology.intents, start=1):
        moved = counter_delta(by_cookie(before, routes[iid]), by_cookie(after, routes[iid]))
        assert set(moved) == set(expected[iid]), (spec.name, moved, expected[iid])
        if spec.match is None:
            own = counter_delta(by_cookie(before, routes[iid][0]),
                                by_cookie(after, routes[iid][0]))
            assert set(own.values()) == {10}, (spec.name, own)
            # a segment of its own counts exactly its 10 pings; a shared one at least those
            segment_at = dict(zip(expected[iid][1:], routes[iid][1:], strict=False))
            for node, v in moved.items():
                c = segment_at.get(node)
                shared = c is not None and len(riders[c]) > 1
                assert v == 10 or (shared and v > 10), (spec.name, node, v, riders.get(c))
