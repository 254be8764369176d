"""Live site metrics and external link measurements over the real API on loopback (national
topology): push with a site token (its own site only), nonsense refused keeping the last good
metrics, pull from real local HTTP servers (Prometheus text, garbage, silence), stale after
three intervals, and link measurements in GET /links."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from controller.api.tokens import TOKENS_FILE_NAME, add_token
from controller.compute.sitemetrics import SiteMetricsPlane

from .conftest import Api, MakeApi, assert_error

SITE = "cs:hebei-zhangjiakou:gen-01"
GOOD = {"utilisation": 0.25, "compute_delay_ms": 4.0, "free_capacity": 3.0, "healthy": True}
PROM = """# HELP cpn_site_utilisation share in use
# TYPE cpn_site_utilisation gauge
cpn_site_utilisation 0.5
# TYPE cpn_site_compute_delay_ms gauge
cpn_site_compute_delay_ms 10
cpn_site_free_capacity 2
cpn_site_healthy 1
cpn_site_queue_length{queue="gpu"} 7
process_cpu_seconds_total 12.5
"""


@pytest.fixture
def api(make_api: MakeApi, tmp_path: Path) -> Iterator[tuple[Api, dict[str, str], list[str]]]:
    tokens_path = tmp_path / "state" / TOKENS_FILE_NAME
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    # the tokens are in the file before the controller starts (no wait for a re-read)
    tokens = {"site": add_token(tokens_path, "site-a", "site", SITE),
              "operator": add_token(tokens_path, "op-1", "operator"),
              "viewer": add_token(tokens_path, "viewer-1", "viewer")}
    a = make_api("national")
    sites = [s["id"] for s in a.client().get("/compute-sites").json()]
    assert sites[0] == SITE
    yield a, tokens, sites


def _plane(a: Api, **kw: float) -> SiteMetricsPlane:
    """A plane with test timings in place of the controller's (whose thread is stopped)."""
    old = a.handle.steering.metrics_plane
    if old is not None:
        old.stop()
    return SiteMetricsPlane(a.handle.steering, **kw)


def _metrics(a: Api, site: str) -> dict[str, Any]:
    body = a.client().get(f"/compute-sites/{site}").json()
    return body["metrics"]


def test_a_site_token_writes_its_own_site_only_and_nonsense_keeps_the_last_good(
        api: tuple[Api, dict[str, str], list[str]]) -> None:
    a, tokens, sites = api
    mine, other = sites[0], sites[1]
    assert _metrics(a, mine)["stale"] is True and _metrics(a, mine)["levels"] is None
    site_c = a.client(tokens["site"])
    r = site_c.put(f"/compute-sites/{mine}/metrics", json={**GOOD, "gpu_temp_c": 61})
    assert r.status_code == 200, r.text
    m = r.json()["metrics"]
    assert m["source"] == "push" and m["stale"] is False and m["age_s"] < 5
    assert m["levels"]["raw"]["gpu_temp_c"] == 61
    assert m["levels"]["categories"]["compute"] == pytest.approx((0.75 + 10 / 14) / 2, abs=1e-4)
    body = assert_error(site_c.put(f"/compute-sites/{other}/metrics", json=GOOD), 403,
                        "forbidden")
    assert body["required_role"] == "site"
    for role in ("operator", "viewer"):
        assert_error(a.client(tokens[role]).put(f"/compute-sites/{mine}/metrics", json=GOOD),
                     403, "forbidden")
    assert_error(site_c.post("/intents", json={"src": "h-city-beijing", "dst": "h-city-xian",
                                               "max_latency_ms": 50}), 403, "forbidden")
    for bad, field in [({**GOOD, "compute_delay_ms": -1}, "compute_delay_ms"),
                       ({**GOOD, "utilisation": 1.5}, "utilisation"),
                       ({**GOOD, "utilisation": "high"}, "utilisation"),
                       ({**GOOD, "healthy": "yes"}, "healthy")]:
        detail = assert_error(site_c.put(f"/compute-sites/{mine}/metrics", json=bad), 400)
        assert field in detail["detail"]
    r = site_c.put(f"/compute-sites/{mine}/metrics",
                   content=b'{"utilisation": 0.1, "compute_delay_ms": NaN, "healthy": true}',
                   headers={"Content-Type": "application/json"})
    assert "compute_delay_ms" in assert_error(r, 400)["detail"]
    assert_error(site_c.put(f"/compute-sites/{mine}/metrics", content=b"not json",
                            headers={"Content-Type": "application/json"}), 400)
    kept = _metrics(a, mine)["levels"]["raw"]
    assert (kept["utilisation"], kept["compute_delay_ms"]) == (0.25, 4.0)
    # admin writes any site; an unknown site is 404
    r = a.client().put(f"/compute-sites/{other}/metrics", json=GOOD)
    assert r.status_code == 200 and r.json()["metrics"]["levels"]["score"] > 0
    assert_error(a.client().put("/compute-sites/cs:no:where/metrics", json=GOOD), 404)
    listed = {s["id"]: s for s in a.client().get("/compute-sites").json()}
    assert listed[mine]["metrics"]["stale"] is False
    assert listed[sites[2]]["metrics"]["source"] is None


class _Page(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *_: Any) -> None:
        pass


def _serve(body: bytes) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Page", (_Page,), {"body": body})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/metrics"


