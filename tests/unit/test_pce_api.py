"""The PCE's REST API on a real HTTP server, with a test PCC on a real PCEP session; and
``cpnctl pce`` against it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from controller.api.pce import create_pce_app
from controller.api.server import ApiHandle, serve_in_thread
from controller.pce.codec import Ero, Lsp, MessageType, Srp, SrSubobject
from controller.pce.engine import PceEngine
from controller.pce.server import PceServer
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from tests.unit.pcep_peer import FakePcc
from tests.unit.test_pce_server import S1, S4, _report, labels, wait_for

TOKEN = "pce-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def stack() -> Iterator[tuple[PceServer, ApiHandle]]:
    server = PceServer(PceEngine(load_topology(topology_file("diamond-sr"))), "127.0.0.1", 0)
    server.start()
    api = serve_in_thread(create_pce_app(server, token=TOKEN), "127.0.0.1", 0)
    yield server, api
    api.stop()
    server.stop()


def test_reads_writes_and_errors(stack: tuple[PceServer, ApiHandle]) -> None:
    server, api = stack
    pcc = FakePcc(server.port)
    pcc.open()
    with httpx.Client(base_url=api.url, timeout=10) as http:
        wait_for(lambda: http.get("/api/v1/pce/sessions").json()[0]["state"] == "up",
                 "the session")
        path = http.get("/api/v1/pce/path", params={"source": S1, "destination": S4,
                                                    "max_latency_ms": 5}).json()
        assert [s["label"] for s in path["segments"]] == [16005, 16004]
        assert path["latency_ms"] == 4.0 and path["te_cost"] == 8.0
        none = http.get("/api/v1/pce/path", params={"source": S1, "destination": S4,
                                                    "max_latency_ms": 1}).json()
        assert none == {"found": False, "reason": none["reason"]} and "2.000 ms" in \
            none["reason"]
        assert http.get("/api/v1/pce/path", params={"source": "x", "destination": S4}) \
            .status_code == 422
        # writes need the token; a bad link or body changes nothing
        assert http.put("/api/v1/pce/links/s1/s5", json={"up": False}).status_code == 401
        assert http.put("/api/v1/pce/links/s1/s9", json={"up": False},
                        headers=AUTH).status_code == 404
        assert http.put("/api/v1/pce/links/s1/s5", json={}, headers=AUTH).status_code == 400
        assert http.put("/api/v1/pce/links/s1/s5", json={"latency_ms": -1},
                        headers=AUTH).status_code == 422
        assert all(link["up"] for link in http.get("/api/v1/pce/links").json())
        moved = http.put("/api/v1/pce/links/s1/s5", json={"up": False, "latency_ms": 2.5},
                         headers=AUTH)
        assert moved.status_code == 200 and moved.json() == {"moved": []}
        [link] = [x for x in http.get("/api/v1/pce/links").json() if {x["a"], x["b"]} ==
                  {"s1", "s5"}]
        assert link["up"] is False and link["latency_ms"] == 2.5
        # PCInitiate from the API
        out = http.post("/api/v1/pce/lsps", json={"pcc": "127.0.0.2", "source": S1,
                                                  "destination": S4, "max_latency_ms": 3,
                                                  "name": "fast"}, headers=AUTH)
        assert out.status_code == 202, out.text
        msg = pcc.recv_type(MessageType.PCINITIATE)
        assert labels(msg) == [16002, 16004] and out.json()["srp_id"] > 0
        refused = http.post("/api/v1/pce/lsps", json={"pcc": "127.0.0.7", "source": S1,
                                                      "destination": S4, "name": "x"},
                            headers=AUTH)
        assert refused.status_code == 409 and "no PCEP session" in refused.json()["detail"]
        assert http.get("/api/v1/pce/lsps/127.0.0.2/1").status_code == 404
        # the PCC reports the LSP it made; removing it sends PCInitiate with the R flag
        made = [SrSubobject(label=x, nai=(f"10.0.0.{x - 16000}",)) for x in (16002, 16004)]
        pcc.send(MessageType.PCRPT, _report(5, made))
        wait_for(lambda: http.get("/api/v1/pce/lsps/127.0.0.2/5").status_code == 200, "it")
        assert http.delete("/api/v1/pce/lsps/127.0.0.2/5").status_code == 401
        assert http.delete("/api/v1/pce/lsps/127.0.0.2/6", headers=AUTH).status_code == 404
        removed = http.delete("/api/v1/pce/lsps/127.0.0.2/5", headers=AUTH)
        assert removed.status_code == 202, removed.text
        msg = pcc.recv_type(MessageType.PCINITIATE)
        srp, lsp = msg.first(Srp), msg.first(Lsp)
        assert isinstance(srp, Srp) and srp.remove and srp.srp_id == removed.json()["srp_id"]
        assert isinstance(lsp, Lsp) and lsp.plsp_id == 5 and msg.first(Ero) is None
        pcc.send(MessageType.PCRPT, [Srp(srp_id=srp.srp_id), Lsp(plsp_id=5, remove=True)])
        wait_for(lambda: http.get("/api/v1/pce/lsps/127.0.0.2/5").status_code == 404, "gone")
        stats = http.get("/api/v1/pce/metrics").json()
        assert stats["sessions_up"] == 1 and stats["initiates"] == 1
        text = http.get("/metrics").text
        assert "cpn_pce_sessions_up 1\n" in text and "cpn_pce_initiates_total 1\n" in text
        assert "# TYPE cpn_pce_requests_total counter" in text
    pcc.close()


def cpnctl(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controller.api.cli", "--url", url,
                           "--token", TOKEN, *args], capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


def test_cpnctl_pce(stack: tuple[PceServer, ApiHandle]) -> None:
    server, api = stack
    pcc = FakePcc(server.port)
    pcc.open()
    rep = pcc.request(S1, S4, bound_ms=5.0)
    segs = [SrSubobject(label=x, nai=(f"10.0.0.{x - 16000}",)) for x in labels(rep)
            if x is not None]
    pcc.send(MessageType.PCRPT, _report(3, segs))
    wait_for(lambda: len(server.lsps()) == 1, "the report")
    out = cpnctl(api.url, "pce", "sessions")
    assert out.returncode == 0 and "127.0.0.2" in out.stdout and "up" in out.stdout, out
    out = cpnctl(api.url, "pce", "lsps")
    assert out.returncode == 0 and "16005 16004" in out.stdout and "5.0" in out.stdout, out
    out = cpnctl(api.url, "pce", "link", "s1", "s5", "--down")
    assert out.returncode == 0 and "16002 16004" in out.stdout, out
    assert labels(pcc.recv_type(MessageType.PCUPD)) == [16002, 16004]
    out = cpnctl(api.url, "pce", "path", S1, S4, "--max-latency-ms", "1")
    assert out.returncode != 0 and "no path" in out.stderr.lower(), out
    out = cpnctl(api.url, "--json", "pce", "lsp", "127.0.0.2", "3")
    detail: dict[str, Any] = json.loads(out.stdout)
    assert detail["history"][-1]["event"] == "update"
    pcc.close()
