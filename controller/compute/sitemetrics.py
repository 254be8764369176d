"""The sites' live metrics in a running controller: push, pull (scrape), and the API's view.

* **Push** (:meth:`SiteMetricsPlane.push`): ``PUT /api/v1/compute-sites/{id}/metrics``. The
  body is checked by :func:`~controller.compute.metrics.parse_metrics`; nonsense raises 400
  and the site keeps its last good metrics.
* **Pull** (:meth:`SiteMetricsPlane.scrape_once`, every ``interval_s`` in one thread started
  by :meth:`SiteMetricsPlane.start`): each site with a ``metrics_url`` is fetched with
  ``timeout_s`` (https verifies the certificate against the system's CAs) and read as
  Prometheus text exposition: gauges ``cpn_site_utilisation``, ``cpn_site_compute_delay_ms``,
  ``cpn_site_free_capacity``, ``cpn_site_healthy`` (1 or 0), and any other ``cpn_site_*``
  gauge kept as an extra field (name without the prefix); other families are ignored. A
  site that answers garbage, an HTTP error or nothing within the timeout keeps its last good
  metrics and gets a scrape state (``error``, ``last_success_age_s``); the scraper logs it
  and goes on with the next site, never ending on an error.
* **View** (:meth:`SiteMetricsPlane.view`): per site ``metrics`` with ``source``, ``age_s``,
  ``stale`` (older than three intervals, or never reported), ``levels`` (the CATS levels)
  and, for a pulled site, ``scrape``.

Metrics are soft state kept in this member's memory, never in the store: a report every few
seconds per site through etcd would make every member rebuild its compute state that often.
In a cluster every member scrapes the pulled sites itself; a pushing site pushes to each
member (or through a load balancer to any, then only that member sees it fresh).
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from controller.compute.metrics import SiteMetrics, age_s, is_fresh, levels, parse_metrics
from controller.errors import ComputeSiteError

if TYPE_CHECKING:
    from controller.compute.steering import Steering

__all__ = ["MAX_SCRAPE_BYTES", "PROM_PREFIX", "SiteMetricsPlane", "parse_prometheus"]

log = logging.getLogger("controller.compute.sitemetrics")

PROM_PREFIX = "cpn_site_"
MAX_SCRAPE_BYTES = 1 << 20
"""a metrics page larger than this (1 MiB) is refused as garbage"""

Fetch = Callable[[str, float], bytes]


def parse_prometheus(text: str) -> dict[str, Any]:
    """The ``cpn_site_*`` gauges of a Prometheus text page as a metrics body (for
    :func:`parse_metrics`): the unlabelled sample of each family, else its first;
    ``healthy`` 1/0 becomes true/false. :class:`ComputeSiteError` for text the parser
    refuses or a page without ``cpn_site_`` families."""
    body: dict[str, Any] = {}
    try:
        for family in text_string_to_metric_families(text):
            if not family.name.startswith(PROM_PREFIX) or not family.samples:
                continue
            samples = [s for s in family.samples if s.name == family.name] or family.samples
            plain = [s for s in samples if not s.labels]
            body[family.name[len(PROM_PREFIX):]] = float((plain or samples)[0].value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ComputeSiteError(f"not Prometheus text exposition: {exc}") from None
    if not body:
        raise ComputeSiteError(f"no {PROM_PREFIX}* metrics on the page")
    if "healthy" in body:
        h = body["healthy"]
        if h not in (0.0, 1.0):
            raise ComputeSiteError(f"metrics field 'healthy' must be 1 or 0, got {h!r}")
        body["healthy"] = h == 1.0
    return body


def _fetch(url: str, timeout_s: float) -> bytes:
    ctx = ssl.create_default_context() if url.startswith("https:") else None
    req = urllib.request.Request(url, headers={"Accept": "text/plain"})
    with urllib.request.urlopen(req, timeout=timeout_s, context=ctx) as resp:  # noqa: S310
        data: bytes = resp.read(MAX_SCRAPE_BYTES + 1)
    if len(data) > MAX_SCRAPE_BYTES:
        raise ComputeSiteError(f"metrics page larger than {MAX_SCRAPE_BYTES} bytes")
    return data


class SiteMetricsPlane:
    """Live metrics of ``steering``'s sites (thread-safe: the registry is read and written
    under the controller's lock). ``clock``: monotonic seconds; ``fetch``: ``(url,
    timeout_s) -> bytes`` (tests pass their own only to count calls; the default is
    urllib)."""

    def __init__(self, steering: Steering, *, interval_s: float = 5.0, timeout_s: float = 2.0,
                 stale_policy: str = "no_new_clients",
                 clock: Callable[[], float] = time.monotonic, fetch: Fetch = _fetch) -> None:
        self.steering = steering
        self.interval_s = interval_s
        self.timeout_s = min(timeout_s, interval_s)
        self.stale_policy = stale_policy
        self.clock = clock
        self.fetch = fetch
        self._scrape: dict[str, dict[str, Any]] = {}
        """site id -> {url, error, last_success, last_attempt} (under ``_lock``)"""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        steering.metrics_plane = self

    # -- in ---------------------------------------------------------------------------------
    def push(self, site_id: str, body: Any) -> dict[str, Any]:
        """Take a site's pushed report; its view. 404 unknown site, 400 nonsense (the last
        good metrics stay)."""
        with self.steering.service.network():
            self.steering.registry.site(site_id)  # 404 before 400
        m = parse_metrics(body, self.clock(), "push")
        with self.steering.service.network():
            self.steering.registry.set_metrics(site_id, m)
        return {"id": site_id, "metrics": self.view(site_id)}

    def scrape_once(self) -> dict[str, str | None]:
        """Scrape every site with a ``metrics_url`` once; site id -> None (ok) or the error."""
        with self.steering.service.network():
            targets = [(s.id, s.metrics_url) for s in self.steering.registry.sites()
                       if s.metrics_url]
        out: dict[str, str | None] = {}
        for site_id, url in targets:
            if self._stop.is_set():
                break
            assert url is not None
            start = self.clock()
            error: str | None = None
            try:
                text = self.fetch(url, self.timeout_s).decode("utf-8")
                m = parse_metrics(parse_prometheus(text), self.clock(), "pull")
                with self.steering.service.network():
                    if site_id in self.steering.registry:
                        self.steering.registry.set_metrics(site_id, m)
            except ComputeSiteError as exc:
                error = str(exc)
            except UnicodeDecodeError:
                error = "the page is not UTF-8 text"
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                error = f"no answer: {reason}"
            except Exception as exc:  # a scraper that dies leaves every site stale
                log.exception(f"scraping {site_id} failed", extra={"event": "scrape_failed"})
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                st = self._scrape.setdefault(site_id, {"last_success": None})
                st.update(url=url, last_attempt=start, error=error)
                if error is None:
                    st["last_success"] = start
            if error is not None:
                log.warning(f"metrics of {site_id} from {url}: {error}",
                            extra={"event": "scrape_error"})
            out[site_id] = error
        return out

    # -- the scraper thread -----------------------------------------------------------------
    def start(self) -> None:
        """Scrape every ``interval_s`` in one daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="cpn-metrics-scraper",
                                            daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = self.clock()
            try:
                self.scrape_once()
            except Exception:  # never end the thread
                log.exception("metrics scrape round failed", extra={"event": "scrape_failed"})
            self._stop.wait(max(0.05, self.interval_s - (self.clock() - t0)))

    # -- out --------------------------------------------------------------------------------
    def fresh(self, site_id: str, now: float | None = None) -> bool:
        """The site's metrics are fresh (at most three intervals old)."""
        with self.steering.service.network():
            m = self.steering.registry.metrics(site_id)
        return is_fresh(m, self.clock() if now is None else now, self.interval_s)

    def view(self, site_id: str) -> dict[str, Any]:
        """The site's ``metrics`` block for the API (see the module docstring)."""
        with self.steering.service.network():
            reg = self.steering.registry
            m: SiteMetrics | None = reg.metrics(site_id)
            site = reg.site(site_id) if site_id in reg else None
        now = self.clock()
        out: dict[str, Any] = {"stale": not is_fresh(m, now, self.interval_s),
                               "interval_s": self.interval_s,
                               "stale_policy": self.stale_policy}
        if m is None:
            out.update(source=None, age_s=None, levels=None)
        else:
            capacity = site.capacity if site is not None else None
            out.update(source=m.source, age_s=round(age_s(m, now), 3),
                       levels=levels(m, capacity))
        with self._lock:
            st = self._scrape.get(site_id)
            if st is not None and site is not None and site.metrics_url == st.get("url"):
                ok = st["last_success"]
                out["scrape"] = {"url": st["url"], "error": st["error"],
                                 "last_success_age_s": None if ok is None
                                 else round(max(0.0, now - ok), 3)}
        return out

    def decorate(self, site: dict[str, Any]) -> dict[str, Any]:
        """``site`` (a site as the API shows it) with its ``metrics`` block."""
        return {**site, "metrics": self.view(site["id"])}
