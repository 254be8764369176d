"""SLA monitoring on real Open vSwitch (diamond): delays fed through PUT
/links/{index}/measurements push an intent's measured latency over its bound; the controller
raises ``sla_violation`` and, for the intent with ``sla_reroute``, moves it onto the path whose
measured latency meets the bound. The move is checked by the switches' flow counters (pings
counted on s2 with the intent's cookies, none more on s3), the other intent stays, violated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from harness import (
    DIAMOND,
    REPO,
    by_cookie,
    controller_and_lab,
    counter_delta,
    fast_ping,
    ping_result,
    route_cookies,
    settled_counters,
)
from waiting import wait_until

BOUND_MS = 12.0  # the cheap path s1-s3-s4 is 10 ms configured, the fast one 2 ms


@pytest.fixture
def topology_file(tmp_path: Path) -> Path:
    doc = yaml.safe_load(DIAMOND.read_text())
    doc["intents"] = [
        {"name": "watched", "src": "h1", "dst": "h2", "max_latency_ms": BOUND_MS,
         "sla_reroute": True},
        {"name": "plain", "src": "h2", "dst": "h1", "max_latency_ms": BOUND_MS}]
    path = tmp_path / "diamond-sla.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_measured_delay_over_the_bound_raises_the_event_and_reroutes(
        lab_env: object, topology_file: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # no smoothing, two samples in a row (the defaults, 0.3 and 3, take ~6 s instead of 2)
    monkeypatch.setenv("CPN_NETWORK_SLA_EWMA_ALPHA", "1")
    monkeypatch.setenv("CPN_NETWORK_SLA_SAMPLES", "2")
    with controller_and_lab(lab_env, topology_file, tmp_path, startup_grace_s=3.0) as (ctl,
                                                                                        lab):
        url = f"http://127.0.0.1:{ctl.api_port}/api/v1"
        token = (ctl.state_dir / "api-token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}

        def intent(name: str) -> dict[str, Any]:
            return next(i for i in httpx.get(f"{url}/intents", timeout=10).json()
                        if i["name"] == name)

        for name in ("watched", "plain"):
            wait_until(lambda n=name: intent(n)["state"] == "installed"  # type: ignore[misc]
                       and (intent(n)["sla"] or {}).get("state") == "ok", 20,
                       f"{name} installed, sla ok", detail=lambda n=name: str(intent(n)))
        assert intent("watched")["path"] == ["s1", "s3", "s4"]
        assert intent("plain")["path"] == ["s4", "s3", "s1"]
        lab.wait_until_reachable("h1", "h2", timeout_s=15)
        # s1-s3 (link 2) measured at 20 ms both ways by the operator's probes
        r = httpx.put(f"{url}/links/2/measurements", headers=auth, timeout=10, json={
            "a_to_b": {"delay_ms": 20.0, "loss": 0.0}, "b_to_a": {"delay_ms": 20.0}})
        assert r.status_code == 200, r.text
        watched = wait_until(
            lambda: (lambda i: i if i["path"] == ["s1", "s2", "s4"]
                     and i["state"] == "installed" else None)(intent("watched")),
            15, "watched moved onto s1-s2-s4", detail=lambda: str(intent("watched")))
        plain = intent("plain")
        assert plain["path"] == ["s4", "s3", "s1"]  # no sla_reroute: it stays, violated
        assert plain["sla"]["state"] == "violated" and plain["sla"]["measured_ms"] > BOUND_MS
        events = httpx.get(f"{url}/events", timeout=10).json()
        violations = {e["name"] for e in events if e["kind"] == "sla_violation"}
        assert violations == {"watched", "plain"}
        metrics = httpx.get(f"http://127.0.0.1:{ctl.api_port}/metrics", timeout=10).text
        assert "cpn_sla_violations_total 2.0" in metrics
        links = httpx.get(f"{url}/links", timeout=10).json()["links"]
        assert links[2]["measurements"]["a_to_b"]["origin"] == "external"
        # the traffic: pings h1 -> h2 counted on s2 by the intent's flows, no more on s3
        cookies = route_cookies(watched)
        before = by_cookie(settled_counters(lab), cookies)
        sent, got, out = ping_result(fast_ping(lab, "h1", "h2", 50), timeout_s=20)
        assert got == sent == 50, out
        moved = counter_delta(before, by_cookie(settled_counters(lab), cookies))
        assert moved.get("s2", 0) >= 50 and "s3" not in moved, moved
        # cpnctl shows the SLA state
        cli = subprocess.run([sys.executable, "-m", "controller.api.cli", "--url",
                              f"http://127.0.0.1:{ctl.api_port}", "intents", "list"], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        row = next(line for line in cli.stdout.splitlines() if " plain " in f" {line} ")
        assert "violated" in row, cli.stdout
