"""Browser tests of the web map: headless Debian Chromium driven by selenium, against a real
API server on loopback (a real ControllerService, no switches; switch and port events are fed
to the service in this process as the os-ken app would).

Chromium is part of the test environment (scripts/setup.sh installs it): when it is missing the
tests fail with a message naming the Debian packages, they do not skip."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from waiting import wait_until

from controller.main import Controller, build_controller
from controller.network.service import ControllerService
from controller.settings import Settings
from controller.topology.files import topology_file, zoo_file
from controller.topology.model import Topology
from controller.topology.zoo import import_gml

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-token-0123456789"
WAIT_S = 10.0


@dataclass
class MapServer:
    handle: Controller
    service: ControllerService
    topology: Topology

    @property
    def url(self) -> str:
        return self.handle.url

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=f"{self.url}/api/v1", timeout=10.0,
                            headers={"Authorization": f"Bearer {TOKEN}"})

    def stop(self) -> None:
        self.handle.app.state.webmap.close()  # type: ignore[union-attr]
        self.handle.stop()


def serve(topology_path: Path, state_dir: Path, *, read_open: bool | None = None
          ) -> MapServer:
    """A real API server on a free loopback port (stop it with :meth:`MapServer.stop`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    token_file = state_dir / "token"
    token_file.write_text(f"{TOKEN}\n")
    settings = Settings.model_validate({
        "topology": {"file": str(topology_path)},
        "api": {"host": "127.0.0.1", "port": 0, "token_file": str(token_file)},
        "state": {"dir": str(state_dir)}})
    handle = build_controller(settings, read_open=read_open)
    return MapServer(handle, handle.service, handle.service.topology)


@pytest.fixture(scope="module")
def national(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MapServer]:
    srv = serve(topology_file("national"), tmp_path_factory.mktemp("national"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def kdl(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MapServer]:
    """The 754-node Kdl carrier map from the Topology Zoo, exported to YAML first."""
    d = tmp_path_factory.mktemp("kdl")
    path = d / "kdl.yaml"
    path.write_text(import_gml(zoo_file("Kdl")).to_yaml())
    srv = serve(path, d / "state")
    yield srv
    srv.stop()


def _require_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(f"browser tests need {', '.join(missing)}: install the Debian packages "
                    "'chromium' and 'chromium-driver' (apt-get install -y chromium "
                    "chromium-driver; scripts/setup.sh does)", pytrace=False)
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.fail("browser tests need selenium (pip install selenium; in the test extras)",
                    pytrace=False)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,900", "--hide-scrollbars", "--no-first-run",
                "--disable-extensions", "--disable-background-networking"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


OpenMap = Callable[[MapServer], Any]


@pytest.fixture
def open_map(browser: Any) -> Iterator[OpenMap]:
    """Load the map of a server and wait until it is drawn and the live stream is on."""

    def open_(srv: MapServer) -> Any:
        browser.get(f"{srv.url}/")
        wait_for(browser, lambda d: d.execute_script(
            "return document.body.dataset.ready === 'true' && "
            "document.getElementById('live').classList.contains('on') && "
            "document.body.dataset.seq !== undefined"), "the map to load and go live")
        return browser

    yield open_
    # leave the page so its stream closes before the server stops
    browser.get("about:blank")


def wait_for(driver: Any, cond: Callable[[Any], Any], what: str, timeout_s: float = WAIT_S
             ) -> Any:
    """:func:`waiting.wait_until` on ``cond(driver)``, polling every 50 ms; an element not (yet)
    on the page counts as "not yet", and a timeout shows the browser's console log."""
    from selenium.common.exceptions import NoSuchElementException

    return wait_until(lambda: cond(driver), timeout_s, what, poll_s=0.05,
                      detail=lambda: f"browser log: {driver.get_log('browser')}",
                      ignore=(NoSuchElementException,))


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    return path

