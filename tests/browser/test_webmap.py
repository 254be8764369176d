"""The web map in headless Chromium: drawn from the topology, paths as the API computes them,
live link state, intents installed from the page."""

from __future__ import annotations

import time
from typing import Any

from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from waiting import wait_until

from tests.browser.conftest import TOKEN, MapServer, OpenMap, screenshot, wait_for


def _severe(driver: Any) -> list[dict[str, Any]]:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _attr(driver: Any, css: str, name: str) -> str | None:
    """An attribute read in one step (the live page may replace the element at any time)."""
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); "
        "return e ? e.getAttribute(arguments[1]) : null", css, name)


def _click(driver: Any, css: str) -> None:
    """Click an element the live page may re-render in between (found afresh each try)."""
    def click() -> bool:
        driver.find_element(By.CSS_SELECTOR, css).click()
        return True

    wait_until(click, 0.5, f"{css} clicked before the page replaced it", poll_s=0.05,
               ignore=(StaleElementReferenceException,))


def _drawn(driver: Any) -> tuple[list[str], list[int]]:
    nodes = driver.execute_script(
        "return [...document.querySelectorAll('#nodes g.node')].map(e => e.dataset.node)")
    links = driver.execute_script(
        "return [...document.querySelectorAll('#links line.link')].map(e => +e.dataset.link)")
    return nodes, links


def _check_drawn(driver: Any, srv: MapServer) -> None:
    with srv.client() as c:
        topo = c.get("/topology").json()
    nodes, links = _drawn(driver)
    assert len(nodes) == len(topo["nodes"]) == len(srv.topology.nodes)
    assert sorted(nodes) == sorted(n["name"] for n in topo["nodes"])
    assert len(links) == len(topo["links"]) == len(srv.topology.links)
    assert sorted(links) == [lk["index"] for lk in topo["links"]]
    # every node is inside the drawing area and no two share a position
    pos = driver.execute_script(
        "return [...document.querySelectorAll('#nodes g.node')].map(e => "
        "[+e.dataset.x, +e.dataset.y])")
    assert all(0 <= x <= 1000 and 0 <= y <= 700 for x, y in pos), pos[:5]
    assert len({(round(x, 1), round(y, 1)) for x, y in pos}) == len(pos)


def test_page_loads_without_console_errors(national: MapServer, open_map: OpenMap) -> None:
    driver = open_map(national)
    driver.get_log("browser")  # drain, then reload: only this load counts
    driver.refresh()
    wait_for(driver, lambda d: d.execute_script(
        "return document.body.dataset.ready === 'true' && document.body.dataset.seq"),
        "the map to load")
    time.sleep(0.3)  # the scenario: errors that a loaded page logs late would show by now
    assert _severe(driver) == []
    assert driver.title.startswith("CPN controller")
    assert driver.find_element(By.ID, "live").text == "live"
    # the kinds of the national backbone each get their symbol in the legend
    legend = driver.find_element(By.ID, "legend").text
    for label in ("national hub", "data-center cluster", "direct connection point",
                  "exchange center", "city"):
        assert label in legend
    rows = [e.get_attribute("data-site")
            for e in driver.find_elements(By.CSS_SELECTOR, "#sites tbody tr")]
    with national.client() as c:
        r = c.get("/compute-sites")  # the compute API, where this controller has it
    want = ([s["id"] for s in r.json()] if r.status_code == 200
            else [s.id for s in national.topology.compute_sites])
    assert rows == want and len(rows) > 0


def test_national_drawn_from_topology(national: MapServer, open_map: OpenMap) -> None:
    driver = open_map(national)
    _check_drawn(driver, national)
    hubs = driver.find_elements(By.CSS_SELECTOR, 'g.node[data-kind="national_hub"]')
    assert len(hubs) == len(national.topology.nodes_of_kind("national_hub")) > 0
    screenshot(driver, "webmap-national.png")


def test_kdl_drawn_from_topology(kdl: MapServer, open_map: OpenMap) -> None:
    driver = open_map(kdl)
    _check_drawn(driver, kdl)
    assert _severe(driver) == []
    labels = driver.find_element(By.ID, "labels")
    assert not labels.is_displayed()  # 754 labels at full view would be unreadable
    screenshot(driver, "webmap-kdl.png")
    # zoomed in on the densest part, the labels appear
    driver.execute_script("""
        const svg = document.getElementById('map'), r = svg.getBoundingClientRect();
        for (let i = 0; i < 9; i++) svg.dispatchEvent(new WheelEvent('wheel', {deltaY: -100,
            clientX: r.left + r.width * 0.45, clientY: r.top + r.height * 0.45,
            bubbles: true, cancelable: true}));""")
    assert labels.is_displayed()
    screenshot(driver, "webmap-kdl-zoomed.png")


