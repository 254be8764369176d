"""The web map's compute site table shows each site's live metrics: the CATS score of a site
that reported (the number the API shows), ``stale`` for one that never did."""

from __future__ import annotations

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
