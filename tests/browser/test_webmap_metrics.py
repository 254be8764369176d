"""The web map shows live measurements: in the compute site table the CATS score of a site
that reported (the number the API shows), ``stale`` for one that never did; in the intents
table an SLA badge on an intent whose measured latency is over its bound."""

from __future__ import annotations

import time

from controller.network.sla import SlaMonitor
from tests.browser.conftest import MapServer, OpenMap, wait_for


def test_site_rows_show_the_score_or_stale(national: MapServer, open_map: OpenMap) -> None:
    with national.client() as c:
        sites = [s["id"] for s in c.get("/compute-sites").json()]
        r = c.put(f"/compute-sites/{sites[0]}/metrics",
                  json={"utilisation": 0.5, "compute_delay_ms": 10.0, "free_capacity": 1.0,
                        "healthy": True})
        assert r.status_code == 200, r.text
        score = r.json()["metrics"]["levels"]["score"]
    driver = open_map(national)

    def row(site: str) -> dict[str, str] | None:
        return driver.execute_script(
            "const tr = document.querySelector(`#sites tr[data-site='${arguments[0]}']`);"
            "return tr ? {score: tr.dataset.score, stale: tr.dataset.stale,"
            " text: tr.lastElementChild.textContent} : null", site)

    shown = wait_for(driver, lambda d: (lambda x: x if x and x["score"] else None)(
        row(sites[0])), "the reporting site's score")
    assert float(shown["score"]) == score and shown["stale"] == "false"
    assert shown["text"] == f"{score:.2f}".rstrip("0").rstrip(".")
    silent = row(sites[1])
    assert silent is not None and silent["stale"] == "true" and silent["text"] == "stale"


def test_an_intent_over_its_bound_shows_the_sla_badge(national: MapServer,
                                                      open_map: OpenMap) -> None:
    with national.client() as c:
        intent = next(i for i in c.get("/intents").json() if i["path"])
        a, b = intent["path"][:2]
        index = next(i for i, lk in enumerate(national.topology.links) if {lk.a, lk.b} == {a, b})
        r = c.put(f"/links/{index}/measurements", json={"a_to_b": {"delay_ms": 1000.0},
                                                        "b_to_a": {"delay_ms": 1000.0}})
        assert r.status_code == 200, r.text
    driver = open_map(national)
    core = national.service.core
    core.sla = SlaMonitor(samples=1, alpha=1.0, interval_s=1.0)
    with national.service.lock:  # one SLA round (the os-ken app's tick does it every second)
        core.sla_sample(time.monotonic())
    css = f"#intents tr[data-intent='{intent['id']}']"
    wait_for(driver, lambda d: d.execute_script(
        "const tr = document.querySelector(arguments[0]);"
        "return tr && tr.dataset.sla === 'violated' && tr.querySelector('.sla-violated')", css),
        "the SLA badge on the intent's row")


def test_a_new_report_reaches_the_open_page_without_a_reload(national: MapServer,
                                                            open_map: OpenMap) -> None:
    with national.client() as c:
        site = [s["id"] for s in c.get("/compute-sites").json()][2]
    driver = open_map(national)

    def shown() -> str | None:
        return driver.execute_script(
            "const tr = document.querySelector(`#sites tr[data-site='${arguments[0]}']`);"
            "return tr ? (tr.dataset.score || null) : null", site)

    wait_for(driver, lambda d: driver.execute_script(
        "return document.querySelector(`#sites tr[data-site='${arguments[0]}']`)", site),
        "the site's row")
    marker = driver.execute_script("return document.body.dataset.seq")
    scores = []
    for delay in (5.0, 40.0):                 # two reports, the page open all along
        with national.client() as c:
            r = c.put(f"/compute-sites/{site}/metrics",
                      json={"utilisation": 0.3, "compute_delay_ms": delay,
                            "free_capacity": 1.0, "healthy": True})
            assert r.status_code == 200, r.text
            scores.append(r.json()["metrics"]["levels"]["score"])
        wait_for(driver, lambda d, want=scores[-1]: shown() == str(want) or (
            shown() is not None and float(shown()) == want), "the site's new score")
    assert scores[0] != scores[1]
    assert driver.execute_script("return document.body.dataset.seq") != marker


def test_an_assignment_over_its_bound_is_marked_in_the_services_list(
        national: MapServer, open_map: OpenMap) -> None:
    steering = national.handle.steering
    with national.client() as c:
        r = c.post("/services", json={"name": "sla-map", "anycast_ip": "10.255.0.9",
                                      "kind": "intelligent", "demand_per_client": 0.01,
                                      "max_latency_ms": 20.0})
        assert r.status_code == 201, r.text
        a = c.post("/services/sla-map/assignments", json={"client": "h-city-lanzhou"}).json()
        first = next(i for i, lk in enumerate(national.topology.links)
                     if {lk.a, lk.b} == set(a["path"][:2]))
        slow = {"delay_ms": 500.0}
        assert c.put(f"/links/{first}/measurements",
                     json={"a_to_b": slow, "b_to_a": slow}).status_code == 200
    driver = open_map(national)
    try:
        # the steering worker samples every rebalance look (2 s): violated after 3 samples
        css = "#services ul.assignments li.sla-violated"
        wait_for(driver, lambda d: d.execute_script(
            "const li = document.querySelector(arguments[0]);"
            "return li && li.textContent.startsWith('h-city-lanzhou')", css),
            "the violated assignment marked in the services list",
            timeout_s=3 * steering.rebalance_interval_s + 6.0)
        with national.client() as c:
            [row] = c.get("/services/sla-map/assignments").json()
        assert row["sla"]["state"] == "violated" and row["sla"]["measured_ms"] > 500.0
        assert any(e["kind"] == "sla_violation" and e.get("service") == "sla-map"
                   for e in national.service.events())
    finally:
        with national.client() as c:
            c.delete("/services/sla-map")
            c.put(f"/links/{first}/measurements", json={"a_to_b": {"delay_ms": 0.1},
                                                         "b_to_a": {"delay_ms": 0.1}})
