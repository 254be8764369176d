"""The cluster in the API, against the real server on loopback: ``/cluster``, writes refused
while the member is not writable, the ``X-CPN-Stale`` header, the ``/health`` block, the
OpenAPI document, ``cpnctl cluster``, the cluster metrics on ``/metrics``, the web map's
masters (stream and page), and the standalone view of a controller running alone.

The cluster is a :class:`FakeCluster` the test steers (writable, stale, masters); everything
else (service, SQLite store, intents, steering, uvicorn) is real."""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Iterator
from typing import Any

import httpx
import pytest
from waiting import wait_until

from controller.api.rest import CUT_OFF_REASON
from controller.cluster.view import ClusterView, Standalone

from .conftest import Api, MakeApi, assert_error
from .test_compute_api import NEW_SITE
from .test_cpnctl import cpnctl

ETCD = "http://127.0.0.1:23790"


class FakeCluster:
    """A :class:`ClusterView` of three members as ``m1`` sees it: ``m1`` (this one) and
    ``m2`` alive, ``m3`` dead; ``masters`` maps each dpid to its master. The test flips
    ``writable_`` and ``stale_`` and moves masters."""

    member_id: str | None = "m1"

    def __init__(self, names: dict[int, str], masters: dict[int, str | None]) -> None:
        self.names = names
        self.masters = dict(masters)
        self.writable_ = True
        self.stale_ = False
        self.revision = 42
        self.status_calls = 0

    def status(self) -> dict[str, Any]:
        self.status_calls += 1
        counts = {m: sum(1 for v in self.masters.values() if v == m) for m in ("m1", "m2", "m3")}
        members = [
            {"id": "m1", "api_url": "http://127.0.0.1:8081", "openflow": "127.0.0.1:6653",
             "alive": True, "applied_revision": self.revision, "masters": counts["m1"],
             "self": True, "lease_ttl_s": 5},
            {"id": "m2", "api_url": "http://127.0.0.1:8082", "openflow": "127.0.0.1:6654",
             "alive": True, "applied_revision": self.revision - 1, "masters": counts["m2"],
             "self": False, "lease_ttl_s": 5},
            {"id": "m3", "api_url": None, "openflow": None, "alive": False,
             "applied_revision": None, "masters": counts["m3"], "self": False,
             "lease_ttl_s": 5}]
        switches = [
            {"dpid": d, "name": self.names[d], "master": m,
             "standbys": sorted({"m1", "m2"} - {m}) if m is not None else [],
             "generation_id": 7 + d if m is not None else None,
             "role_here": "master" if m == "m1" else ("slave" if m else None)}
            for d, m in sorted(self.masters.items())]
        return {"mode": "cluster", "member_id": self.member_id, "writable": self.writable_,
                "stale": self.stale_, "applied_revision": self.revision,
                "etcd": {"endpoints": [ETCD], "healthy": self.writable_,
                         "status": [{"endpoint": ETCD, "healthy": self.writable_,
                                     "leader": True, "revision": 57, "error": None}]},
                "members": members, "switches": switches}

    def writable(self) -> bool:
        return self.writable_

    def stale(self) -> bool:
        return self.stale_

    def switch_masters(self) -> dict[int, str | None]:
        return dict(self.masters)


def _dpids(api: Api) -> dict[str, int]:
    return dict(api.service.wiring.node_dpid)


@pytest.fixture
def clustered(make_api: MakeApi) -> Iterator[tuple[Api, FakeCluster]]:
    """Diamond served by member m1 of a fake cluster: s1, s3 mastered by m1, s2 by m2, s4 by
    nobody."""
    # the dpids of the shipped diamond (checked against the server below)
    names = {1: "s1", 2: "s2", 3: "s3", 4: "s4"}
    fake = FakeCluster(names, {1: "m1", 2: "m2", 3: "m1", 4: None})
    api = make_api("diamond", cluster=fake)
    assert {v: k for k, v in _dpids(api).items()} == names
    yield api, fake


def _store_state(api: Api) -> tuple[Any, ...]:
    store = api.handle.store
    return ([(i, spec) for i, spec in store.intents()], store.high_water_intent_id(),
            json.dumps(store.compute_state(), sort_keys=True, default=str))


# --- /cluster and the OpenAPI document ----------------------------------------------------------

