"""The REST API and cpnctl inside the real controller process (``python -m controller.main``
with ``--api-port``/``--state-dir``), on real OVS in Mininet.

* SIGKILL persistence: intents added over the API come back after ``kill -9`` and a restart
  with the same state directory, with the same ids, and the switches' flows are adopted
  (same cookies, no churn).
* End to end: ``cpnctl intents add`` between two national lab hosts, and the traffic runs on
  exactly the switches of the path it reported (flow counters of the intent's cookie).

These need controller/main.py to start the API (``controller.main.build_controller``); when it
does not, they FAIL saying so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import (
    DIAMOND,
    NATIONAL,
    REPO,
    ControllerProcess,
    by_cookie,
    counter_delta,
    fast_ping,
    flows_of,
    intent_cookie,
    ping_result,
    route_cookies,
    settled_counters,
    start_lab,
    table_signature,
)
from waiting import wait_until

from controller.lab.network import LabNetwork
from controller.topology.loader import load_topology

TOKEN = "e2e-token-5f0c1d"


class ApiControllerProcess(ControllerProcess):
    """The controller with its REST API on a free loopback port and a state directory."""

    def __init__(self, topology_file: Path, workdir: Path, startup_grace_s: float = 10.0
                 ) -> None:
        super().__init__(topology_file, workdir, startup_grace_s)
        self.token_file = workdir / "token"
        self.token_file.write_text(f"{TOKEN}\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    readiness = "answering on its REST API"

    def command(self) -> list[str]:
        return [*super().command(), "--api-token-file", str(self.token_file)]

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 30.0) -> None:
        super().start(timeout_s)

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.url}/api/v1{path}", timeout=30.0,
                             headers={"Authorization": f"Bearer {TOKEN}"}, **kw)

    def cpnctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "CPN_URL": self.url, "CPN_TOKEN": TOKEN}
        return subprocess.run([sys.executable, "-m", "controller.api.cli", *args], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=60)

    def wait_api_intent(self, intent_id: int, state: str, timeout_s: float = 20.0
                        ) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            r = self.api("GET", f"/intents/{intent_id}")
            body = r.json() if r.status_code == 200 else None
            return body if body and body["state"] == state else None
        return wait_until(check, timeout_s, f"intent {intent_id} {state}",
                          detail=lambda: self.api("GET", f"/intents/{intent_id}").text)


@pytest.fixture
def diamond_ctl(tmp_path: Path) -> Iterator[ApiControllerProcess]:
    ctl = ApiControllerProcess(DIAMOND, tmp_path, 5.0)
    yield ctl
    print(f"--- controller log (tail) ---\n{ctl.log_tail(80)}")
    ctl.stop()


def test_sigkill_keeps_api_intents_and_flows(lab_env: object,
                                             diamond_ctl: ApiControllerProcess) -> None:
    ctl = diamond_ctl
    topo = load_topology(ctl.topology_file)
    ctl.start()
    lab, _ = start_lab(lab_env, topo, ctl, timeout_s=60)
    try:
        ctl.wait_synced(4, 30, "every diamond switch")
        r = ctl.api("POST", "/intents", json={"name": "api-web", "src": "h1", "dst": "h2",
                                               "max_latency_ms": 12, "priority": 300,
                                               "match": {"ip_proto": 6, "dst_port": 80}})
        assert r.status_code == 201, r.text
        iid = r.json()["id"]
        assert iid == 3  # after the file's two intents
        ctl.wait_api_intent(iid, "installed")
        shown = ctl.api("GET", f"/intents/{iid}").json()
        path = shown["path"]
        assert path == ["s1", "s3", "s4"]  # least cost within 12 ms
        own, at_s3, at_s4 = route_cookies(shown)
        assert own == intent_cookie(iid)

        def holders(cookie: int) -> set[str]:
            return {n for n in ("s1", "s2", "s3", "s4")
                    if any(f.cookie == cookie for f in flows_of(lab, n))}

        # its ingress flow at s1 pushes the label; its tunnel's segments are on s3 and s4
        assert holders(own) == {"s1"} and holders(at_s3) == {"s3"} and holders(at_s4) == {"s4"}
        before = {n: table_signature(lab, n) for n in ("s1", "s2", "s3", "s4")}

        ctl.kill()
        ctl.start()
        got = ctl.api("GET", f"/intents/{iid}").json()
        assert (got["id"], got["name"], got["source"]) == (iid, "api-web", "api")
        ctl.wait_synced(4, 40, "every switch reconnected after SIGKILL and")
        again = ctl.wait_api_intent(iid, "installed")
        after = {n: table_signature(lab, n) for n in ("s1", "s2", "s3", "s4")}
        # flows adopted: same cookies and the same labels, nothing rewritten
        assert after == before and again["mpls_labels"] == shown["mpls_labels"]
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def national_ctl(tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[ApiControllerProcess]:
    ctl = ApiControllerProcess(NATIONAL,
                               tmp_path_factory.mktemp("ctl-api"))
    yield ctl
    print(f"--- controller log (tail) ---\n{ctl.log_tail(80)}")
    ctl.stop()


def test_cpnctl_intent_carries_traffic_on_the_reported_path(
        lab_env: object, national_ctl: ApiControllerProcess) -> None:
    ctl = national_ctl
    topo = load_topology(ctl.topology_file)
    ctl.start()
    lab: LabNetwork
    lab, _ = start_lab(lab_env, topo, ctl, timeout_s=180)
    try:
        ctl.wait_synced(len(topo.nodes), 90, "every national switch")
        src = next(h.name for h in topo.hosts if h.name.startswith("h-city-"))
        dst = next(h.name for h in topo.hosts if h.name.startswith("h-dc-"))
        r = ctl.cpnctl("--json", "intents", "add", src, dst, "--max-latency-ms", "60",
                       "--priority", "400", "--name", "e2e-cpnctl")
        assert r.returncode == 0, r.stderr
        added = json.loads(r.stdout)
        iid, path = added["id"], added["path"]
        assert path, added
        shown = ctl.wait_api_intent(iid, "installed")
        assert shown["path"] == path
        cookie = route_cookies(shown)  # its ingress flow and its tunnel
        base = by_cookie(settled_counters(lab), cookie)
        sent, received, out = ping_result(fast_ping(lab, src, dst, 50), 30)
        assert received > 0, out
        after = by_cookie(settled_counters(lab), cookie)
        moved = counter_delta(base, after)
        assert set(moved) == set(path), (moved, path)
        table = ctl.cpnctl("intents", "list")
        assert table.returncode == 0 and "e2e-cpnctl" in table.stdout
    finally:
        lab.stop()
