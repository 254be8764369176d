"""The chaos soak on real Open vSwitch with the real controller (root): a short soak of the
national backbone ends without violations, and the checks do fail on planted faults."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import DIAMOND, NATIONAL

from controller.lab.ovs import run_command
from controller.lab.soak import EVENT_KINDS, Soak, SoakConfig, run_soak
from controller.topology.loader import load_topology

SUMMARY = re.compile(r"^soak: (\d+) events, (\d+) checks, (\d+) violations, (\d+) pings lost$")


def test_short_soak_of_the_national_backbone_keeps_every_invariant(
        lab_env: Any, tmp_path: Path) -> None:
    """Seven seeded events on 52 switches, one of each kind, with concurrent writes: a link
    cut stays cut while the controller is killed (writes in flight), a burst of writes to the
    restarted controller, a flap, a switch restart, a disconnect, the link repaired."""
    lines: list[str] = []
    config = SoakConfig(topology_path=NATIONAL, topology=load_topology(NATIONAL), minutes=10.0,
                        max_events=len(EVENT_KINDS), seed=20266110, workdir=tmp_path / "soak",
                        report=tmp_path / "report.json")
    result = run_soak(config, out=lines.append)
    print("\n".join(lines))
    m = SUMMARY.match(lines[-1])
    assert m, lines[-1]
    events, checks, violations, lost = map(int, m.groups())
    assert violations == 0, "\n".join(lines[-40:])
    assert result.events_by_kind == dict.fromkeys(EVENT_KINDS, 1)
    assert checks == events + 1  # one after start, one after each event
    assert lost == result.pings_lost
    assert result.pings_sent > 0
    assert result.writes_acked > 0
    assert (tmp_path / "report.json").read_text().startswith("{")


def test_planted_faults_are_caught_with_a_diff(lab_env: Any, tmp_path: Path) -> None:
    """A stray flow with a foreign cookie added behind the controller's back, and an
    acknowledged write the store does not hold, are reported with their diffs."""
    config = SoakConfig(topology_path=DIAMOND, topology=load_topology(DIAMOND), minutes=0,
                        seed=1, workdir=tmp_path / "soak", settle_timeout_s=5.0)
    with Soak(config) as soak:
        inv = soak.invariants
        assert inv is not None and soak.lab is not None
        clean, _ = inv.check("start")
        assert clean == []
        br = soak.lab.plan.switch("s2")
        res = run_command(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", br,
                           "cookie=0xdead,table=0,priority=1,ip,nw_dst=10.9.9.9,actions=drop"])
        assert res.returncode == 0, res.stderr
        found = inv.check_tables()
        assert [(v.invariant, v.subject) for v in found] == [("1", "s2")]
        assert "+ stray" in found[0].diff and '"cookie": "0x000000000000dead"' in found[0].diff
        assert "missing" not in found[0].diff

        soak.ledger.added.add(987654)  # an acknowledged add the controller never saw
        found = inv.check_store()
        assert [(v.invariant, v.subject) for v in found] == [("4", "intents")]
        assert "acknowledged add missing 987654" in found[0].diff


def test_short_cluster_soak_keeps_every_invariant(lab_env: Any, tmp_path: Path) -> None:
    """Three members on etcd and the diamond lab; the seed kills members early (m1 at the
    third event, m2 at the sixth), so masters move while writes go round the members."""
    lines: list[str] = []
    weights = {"controller_kill": 2.0, "link_down": 2.0, "link_up": 2.0,
               "switch_disconnect": 1.0, "rest_writes": 2.0}
    config = SoakConfig(topology_path=DIAMOND, topology=load_topology(DIAMOND), minutes=0.5,
                        seed=4, workdir=tmp_path / "soak", weights=weights, members=3)
    result = run_soak(config, out=lines.append)
    print("\n".join(lines))
    m = SUMMARY.match(lines[-1])
    assert m, lines[-1]
    assert int(m.group(3)) == 0, "\n".join(lines[-40:])
    assert result.events_by_kind.get("controller_kill", 0) >= 2
    assert result.checks == result.events + 1 >= 5
    assert result.writes_acked > 0
    assert set(result.slopes) == {"m1", "m2", "m3"}