def _ask_path(driver: Any, src: str, dst: str, bound: str) -> None:
    for field, value in (("src", src), ("dst", dst), ("max-latency", bound)):
        e = driver.find_element(By.ID, field)
        e.clear()
        e.send_keys(value)
    driver.execute_script("document.getElementById('path-result').dataset.status = ''")
    # Enter in the bound field submits the form (a click on the button can land on the
    # names drop-down of the field above it)
    driver.find_element(By.ID, "max-latency").send_keys(Keys.ENTER)
    wait_for(driver, lambda d: d.find_element(By.ID, "path-result").get_attribute(
        "data-status"), "the path answer")


def test_path_drawn_as_the_api_computes_it(national: MapServer, open_map: OpenMap) -> None:
    driver = open_map(national)
    src, dst = "hub-jjj", national.topology.nodes[-1].name
    with national.client() as c:
        best = c.get("/paths", params={"src": src, "dst": dst}).json()["paths"][0]
        bound = f"{best['latency_ms'] * 1.3:.3f}"
        want = c.get("/paths", params={"src": src, "dst": dst,
                                       "max_latency_ms": bound}).json()["paths"][0]
    _ask_path(driver, src, dst, bound)
    route = driver.find_element(By.ID, "route")
    assert route.get_attribute("data-nodes").split(",") == want["nodes"]
    on_route = driver.execute_script(
        "return [...document.querySelectorAll('line.link.on-route')].map(e => "
        "[e.dataset.a, e.dataset.b])")
    pairs = {frozenset(p) for p in zip(want["nodes"], want["nodes"][1:], strict=False)}
    assert {frozenset(p) for p in on_route} == pairs
    text = driver.find_element(By.ID, "path-result").text
    assert f"{want['latency_ms']:.3f}".rstrip("0").rstrip(".") in text
    assert driver.find_element(By.ID, "install").is_enabled()

    # a bound below the best latency: the API's 409 reason, and no route drawn
    low = f"{best['latency_ms'] / 2:.3f}"
    with national.client() as c:
        r = c.get("/paths", params={"src": src, "dst": dst, "max_latency_ms": low})
    assert r.status_code == 409
    _ask_path(driver, src, dst, low)
    result = driver.find_element(By.ID, "path-result")
    assert result.get_attribute("data-status") == "409"
    assert r.json()["detail"] in result.text
    assert driver.find_elements(By.ID, "route") == []
    assert not driver.find_element(By.ID, "install").is_enabled()


def test_latency_circle_highlights_the_api_answer(national: MapServer,
                                                  open_map: OpenMap) -> None:
    driver = open_map(national)
    center = driver.find_element(By.ID, "circle-center").get_attribute("value")
    with national.client() as c:
        circle = c.get("/latency-circles",
                       params={"center": center, "max_latency_ms": 5}).json()
    want = {n["name"] for n in circle["circles"][0]["tiers"][0]["nodes"]}
    driver.find_element(By.CSS_SELECTOR, '#tiers button[data-tier="5"]').click()
    wait_for(driver, lambda d: d.find_element(By.ID, "circle-result").get_attribute(
        "data-count"), "the circle")
    inside = driver.execute_script(
        "return [...document.querySelectorAll('g.node.in-circle')].map(e => e.dataset.node)")
    assert set(inside) == want and center in want


