"""Bandwidth admission over the API: 409 naming the bottleneck link; release on delete."""

from __future__ import annotations

from .conftest import Api, assert_error


def _reserved(c: object, a: str, b: str) -> float:
    links = c.get("/topology").json()["links"]  # type: ignore[attr-defined]
    return next(lk["reserved_mbps"] for lk in links if {lk["a"], lk["b"]} == {a, b})


def test_bandwidth_that_does_not_fit_is_409_with_the_bottleneck(diamond: Api) -> None:
    with diamond.client() as c:
        ok = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 3,
                                      "min_bandwidth_mbps": 700, "priority": 200})
        assert ok.status_code == 201 and ok.json()["path"] == ["s1", "s2", "s4"]
        assert _reserved(c, "s1", "s2") == 700
        before = c.get("/intents").json()
        body = assert_error(c.post("/intents", json={
            "src": "h1", "dst": "h2", "max_latency_ms": 3, "min_bandwidth_mbps": 400,
            "priority": 210}), 409, "insufficient_bandwidth")
        assert body["bottleneck"]["residual_mbps"] == 300
        assert body["bottleneck"]["link"] in ("s1-s2", "s2-s4")
        assert "300 of 1000 Mbps" in body["detail"]
        assert c.get("/intents").json() == before  # nothing changed, nothing stored
        assert [i for i, _ in diamond.handle.store.intents()] == [ok.json()["id"]]
        # released on delete: the same request now fits
        assert c.delete(f"/intents/{ok.json()['id']}").status_code == 200
        assert _reserved(c, "s1", "s2") == 0
        again = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 3,
                                         "min_bandwidth_mbps": 400, "priority": 210})
        assert again.status_code == 201 and again.json()["path"] == ["s1", "s2", "s4"]
        assert _reserved(c, "s1", "s2") == 400
