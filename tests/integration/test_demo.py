"""The README's main job: ``cpn-demo`` on the national backbone, end to end.

Runs the demo as a user would (subprocess, no terminal, so no Mininet CLI): the controller and
the national lab come up, every switch is programmed, pings along the file's intents are all
answered, and ``cpnctl intents list`` shows each intent installed on the path the engine
chooses (recomputed here from the file with pathcore).
"""

from __future__ import annotations

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