def test_link_down_drawn_dashed_within_two_seconds(national: MapServer,
                                                   open_map: OpenMap) -> None:
    driver = open_map(national)
    svc = national.service
    wiring = svc.core.state.wiring
    i = 0
    a, b = wiring.link_ends[i]
    port_a = wiring.link_ports[i][0]
    line = f'line.link[data-link="{i}"]'
    assert driver.find_element(By.CSS_SELECTOR, line).get_attribute("data-up") == "true"
    handles = {}
    for node in (a, b):  # the two switches connect, as the os-ken app reports it
        dpid = wiring.node_dpid[node]
        handles[node] = object()
        assert svc.switch_connected(dpid, {p: True for p in wiring.ports_of(dpid)},
                                    handles[node])
    wait_for(driver, lambda d: d.find_element(
        By.CSS_SELECTOR, f'g.node[data-node="{a}"]').get_attribute("data-connected") == "true",
        "the switch drawn connected", timeout_s=2.0)
    t0 = time.monotonic()
    svc.port_status(wiring.node_dpid[a], port_a, False, handles[a])
    with national.client() as c:
        assert c.get("/topology").json()["links"][i]["up"] is False
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, line).get_attribute(
        "data-up") == "false", "the link drawn down", timeout_s=2.0)
    elapsed_s = time.monotonic() - t0
    dash = driver.execute_script(
        f"return getComputedStyle(document.querySelector('{line}')).strokeDasharray")
    assert dash not in ("", "none"), dash
    assert elapsed_s < 2.0
    # and back up: solid again
    svc.port_status(wiring.node_dpid[a], port_a, True, handles[a])
    wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, line).get_attribute(
        "data-up") == "true", "the link drawn up again", timeout_s=2.0)
    assert driver.execute_script(
        f"return getComputedStyle(document.querySelector('{line}')).strokeDasharray") == "none"


def test_intent_installed_from_the_page(national: MapServer, open_map: OpenMap) -> None:
    driver = open_map(national)
    src, dst = "city-beijing", "dc-qingyang"
    nodes = {n.name for n in national.topology.nodes}
    if src not in nodes or dst not in nodes:
        src, dst = national.topology.nodes[1].name, national.topology.nodes[-2].name
    with national.client() as c:
        before = {i["id"] for i in c.get("/intents").json()}
    token = driver.find_element(By.ID, "token")
    token.clear()
    token.send_keys(TOKEN)
    _ask_path(driver, src, dst, "40")
    assert driver.find_element(By.ID, "path-result").get_attribute("data-status") == "200"
    driver.find_element(By.ID, "install").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "path-result").get_attribute(
        "data-intent"), "the intent to be added")
    iid = int(driver.find_element(By.ID, "path-result").get_attribute("data-intent"))
    with national.client() as c:
        intents = {i["id"]: i for i in c.get("/intents").json()}
    assert iid not in before and iid in intents
    it = intents[iid]
    host = {h.node: h.name for h in reversed(national.topology.hosts)}
    assert (it["src"], it["dst"], it["max_latency_ms"]) == (host[src], host[dst], 40.0)
    assert it["source"] == "api"
    # listed, and selecting it draws its path
    row = f'#intents tbody tr[data-intent="{iid}"]'
    wait_for(driver, lambda d: _attr(d, row, "data-state"), "the intent row")
    assert _attr(driver, row, "data-state") == it["state"]
    if it["path"]:
        drawn = _attr(driver, f'.route.intent[data-intent="{iid}"]', "data-nodes")
        assert drawn.split(",") == it["path"]
    assert driver.execute_script("return sessionStorage.getItem('cpn-token')") == TOKEN


def test_reroute_moves_the_selected_intent_live(national: MapServer, open_map: OpenMap) -> None:
    driver = open_map(national)
    svc = national.service
    with national.client() as c:
        it = next(i for i in c.get("/intents").json() if i["path"] and len(i["path"]) >= 3)
    iid, old_path = it["id"], it["path"]
    _click(driver, f'#intents tbody tr[data-intent="{iid}"]')
    drawn = f'.route.intent[data-intent="{iid}"]'
    assert _attr(driver, drawn, "data-nodes").split(",") == old_path
    # cut the first link of its path, as a port-status from the switch would
    wiring = svc.core.state.wiring
    a, b = old_path[0], old_path[1]
    i = next(k for k, ends in enumerate(wiring.link_ends) if set(ends) == {a, b})
    handles = {}
    for node in (a, b):
        dpid = wiring.node_dpid[node]
        handles[node] = object()
        assert svc.switch_connected(dpid, {p: True for p in wiring.ports_of(dpid)},
                                    handles[node])
    end = wiring.link_ends[i][0]
    svc.port_status(wiring.node_dpid[end], wiring.link_ports[i][0], False, handles[end])
    with national.client() as c:
        new_path = c.get(f"/intents/{iid}").json()["path"]
    assert new_path and new_path != old_path
    wait_for(driver, lambda d: (_attr(d, drawn, "data-nodes") or "").split(",") == new_path,
             "the rerouted path drawn", timeout_s=2.0)
    assert "path change" in driver.find_element(By.ID, "intent-detail").text
    svc.port_status(wiring.node_dpid[end], wiring.link_ports[i][0], True, handles[end])