def test_cluster_answers_the_views_status(clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    assert isinstance(fake, ClusterView)
    with api.client(token=None) as c:
        r = c.get("/cluster")
        assert r.status_code == 200, r.text
        body = r.json()
    assert body == fake.status()  # every field, the undocumented lease_ttl_s included
    assert [m["id"] for m in body["members"] if m["self"]] == ["m1"]
    assert {s["name"]: s["master"] for s in body["switches"]} == \
        {"s1": "m1", "s2": "m2", "s3": "m1", "s4": None}


def test_openapi_documents_cluster_and_the_503_of_every_write(
        clustered: tuple[Api, FakeCluster]) -> None:
    api, _ = clustered
    doc = httpx.get(f"{api.url}/openapi.json", timeout=10.0).json()
    get = doc["paths"]["/api/v1/cluster"]["get"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/ClusterOut"}
    assert "security" not in get  # a read: open on loopback like the others
    out = doc["components"]["schemas"]["ClusterOut"]["properties"]
    assert {"mode", "member_id", "writable", "stale", "applied_revision", "etcd", "members",
            "switches"} <= set(out)
    health = doc["components"]["schemas"]["HealthOut"]["properties"]
    assert "cluster" in health
    writes = [(path, method) for path, ops in doc["paths"].items() for method in ops
              if method in ("post", "put", "patch", "delete")]
    assert ("/api/v1/intents", "post") in writes and ("/api/v1/compute-sites", "post") in writes
    assert len(writes) >= 8
    for path, method in writes:
        resp = doc["paths"][path][method]["responses"]["503"]
        assert "cluster_unavailable" in resp["description"], (path, method)
        assert resp["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in doc["paths"].items():  # reads keep their own error list
        if "get" in ops and path not in ("/api/v1/switches/{dpid}/flows",
                                         "/api/v1/switches/{dpid}/ports"):
            assert "503" not in ops["get"]["responses"], path


# --- writes while not writable ------------------------------------------------------------------

def test_writes_answer_503_and_change_nothing_while_not_writable(
        clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    body = {"src": "h1", "dst": "h2", "max_latency_ms": 4, "name": "gold"}
    fake.writable_ = False
    before_store = _store_state(api)
    before_intents = [i.id for i in api.service.intents()]
    with api.client() as c, api.client(token=None) as anon:
        sites_before = c.get("/compute-sites").json()
        refused = [c.post("/intents", json=body), c.delete("/intents/1"),
                   c.post("/compute-sites", json=NEW_SITE),
                   c.patch(f"/compute-sites/{sites_before[0]['id']}", json={"state": "down"})
                   if sites_before else c.patch("/compute-sites/cs:x:y", json={"price": 1}),
                   c.delete("/placements/p1"),
                   c.put("/intents/1", json=body),
                   # refused before authentication: no token is needed to learn it
                   anon.post("/intents", json=body)]
        for r in refused:
            err = assert_error(r, 503, "cluster_unavailable")
            assert err["detail"] == CUT_OFF_REASON
        # reads still answer, from the member's state
        assert c.get("/intents").status_code == 200
        assert c.get("/compute-sites").json() == sites_before
        # only writes under /api/v1 are gated: elsewhere the method is simply not allowed
        assert httpx.post(f"{api.url}/", timeout=10.0).status_code == 405
    assert _store_state(api) == before_store
    assert [i.id for i in api.service.intents()] == before_intents

    fake.writable_ = True  # etcd is back: the same write goes through
    with api.client() as c:
        r = c.post("/intents", json=body)
        assert r.status_code == 201, r.text
        added = r.json()["id"]
        assert c.delete(f"/intents/{added}").status_code == 200
    assert added not in before_intents
    assert api.handle.store.high_water_intent_id() >= added


# --- stale answers ------------------------------------------------------------------------------

def test_every_answer_is_marked_stale_while_the_view_is(
        clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    with api.client() as c:
        fresh = c.get("/health")
        assert fresh.status_code == 200 and "x-cpn-stale" not in fresh.headers
        fake.stale_ = True
        answers = [c.get("/health"), c.get("/topology"), c.get("/intents"), c.get("/cluster"),
                   c.get("/intents/999"),  # an error answer is marked too
                   httpx.get(f"{api.url}/", timeout=10.0),  # the web map's page
                   httpx.get(f"{api.url}/metrics", timeout=10.0)]
        for r in answers:
            assert r.headers.get("x-cpn-stale") == "true", (r.request.url, r.headers)
        assert [r.status_code for r in answers] == [200, 200, 200, 200, 404, 200, 200]
        fake.writable_ = False
        refused = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 4})
        assert_error(refused, 503, "cluster_unavailable")
        assert refused.headers.get("x-cpn-stale") == "true"
        fake.stale_ = False
        fake.writable_ = True
        assert "x-cpn-stale" not in c.get("/topology").headers


# --- /health ------------------------------------------------------------------------------------

def test_health_carries_the_cluster_block(clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    with api.client(token=None) as c:
        h = c.get("/health").json()
        assert h["status"] == "ok" and h["store_ok"] is True
        assert h["cluster"] == {"mode": "cluster", "member_id": "m1", "writable": True,
                                "stale": False, "applied_revision": 42}
        fake.writable_, fake.stale_, fake.revision = False, True, 45
        h = c.get("/health").json()
        assert h["status"] == "degraded"  # a member that refuses writes is not healthy
        assert h["cluster"] == {"mode": "cluster", "member_id": "m1", "writable": False,
                                "stale": True, "applied_revision": 45}


# --- cpnctl -------------------------------------------------------------------------------------

def _table(stdout: str, title: str) -> list[list[str]]:
    """The rows (cells split on runs of two spaces) of the table under ``title``."""
    lines = stdout.splitlines()
    start = lines.index(title)
    rows = []
    for line in lines[start + 3:]:  # title, header, rule
        if not line.strip():
            break
        rows.append([cell.strip() for cell in line.split("  ") if cell.strip()])
    return rows


def test_cpnctl_cluster_tables_and_json(clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    r = cpnctl(api.url, "cluster")
    assert r.returncode == 0, r.stderr
    assert "cluster (cluster)" in r.stdout
    summary = dict((row[0], row[1]) for row in _table(r.stdout, "cluster (cluster)"))
    assert summary["member"] == "m1" and summary["writable"] == "True"
    assert summary["applied revision"] == "42" and ETCD in summary["etcd"]
    members = _table(r.stdout, "members")
    assert members == [
        ["*", "m1", "http://127.0.0.1:8081", "127.0.0.1:6653", "True", "42", "2"],
        ["m2", "http://127.0.0.1:8082", "127.0.0.1:6654", "True", "41", "1"],
        ["m3", "-", "-", "False", "-", "0"]]
    switches = _table(r.stdout, "switches")
    assert switches == [["s1", "0x1", "m1", "m2", "8"], ["s2", "0x2", "m2", "m1", "9"],
                        ["s3", "0x3", "m1", "m2", "10"], ["s4", "0x4", "-", "-", "-"]]
    assert r.stderr == ""
    j = cpnctl(api.url, "--json", "cluster")
    assert j.returncode == 0 and json.loads(j.stdout) == fake.status()
    # a stale member: the answer all the same, and a note on stderr (stdout stays JSON)
    fake.stale_ = True
    j = cpnctl(api.url, "--json", "cluster")
    assert j.returncode == 0 and json.loads(j.stdout)["stale"] is True
    assert "cut off from etcd" in j.stderr
    h = cpnctl(api.url, "health")
    assert h.returncode == 0 and "cluster.member_id" in h.stdout and "m1" in h.stdout


def test_cpnctl_cluster_against_a_standalone_controller(diamond: Api) -> None:
    r = cpnctl(diamond.url, "cluster")
    assert r.returncode == 0, r.stderr
    assert "cluster (standalone)" in r.stdout
    (member,) = _table(r.stdout, "members")
    assert member[:2] == ["*", "standalone"] and member[-3:] == ["True", "-", "0"]
    assert member[2] in ("-", diamond.url)  # the API's address, where the view was told it
    assert [row[:3] for row in _table(r.stdout, "switches")] == \
        [["s1", "0x1", "-"], ["s2", "0x2", "-"], ["s3", "0x3", "-"], ["s4", "0x4", "-"]]
    j = json.loads(cpnctl(diamond.url, "--json", "cluster").stdout)
    assert j["mode"] == "standalone" and j["etcd"] is None


# --- standalone ---------------------------------------------------------------------------------

def _connect(api: Api, *names: str) -> None:
    """Switches finish their handshake with every port up, as the os-ken app reports it."""
    wiring = api.service.wiring
    for name in names:
        dpid = wiring.node_dpid[name]
        assert api.service.switch_connected(dpid, {p: True for p in wiring.ports_of(dpid)},
                                            object())


def test_standalone_cluster_masters_every_connected_switch(diamond: Api) -> None:
    _connect(diamond, "s1", "s3")
    with diamond.client(token=None) as c:
        r = c.get("/cluster")
        assert r.status_code == 200 and "x-cpn-stale" not in r.headers
        body = r.json()
        health = c.get("/health").json()
        nodes = {n["name"]: n["master"] for n in c.get("/topology").json()["nodes"]}
    assert (body["mode"], body["member_id"], body["writable"], body["stale"],
            body["applied_revision"], body["etcd"]) == ("standalone", None, True, False, None,
                                                        None)
    (member,) = body["members"]
    assert member["api_url"] in (None, diamond.url)  # where the view was told it
    assert {k: v for k, v in member.items() if k not in ("api_url", "openflow")} == {
        "id": "standalone", "alive": True, "applied_revision": None, "masters": 2,
        "self": True}
    assert {s["name"]: s["master"] for s in body["switches"]} == \
        {"s1": "standalone", "s2": None, "s3": "standalone", "s4": None}
    assert all(s["standbys"] == [] and s["generation_id"] is None for s in body["switches"])
    assert nodes == {"s1": "standalone", "s2": None, "s3": "standalone", "s4": None}
    assert health["cluster"] == {"mode": "standalone", "member_id": None, "writable": True,
                                 "stale": False, "applied_revision": None}


# --- /metrics -----------------------------------------------------------------------------------

def test_metrics_serve_the_cluster_counters(diamond: Api) -> None:
    text = httpx.get(f"{diamond.url}/metrics", timeout=10.0).text
    for name, kind in (("cpn_cluster_mastership_changes_total", "counter"),
                       ("cpn_cluster_takeover_seconds", "histogram"),
                       ("cpn_cluster_etcd_request_seconds", "histogram")):
        assert f"# TYPE {name} {kind}" in text, name
    from controller.cluster.metrics import MASTERSHIP_CHANGES

    def gained() -> float:
        body = httpx.get(f"{diamond.url}/api/v1/metrics", timeout=10.0).text
        for line in body.splitlines():
            if line.startswith('cpn_cluster_mastership_changes_total{change="gained"}'):
                return float(line.split()[-1])
        return 0.0

    before = gained()
    MASTERSHIP_CHANGES.labels(change="gained").inc(2)
    assert gained() == before + 2


# --- the web map's masters ----------------------------------------------------------------------

def _stream_messages(url: str, timeout_s: float
                     ) -> Generator[dict[str, Any], None, None]:
    """The ``state`` messages of the web map's stream, until ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=httpx.Timeout(5.0, read=timeout_s)) as c, \
            c.stream("GET", f"{url}/api/v1/stream") as r:
        assert r.status_code == 200
        data: list[str] = []
        for line in r.iter_lines():
            if line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "" and data:
                yield json.loads("\n".join(data))
                data = []
            if time.monotonic() > deadline:
                return


def test_stream_carries_masters_and_moves_with_them(clustered: tuple[Api, FakeCluster]) -> None:
    api, fake = clustered
    with api.client(token=None) as c:
        nodes = {n["name"]: n["master"] for n in c.get("/topology").json()["nodes"]}
    assert nodes == {"s1": "m1", "s2": "m2", "s3": "m1", "s4": None}
    stream = _stream_messages(api.url, timeout_s=8.0)
    first = next(stream)
    assert first["masters"] == nodes and first["stale"] is False
    assert first["switches"] == {"s1": False, "s2": False, "s3": False, "s4": False}
    t0 = time.monotonic()
    fake.masters[2] = "m1"  # m2's switch taken over: the service's own state did not move
    msg = next(stream)
    while msg["masters"]["s2"] != "m1":  # a message of some other change may come first
        msg = next(stream)
    assert msg["seq"] > first["seq"]
    assert time.monotonic() - t0 < 1.0
    fake.stale_ = True
    msg = next(stream)
    while not msg["stale"]:
        msg = next(stream)
    assert msg["masters"]["s2"] == "m1"
    stream.close()


# --- the page, in headless Chromium -------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    from tests.browser.conftest import CHROMEDRIVER, CHROMIUM, _require_browser

    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,800", "--no-first-run", "--disable-extensions",
                "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver: Any, api: Api) -> None:
    driver.get(f"{api.url}/")
    _wait_js(driver, "document.body.dataset.ready === 'true' && "
             "document.getElementById('live').classList.contains('on') && "
             "document.body.dataset.seq !== undefined", "the map to load and go live")


def _wait_js(driver: Any, script: str, what: str, timeout_s: float = 10.0) -> Any:
    return wait_until(lambda: driver.execute_script(f"return {script}"), timeout_s, what,
                      poll_s=0.05, detail=lambda: f"browser log: {driver.get_log('browser')}")


def _masters_drawn(driver: Any) -> dict[str, tuple[str, bool, str]]:
    """node -> (data-master, outlined in a master's colour, the outline's colour)"""
    return {k: tuple(v) for k, v in driver.execute_script(
        "return Object.fromEntries([...document.querySelectorAll('#nodes g.node')].map(g => "
        "[g.dataset.node, [g.getAttribute('data-master'), g.classList.contains('mastered'), "
        "getComputedStyle(g.querySelector('.sym')).stroke]]))").items()}


def test_page_colours_switches_by_master_with_a_legend(
        clustered: tuple[Api, FakeCluster], chromium: Any) -> None:
    api, fake = clustered
    driver = chromium
    try:
        _open(driver, api)
        _wait_js(driver, "!document.getElementById('masters').hidden", "the legend of masters")
        drawn = _masters_drawn(driver)
        assert {k: v[:2] for k, v in drawn.items()} == {
            "s1": ("m1", True), "s2": ("m2", True), "s3": ("m1", True), "s4": ("", False)}
        assert drawn["s1"][2] == drawn["s3"][2] != drawn["s2"][2] != drawn["s4"][2]
        legend = driver.execute_script(
            "return [...document.querySelectorAll('#masters [data-member]')].map(d => "
            "[d.dataset.member, d.textContent.trim()])")
        assert [m for m, _ in legend] == ["m1", "m2", "m3"]
        text = dict(legend)
        assert "2 switches" in text["m1"] and "answering" in text["m1"]
        assert "1 switch" in text["m2"] and "down" in text["m3"]
        title = driver.execute_script(
            "return document.querySelector('g.node[data-node=\"s2\"] title').textContent")
        assert "master m2" in title
        # m2 dies and m1 takes its switch over: recoloured and recounted without a reload
        fake.masters[2] = "m1"
        _wait_js(driver, "document.querySelector('g.node[data-node=\"s2\"]')"
                 ".getAttribute('data-master') === 'm1'", "s2 drawn as m1's", timeout_s=2.0)
        _wait_js(driver, "document.querySelector('#masters [data-member=\"m1\"]')"
                 ".textContent.includes('3 switches')", "the legend recounted", timeout_s=3.0)
        assert _masters_drawn(driver)["s2"][2] == drawn["s1"][2]
        assert not driver.execute_script("return !document.getElementById('stale').hidden")
        fake.stale_ = True
        _wait_js(driver, "!document.getElementById('stale').hidden", "the stale badge",
                 timeout_s=2.0)
        assert [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"] == []
    finally:
        driver.get("about:blank")  # close the page's stream before the server stops


def test_page_of_a_standalone_controller_has_no_masters_legend(
        diamond: Api, chromium: Any) -> None:
    driver = chromium
    try:
        _connect(diamond, "s1")
        _open(driver, diamond)
        _wait_js(driver, "document.querySelector('g.node[data-node=\"s1\"]')"
                 ".getAttribute('data-master') === 'standalone'", "s1's master read")
        assert driver.execute_script("return document.getElementById('masters').hidden")
        assert not any(mastered for _, mastered, _ in _masters_drawn(driver).values())
    finally:
        driver.get("about:blank")


def test_the_fake_has_the_shape_of_the_real_view(diamond: Api) -> None:
    """The fake keeps to the shape the project's own view gives (a drifted fake would test
    nothing): the same keys at every level as ``Standalone``'s status."""
    real = Standalone(diamond.service).status()
    fake = FakeCluster({1: "s1"}, {1: "m1"}).status()
    assert set(fake) == set(real)
    assert set(real["members"][0]) <= set(fake["members"][0])
    assert set(fake["switches"][0]) == set(real["switches"][0])
