"""A compute site's agent for the lab (run as root): a request service inside the site host's
network namespace, and a metric reporter that PUTs the site's live metrics to the controller.

    python3 tests/siteagent.py --netns-pid PID --site ID --api URL --token T [--port 8000]
        [--service-ms 2] [--interval-s 0.5]

* **Service.** The thread that listens enters the host's network namespace (``setns`` on
  ``/proc/PID/ns/net``: namespaces are per thread, so the process keeps the root namespace
  for the reporter). A client sends lines; each line is a request, queued for ONE worker
  that spends ``--service-ms`` on it and answers the site id. Concurrent clients therefore
  wait in the queue: the delay a request sees grows with the load, as at a real site.
* **Reporter** (root namespace, loopback only): every ``--interval-s`` it PUTs
  ``{"utilisation", "compute_delay_ms", "healthy": true, "queue"}`` to
  ``/api/v1/compute-sites/{site}/metrics``. ``compute_delay_ms`` is measured, not set: the
  mean time from arrival to answer of the requests answered in the last interval, or, when
  none were, what a request arriving now would wait (the queue length plus one, times the
  service time). ``utilisation`` is the worker's busy share of the interval.
* ``SIGUSR1`` stops the reporting (the site's metrics stop arriving; the service goes on);
  SIGTERM ends the agent. Each PUT's status goes to stdout, one line each.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import queue
import signal
import socket
import threading
import time
import urllib.request

CLONE_NEWNET = 0x40000000


def enter_netns(pid: int) -> None:
    """Move the calling thread into the network namespace of process ``pid``."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns: {os.strerror(err)}")
    finally:
        os.close(fd)


class Site:
    def __init__(self, site_id: str, service_s: float) -> None:
        self.site_id = site_id
        self.service_s = service_s
        self.jobs: queue.Queue[tuple[socket.socket, float]] = queue.Queue()
        self.lock = threading.Lock()
        self.waits: list[float] = []
        self.busy_s = 0.0

    def worker(self) -> None:
        answer = (self.site_id + "\n").encode()
        while True:
            conn, arrived = self.jobs.get()
            t0 = time.monotonic()
            time.sleep(self.service_s)
            try:
                conn.sendall(answer)
            except OSError:
                pass
            done = time.monotonic()
            with self.lock:
                self.waits.append(done - arrived)
                self.busy_s += done - t0

    def serve(self, conn: socket.socket) -> None:
        with conn:
            buf = b""
            while True:
                try:
                    chunk = conn.recv(4096)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk
                while b"\n" in buf:
                    _, buf = buf.split(b"\n", 1)
                    self.jobs.put((conn, time.monotonic()))

    def listen(self, netns_pid: int, port: int, ready: threading.Event) -> None:
        enter_netns(netns_pid)
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("0.0.0.0", port))
        srv.listen(128)
        ready.set()
        while True:
            conn, _ = srv.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def sample(self, interval_s: float) -> dict[str, object]:
        with self.lock:
            waits, self.waits = self.waits, []
            busy, self.busy_s = self.busy_s, 0.0
        waiting = self.jobs.qsize()
        if waits:
            delay_s = sum(waits) / len(waits)
        else:
            delay_s = (waiting + 1) * self.service_s
        return {"utilisation": round(min(1.0, busy / interval_s), 3),
                "compute_delay_ms": round(delay_s * 1000.0, 3), "healthy": True,
                "queue": waiting}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--netns-pid", type=int, required=True)
    p.add_argument("--site", required=True)
    p.add_argument("--api", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--token", required=True)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--service-ms", type=float, default=2.0)
    p.add_argument("--interval-s", type=float, default=0.5)
    args = p.parse_args()
    site = Site(args.site, args.service_ms / 1000.0)
    reporting = threading.Event()
    reporting.set()
    signal.signal(signal.SIGUSR1, lambda *_: reporting.clear())
    ready = threading.Event()
    threading.Thread(target=site.worker, daemon=True).start()
    threading.Thread(target=site.listen, args=(args.netns_pid, args.port, ready),
                     daemon=True).start()
    if not ready.wait(10):
        raise SystemExit("the service did not start listening")
    url = f"{args.api}/api/v1/compute-sites/{args.site}/metrics"
    print(f"listening on :{args.port}", flush=True)
    while True:
        t0 = time.monotonic()
        time.sleep(args.interval_s)
        body = site.sample(time.monotonic() - t0)
        if not reporting.is_set():
            continue
        req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                     headers={"Authorization": f"Bearer {args.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                status = r.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError as exc:
            status = f"error {exc}"
        print(json.dumps({"status": status, **body}), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
