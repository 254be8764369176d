"""A real API server on loopback: a real ControllerService (no switches connected) built from a
shipped topology, a real SQLite store in tmp_path, uvicorn in a thread on a free port; with
``make_api(cluster=view)`` the app reads the cluster through that view instead of the
standalone one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from controller.api.rest import create_app
from controller.api.server import serve_in_thread
from controller.cluster.view import ClusterView
from controller.main import Controller, build_controller
from controller.network.service import ControllerService
from controller.settings import Settings
from controller.topology.files import topologies_dir, topology_file

ROOT = Path(__file__).resolve().parents[2]
TOPOLOGIES = topologies_dir()
TOKEN = "test-token-0123456789"
ERROR_KEYS = {"error", "detail", "errors", "best_latency_ms", "bottleneck", "required_role"}


@dataclass
class Api:
    handle: Controller
    service: ControllerService
    state_dir: Path
    token: str

    @property
    def url(self) -> str:
        return self.handle.url

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=f"{self.url}/api/v1", headers=headers, timeout=10.0)

    def stop(self) -> None:
        self.handle.stop()


MakeApi = Callable[..., Api]


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[MakeApi]:
    started: list[Api] = []
    token_file = tmp_path / "token"
    token_file.write_text(f"{TOKEN}\n")

    def make(topology: str = "diamond", *, state_dir: Path | None = None,
             read_open: bool | None = None, token_file_: Path | None = token_file,
             cluster: ClusterView | None = None) -> Api:
        state = state_dir if state_dir is not None else tmp_path / "state"
        settings = Settings.model_validate({
            "topology": {"file": str(topology_file(topology))},
            "api": {"host": "127.0.0.1", "port": 0,
                    "token_file": str(token_file_) if token_file_ is not None else None},
            "state": {"dir": str(state)}})
        handle = build_controller(settings, read_open=read_open)
        if handle.steering.metrics_plane is not None:
            # no metrics scraper: a fuzzed metrics_url must not send the test off loopback
            # (tests/api/test_site_metrics_api.py runs its own planes against local servers)
            handle.steering.metrics_plane.stop()
        if cluster is not None:
            # build_controller serves the standalone view; the same parts (service, store,
            # intents, steering) are served again by an app reading the given view
            handle.api.stop()
            app = create_app(handle.service, intents=handle.intents, steering=handle.steering,
                             store=handle.store,
                             token=TOKEN if token_file_ is not None else None,
                             read_open=True if read_open is None else read_open,
                             cluster=cluster)
            handle.api = serve_in_thread(app, "127.0.0.1", 0)
        api = Api(handle, handle.service, state, TOKEN)
        started.append(api)
        return api

    yield make
    for api in started:
        api.stop()


@pytest.fixture
def diamond(make_api: MakeApi) -> Api:
    return make_api("diamond")


@pytest.fixture
def national(make_api: MakeApi) -> Api:
    return make_api("national")


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    """The one error shape: {"error": code, "detail": text} (+ errors, best_latency_ms)."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) <= ERROR_KEYS and {"error", "detail"} <= set(body), body
    assert isinstance(body["error"], str) and isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["error"] == code, body
    return body
