"""The live stream behind the map (/api/v1/stream) and the page's routes, over plain HTTP."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ROOT, TOKEN, MapServer, serve

DIAMOND = ROOT / "topologies" / "diamond.yaml"


class StreamReader:
    """Reads one SSE stream in a thread; ``messages`` gets each ``state`` message's data,
    then None when the stream ends."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.status: int | None = None
        self.content_type = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url, headers or {}),
                                        daemon=True)
        self._thread.start()
        assert self._ready.wait(5.0), "no answer from the stream"

    def _run(self, url: str, headers: dict[str, str]) -> None:
        try:
            with httpx.Client(timeout=httpx.Timeout(5.0, read=30.0)) as c, \
                    c.stream("GET", url, headers=headers) as r:
                self.status = r.status_code
                self.content_type = r.headers.get("content-type", "")
                self._ready.set()
                if r.status_code != 200:
                    return
                data: list[str] = []
                for line in r.iter_lines():
                    if line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and data:
                        self.messages.put(json.loads("\n".join(data)))
                        data = []
        except httpx.HTTPError:
            pass
        finally:
            self._ready.set()
            self.messages.put(None)

    def next(self, timeout_s: float = 2.0) -> dict[str, Any] | None:
        return self.messages.get(timeout=timeout_s)

    def join(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


@pytest.fixture
def diamond(tmp_path: Path) -> Iterator[MapServer]:
    srv = serve(DIAMOND, tmp_path / "state")
    yield srv
    srv.stop()


def _connect(srv: MapServer) -> dict[Any, Any]:
    """Connect every switch with all its ports up (as the os-ken app reports it)."""
    wiring = srv.service.core.state.wiring
    handles: dict[Any, Any] = {}
    for node in srv.topology.nodes:
        dpid = wiring.node_dpid[node.name]
        handles[node.name] = object()
        assert srv.service.switch_connected(dpid, {p: True for p in wiring.ports_of(dpid)},
                                            handles[node.name])
    return handles


def test_stream_sends_the_state_then_each_change_within_a_second(diamond: MapServer) -> None:
    reader = StreamReader(f"{diamond.url}/api/v1/stream")
    assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
    first = reader.next()
    assert first is not None
    assert [lk["index"] for lk in first["links"]] == list(range(len(diamond.topology.links)))
    assert all(lk["up"] for lk in first["links"])
    assert set(first["switches"]) == {n.name for n in diamond.topology.nodes}
    assert not any(first["switches"].values())
    assert [i["id"] for i in first["intents"]] == [i.id for i in diamond.service.intents()]

    handles = _connect(diamond)
    msg = reader.next()
    while msg is not None and not all(msg["switches"].values()):
        msg = reader.next()
    assert msg is not None and all(msg["switches"].values())

    wiring = diamond.service.core.state.wiring
    a, _ = wiring.link_ends[0]
    t0 = time.monotonic()
    diamond.service.port_status(wiring.node_dpid[a], wiring.link_ports[0][0], False, handles[a])
    msg = reader.next()
    while msg is not None and msg["links"][0]["up"]:
        msg = reader.next()
    elapsed_s = time.monotonic() - t0
    assert msg is not None and msg["links"][0]["up"] is False
    assert elapsed_s < 1.0, elapsed_s
    assert any(e["kind"] == "link_down" and e.get("link") == 0 for e in msg["events"])
    assert all(lk["up"] for lk in msg["links"][1:])


def test_one_poller_serves_every_stream_and_idle_state_sends_nothing(
        diamond: MapServer) -> None:
    hub = diamond.handle.app.state.webmap  # type: ignore[union-attr]
    readers = [StreamReader(f"{diamond.url}/api/v1/stream") for _ in range(3)]
    firsts = [r.next() for r in readers]
    assert all(f is not None for f in firsts)
    assert hub.subscribers == 3
    polls0 = hub.polls
    time.sleep(1.0)  # the measured second
    polls = hub.polls - polls0
    # one shared poller at 4 Hz: about 4 polls a second whatever the number of streams
    assert 1 <= polls <= 6, polls
    for r in readers:  # nothing changed: no message (keep-alives are comments)
        with pytest.raises(queue.Empty):
            r.messages.get_nowait()


def test_close_ends_every_stream_and_refuses_new_ones(diamond: MapServer) -> None:
    hub = diamond.handle.app.state.webmap  # type: ignore[union-attr]
    readers = [StreamReader(f"{diamond.url}/api/v1/stream") for _ in range(2)]
    for r in readers:
        assert r.next() is not None
    t0 = time.monotonic()
    hub.close()
    for r in readers:
        assert r.next() is None  # the stream ended
        assert r.join(2.0)
    assert time.monotonic() - t0 < 1.0
    with httpx.Client(timeout=5.0) as c:
        r = c.get(f"{diamond.url}/api/v1/stream")
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    # the server stops at once (no open stream to wait for)
    t0 = time.monotonic()
    diamond.handle.stop()
    assert time.monotonic() - t0 < 1.5


def test_stream_needs_the_token_when_reads_do(tmp_path: Path) -> None:
    srv = serve(DIAMOND, tmp_path / "state", read_open=False)
    try:
        with httpx.Client(base_url=srv.url, timeout=5.0) as c:
            assert c.get("/api/v1/stream").status_code == 401
            assert c.get("/api/v1/topology").status_code == 401
            # the page and its assets hold no data: served; the page sends the token
            assert c.get("/").status_code == 200
        reader = StreamReader(f"{srv.url}/api/v1/stream",
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert reader.status == 200
        assert reader.next() is not None
    finally:
        srv.stop()


def test_page_and_assets_are_served_from_the_package(diamond: MapServer) -> None:
    web = ROOT / "controller" / "api" / "web"
    with httpx.Client(base_url=diamond.url, timeout=5.0) as c:
        page = c.get("/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.text == (web / "index.html").read_text()
        for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
            r = c.get(f"/static/{name}")
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
            assert r.text == (web / name).read_text()
        for bad in ("/static/nope.js", "/static/index.html", "/static/..%2Fwebmap.py"):
            assert c.get(bad).status_code == 404, bad
    # no asset from elsewhere: every src/href of the page is local
    assert "http://" not in page.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page.text


def test_missing_chromium_fails_naming_the_debian_packages(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.browser import conftest

    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    with pytest.raises(pytest.fail.Exception) as info:
        conftest._require_browser()
    assert "'chromium'" in str(info.value) and "'chromium-driver'" in str(info.value)


def test_server_stop_ends_open_streams_at_once(diamond: MapServer) -> None:
    reader = StreamReader(f"{diamond.url}/api/v1/stream")
    assert reader.next() is not None
    t0 = time.monotonic()
    diamond.handle.stop()  # ApiHandle.stop closes the web map's streams first
    assert reader.next() is None and reader.join(2.0)
    assert time.monotonic() - t0 < 1.0
