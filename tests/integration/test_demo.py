"""The README's main job: ``cpn-demo`` on the national backbone, end to end.

Runs the demo as a user would (subprocess, no terminal, so no Mininet CLI): the controller and
the national lab come up, every switch is programmed, pings along the file's intents are all
answered, and ``cpnctl intents list`` shows each intent installed on the path the engine
chooses (recomputed here from the file with pathcore).
"""

from __future__ import annotations

import re
import subprocess
import sys

from harness import NATIONAL, REPO

from controller.topology.loader import load_topology


def test_demo_brings_up_national_backbone_with_routes_shown_by_cpnctl(lab_env) -> None:
    proc = subprocess.run([sys.executable, "-m", "controller.lab.demo", "--no-cli", str(NATIONAL)],
                          cwd=REPO, capture_output=True, text=True, timeout=240,
                          stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, f"cpn-demo exited {proc.returncode}\n{out}\n{proc.stderr}"
    topo = load_topology(NATIONAL)
    n = 3 * len(topo.intents)
    assert f"pings along the intents: {n}/{n} answered" in out, out
    assert f"Mininet: {len(topo.nodes)} OVS switches" in out, out
    listing = out.split("$ cpnctl intents list", 1)[1]
    graph, _ = topo.to_graph()
    for intent in topo.intents:
        rows = [line for line in listing.splitlines() if f" {intent.name} " in line]
        assert len(rows) == 1, f"intent {intent.name} not listed once by cpnctl:\n{listing}"
        assert "installed" in rows[0], rows[0]
        src, dst = topo.host(intent.src).node, topo.host(intent.dst).node
        path = graph.constrained_path(src, dst, max_latency_ms=intent.max_latency_ms)
        assert path is not None
        assert " → ".join(path.nodes) in rows[0], (rows[0], path.nodes)


def test_demo_cluster_kills_a_member_and_the_others_take_over(lab_env) -> None:
    proc = subprocess.run([sys.executable, "-m", "controller.lab.demo", "--no-cli",
                           "--cluster", "3", str(NATIONAL)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    out = proc.stdout
    assert proc.returncode == 0, f"cpn-demo exited {proc.returncode}\n{out}\n{proc.stderr}"
    topo = load_topology(NATIONAL)
    assert "each connected to 3 controllers" in out, out
    # the members reach etcd over TLS with their own client certificates
    assert re.search(r"etcd https://127\.0\.0\.1:\d+ \(TLS, client certificates", out), out
    killed = re.search(r"killing member (m\d) \(SIGKILL\), master of (\d+) switches", out)
    assert killed is not None and int(killed.group(2)) in (17, 18), out
    took = re.search(r"mastered by the survivors (\d+) ms after the kill", out)
    assert took is not None and int(took.group(1)) < 2000, out
    after = out.split("killing member", 1)[1]
    members = after.split("$ cpnctl cluster", 1)[1].split("$ cpnctl intents list", 1)[0]
    assert re.search(rf" {killed.group(1)} .*\bFalse\b", members), members  # not alive
    listing = after.split("$ cpnctl intents list", 1)[1]
    for intent in topo.intents:
        rows = [line for line in listing.splitlines() if f" {intent.name} " in line]
        assert len(rows) == 1 and "installed" in rows[0], listing
    n = 3 * len(topo.intents)
    assert f"pings along the intents after the takeover: {n}/{n} answered" in out, out