def test_pull_reads_prometheus_text_and_marks_garbage_and_silence(
        api: tuple[Api, dict[str, str], list[str]]) -> None:
    a, _, sites = api
    good, good_url = _serve(PROM.encode())
    junk, junk_url = _serve(b"\x00\x01 this is { not prometheus\n")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)  # accepts, never answers
    silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}/metrics"
    try:
        plane = _plane(a, interval_s=5.0, timeout_s=0.5)
        for site, url in zip(sites[:3], (good_url, junk_url, silent_url), strict=True):
            r = a.client().patch(f"/compute-sites/{site}", json={"metrics_url": url})
            assert r.status_code == 200 and r.json()["metrics_url"] == url, r.text
        assert_error(a.client().patch(f"/compute-sites/{sites[3]}",
                                      json={"metrics_url": "ftp://x/y"}), 422)
        a.client().put(f"/compute-sites/{sites[1]}/metrics", json=GOOD)  # a last good one
        t0 = time.monotonic()
        errors = plane.scrape_once()
        assert time.monotonic() - t0 < 5  # the silent site cost one timeout
        assert errors[sites[0]] is None
        assert errors[sites[1]] is not None and errors[sites[2]] is not None
        m = _metrics(a, sites[0])
        assert m["source"] == "pull" and m["stale"] is False
        assert m["levels"]["raw"] == {"utilisation": 0.5, "compute_delay_ms": 10.0,
                                      "free_capacity": 2.0, "healthy": True,
                                      "queue_length": 7.0}
        assert m["scrape"]["error"] is None and m["scrape"]["last_success_age_s"] < 5
        junk_m = _metrics(a, sites[1])
        assert junk_m["scrape"]["error"] and junk_m["scrape"]["last_success_age_s"] is None
        assert junk_m["source"] == "push"  # the pushed metrics stay
        silent_m = _metrics(a, sites[2])
        assert "no answer" in silent_m["scrape"]["error"] and silent_m["stale"] is True
        # the scraper thread keeps going after errors
        plane.interval_s = 0.2
        plane.start()
        time.sleep(0.6)
        assert plane._thread is not None and plane._thread.is_alive()
        plane.stop()
    finally:
        good.shutdown()
        junk.shutdown()
        silent.close()


def test_metrics_go_stale_after_three_intervals(
        api: tuple[Api, dict[str, str], list[str]]) -> None:
    a, _, sites = api
    _plane(a, interval_s=0.2, timeout_s=0.1)
    assert a.client().put(f"/compute-sites/{sites[0]}/metrics", json=GOOD).status_code == 200
    assert _metrics(a, sites[0])["stale"] is False
    deadline = time.monotonic() + 5.0
    while not _metrics(a, sites[0])["stale"] and time.monotonic() < deadline:
        time.sleep(0.1)
    m = _metrics(a, sites[0])
    assert m["stale"] is True and m["age_s"] > 0.6 and m["levels"] is not None


def test_link_measurements_in_and_shown(api: tuple[Api, dict[str, str], list[str]]) -> None:
    a, tokens, _ = api
    op = a.client(tokens["operator"])
    r = op.put("/links/0/measurements", json={"a_to_b": {"delay_ms": 7.5, "loss": 0.01}})
    assert r.status_code == 200, r.text
    assert r.json()["a_to_b"]["delay_ms"] == 7.5 and r.json()["a_to_b"]["origin"] == "external"
    assert_error(op.put("/links/0/measurements", json={"a_to_b": {"delay_ms": -2}}), 400)
    assert_error(op.put("/links/0/measurements", json={"up": {"delay_ms": 2}}), 400)
    assert_error(op.put("/links/99999/measurements", json={"a_to_b": {"delay_ms": 2}}), 404)
    assert_error(a.client(tokens["viewer"]).put("/links/0/measurements",
                                                json={"a_to_b": {"delay_ms": 2}}), 403)
    links = a.client().get("/links").json()["links"]
    m = links[0]["measurements"]
    assert m["delay_source"] == "external"
    assert m["a_to_b"]["external"]["delay_ms"] == 7.5  # the refused one changed nothing
    assert m["a_to_b"]["external"]["loss"] == 0.01 and m["b_to_a"]["external"] is None
    assert links[1]["measurements"]["a_to_b"]["external"] is None


def test_an_assignment_shows_its_paths_measured_latency(
        api: tuple[Api, dict[str, str], list[str]]) -> None:
    a, _, _ = api
    c = a.client()
    assert c.post("/services", json={"name": "infer", "anycast_ip": "10.255.0.1",
                                     "kind": "intelligent", "demand_per_client": 0.01,
                                     "max_latency_ms": 5.0}).status_code == 201
    first = c.post("/services/infer/assignments", json={"client": "h-city-lanzhou"}).json()
    shown = c.get("/services/infer/assignments").json()[0]
    assert shown["measured_ms"] == pytest.approx(first["latency_ms"], abs=1e-3)  # none yet
    links = a.service.topology.links
    a_node, b_node = first["path"][:2]
    index = next(i for i, lk in enumerate(links) if {lk.a, lk.b} == {a_node, b_node})
    direction = "a_to_b" if links[index].a == a_node else "b_to_a"
    assert c.put(f"/links/{index}/measurements",
                 json={direction: {"delay_ms": 40.0}}).status_code == 200
    shown = c.get("/services/infer/assignments").json()[0]
    assert shown["measured_ms"] == pytest.approx(
        first["latency_ms"] - links[index].latency_ms + 40.0, abs=1e-3)
