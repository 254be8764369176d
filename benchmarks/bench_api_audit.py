"""What the audit trail costs a write, as a client sees it (loopback, diamond, no switches).

    .venv/bin/python benchmarks/bench_api_audit.py [--rounds 20] [--per-round 50]

Three servers, each a separate process (the API served by uvicorn in a thread, as in the
controller), measured in the same run, round by round in turn:

* ``audit``: the controller as it ships (every write recorded in the SQLite store);
* ``no audit``: the same with the audit layer replaced by a pass-through (the peer);
* ``store down``: the audit store's writes fail (records wait in the queue, retried).

Each round sends ``per-round`` writes per server from one keep-alive client, one at a time:
``DELETE /api/v1/intents/<unknown>`` (404: authentication, role, rate limit, audit and the
handler, no routing) and ``POST`` + ``DELETE`` of an intent (201 and 200). Prints p50/p90/p99
per server and kind and each ratio to ``no audit``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from bench_api import _free_port

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789"
MODES = ("audit", "no audit", "store down")


def serve(port: int, state_dir: str, mode: str) -> None:
    """The server process: a controller on the diamond until stdin closes."""
    import logging

    import controller.api.rest as rest
    from controller.main import build_controller
    from controller.settings import Settings
    from controller.topology.files import topology_file

    logging.basicConfig(level=logging.ERROR)
    if mode == "no audit":
        class PassThrough:
            def __init__(self, app: Any, **_: Any) -> None:
                self.app = app

            async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
                await self.app(scope, receive, send)

        rest.AuditLayer = PassThrough  # type: ignore[misc,assignment]
    token_file = Path(state_dir) / "token"
    token_file.write_text(TOKEN)
    handle = build_controller(Settings.model_validate({
        "topology": {"file": str(topology_file("diamond"))},
        "api": {"port": port, "token_file": str(token_file), "write_rate_per_s": 0.0},
        "state": {"dir": state_dir}}))
    if mode == "store down":
        def down(*_: Any, **__: Any) -> list[int]:
            raise OSError("the audit store is down (benchmark)")
        handle.store.add_audit = down  # type: ignore[method-assign]
    print("ready", flush=True)
    sys.stdin.read()
    handle.stop()


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--per-round", type=int, default=50)
    p.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(int(args.serve[0]), args.serve[1], args.serve[2])
        return 0
    procs, clients = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for mode in MODES:
                port = _free_port()
                state = Path(tmp) / mode.replace(" ", "-")
                state.mkdir()
                proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port),
                                         str(state), mode], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, cwd=REPO)
                procs.append(proc)
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
                clients[mode] = httpx.Client(
                    base_url=f"http://127.0.0.1:{port}/api/v1", timeout=30.0,
                    headers={"Authorization": f"Bearer {TOKEN}"})
            ms: dict[tuple[str, str], list[float]] = {}
            body = {"src": "h1", "dst": "h2", "max_latency_ms": 50}
            for _ in range(args.rounds):
                for mode, c in clients.items():
                    for i in range(args.per_round):
                        t0 = time.perf_counter()
                        r = c.delete(f"/intents/{10_000_000 + i}")
                        t1 = time.perf_counter()
                        assert r.status_code == 404, r.text
                        added = c.post("/intents", json=body)
                        assert added.status_code == 201, added.text
                        assert c.delete(f"/intents/{added.json()['id']}").status_code == 200
                        t3 = time.perf_counter()
                        ms.setdefault((mode, "404"), []).append((t1 - t0) * 1e3)
                        ms.setdefault((mode, "add+delete"), []).append((t3 - t1) * 1e3)
            audited = clients["audit"].get("/audit", params={"limit": 1}).json()
        finally:
            for c in clients.values():
                c.close()
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)
    print("| server | writes | p50 ms | p90 ms | p99 ms | p50 / no audit |")
    print("|---|---|---:|---:|---:|---:|")
    for kind in ("404", "add+delete"):
        base = statistics.median(ms[("no audit", kind)])
        for mode in MODES:
            xs = ms[(mode, kind)]
            print(f"| {mode} | {kind} x{len(xs)} | {statistics.median(xs):.2f} | "
                  f"{_pct(xs, 0.9):.2f} | {_pct(xs, 0.99):.2f} | "
                  f"{statistics.median(xs) / base:.2f} |")
    print(f"\nlast audit id of the 'audit' server: {audited[-1]['id'] if audited else None}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
