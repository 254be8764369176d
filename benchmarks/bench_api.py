"""``GET /api/v1/paths`` on the national topology at a fixed request rate, on loopback.

    .venv/bin/python benchmarks/bench_api.py [--rate 500] [--duration-s 10] [--connections 16]

The server is a separate process (a real ControllerService for topologies/national.yaml and
the API served by uvicorn in a thread, as in the controller; no switches), so the load
generator does not share its GIL. The generator is open-loop: request ``i`` is due at
``t0 + i / rate`` and goes out on the next free keep-alive connection (asyncio, plain
HTTP/1.1; a first version with httpx in 32 threads spent more CPU than the server and
measured itself). Latency is measured from the due time to the end of the response, so a server that
falls behind is charged for the queueing it causes (no coordinated omission); the send delay
(due time to actual send) is reported apart.

Peers measured in the same run, for ratios:
* ``engine``: the same queries through ``ControllerService.query_paths`` in-process (what the
  answer costs without HTTP);
* ``GET /health`` at the same rate: the HTTP floor of this server on this machine.

Target: p99 < 10 ms at 500 requests/s. Prints a markdown table; writes
``benchmarks/results/<UTC time>-api.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOPOLOGY = REPO / "topologies" / "national.yaml"
TARGET_P99_MS = 10.0


def serve(port: int, state_dir: str) -> None:
    """The server process: the service and the API, until stdin closes."""
    import logging

    from controller.main import build_controller
    from controller.settings import Settings

    logging.basicConfig(level=logging.WARNING)
    handle = build_controller(Settings.model_validate({
        "topology": {"file": str(TOPOLOGY)}, "api": {"port": port},
        "state": {"dir": state_dir}}))
    print("ready", flush=True)
    sys.stdin.read()
    handle.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _queries(n: int, seed: int = 7) -> list[dict[str, Any]]:
    from controller.topology.loader import load_topology

    topo = load_topology(TOPOLOGY)
    hosts = [h.name for h in topo.hosts]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.sample(hosts, 2)
        q: dict[str, Any] = {"src": a, "dst": b}
        r = rng.random()
        if r < 0.4:
            q["max_latency_ms"] = rng.choice([10, 20, 40, 80])
        elif r < 0.6:
            q["k"] = 3
        out.append(q)
    return out


def _pct(xs: list[float], p: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(p / 100.0 * (len(s) - 1))))]


def load(url: str, path: str, params: list[dict[str, Any]], rate: float, duration_s: float,
         connections: int) -> dict[str, Any]:
    """Open-loop load: request ``i`` is due at ``t0 + i / rate`` and goes out on the next free
    keep-alive connection (asyncio, plain HTTP/1.1: a light client, so the generator is not
    what is measured)."""
    import asyncio
    from urllib.parse import urlencode, urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    n = int(rate * duration_s)
    lat_ms = [0.0] * n
    send_delay_ms = [0.0] * n
    status = [0] * n
    reqs = [(f"GET {path}?{urlencode(q)} HTTP/1.1\r\nHost: {host}\r\n\r\n"
             if q else f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").encode()
            for q in params]

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, i: int) -> int:
        writer.write(reqs[i % len(reqs)])
        head = await reader.readuntil(b"\r\n\r\n")
        code = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return code

    async def run() -> float:
        queue: asyncio.Queue[int] = asyncio.Queue()
        conns = [await asyncio.open_connection(host, port) for _ in range(connections)]
        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.1

        async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while True:
                i = await queue.get()
                if i < 0:
                    return
                due = t0 + i / rate
                sent = loop.time()
                try:
                    status[i] = await asyncio.wait_for(one(reader, writer, i), 5.0)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    status[i] = -1
                    reader, writer = await asyncio.open_connection(host, port)
                end = loop.time()
                lat_ms[i] = (end - due) * 1000.0
                send_delay_ms[i] = (sent - due) * 1000.0

        tasks = [asyncio.create_task(worker(r, w)) for r, w in conns]
        for i in range(n):
            wait = t0 + i / rate - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            queue.put_nowait(i)
        for _ in tasks:
            queue.put_nowait(-1)
        await asyncio.wait_for(asyncio.gather(*tasks), duration_s + 60)
        wall = loop.time() - t0
        for _, w in conns:
            w.close()
        return wall

    wall_s = asyncio.run(run())
    ok = [lat_ms[i] for i in range(n) if 0 < status[i] < 500]
    codes: dict[str, int] = {}
    for s in status:
        codes[str(s)] = codes.get(str(s), 0) + 1
    return {"path": path, "requests": n, "rate_per_s": rate, "achieved_per_s": n / wall_s,
            "p50_ms": _pct(ok, 50), "p90_ms": _pct(ok, 90), "p99_ms": _pct(ok, 99),
            "max_ms": max(ok) if ok else float("nan"),
            "send_delay_p99_ms": _pct(send_delay_ms, 99),
            "errors": sum(1 for s in status if s < 0 or s >= 500), "status_counts": codes}


def engine(params: list[dict[str, Any]], reps: int = 3) -> dict[str, Any]:
    """The same queries in-process through ``ControllerService.query_paths`` (least of
    ``reps`` runs per query)."""
    from controller.errors import CpnError
    from controller.network.service import ControllerService
    from controller.topology.loader import load_topology

    service = ControllerService(load_topology(TOPOLOGY))
    times = []
    for q in params:
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            try:
                service.query_paths(q["src"], q["dst"], max_latency_ms=q.get("max_latency_ms"),
                                    k=q.get("k", 1))
            except CpnError:
                pass
            best = min(best, time.perf_counter() - t)
        times.append(best * 1000.0)
    return {"queries": len(params), "p50_ms": _pct(times, 50), "p99_ms": _pct(times, 99),
            "mean_ms": statistics.fmean(times)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=500.0)
    p.add_argument("--duration-s", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3, help="alternating /paths and /health "
                   "rounds; the median round (by p99) is the result")
    p.add_argument("--serve", nargs=2, metavar=("PORT", "STATE_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return 0
    import tempfile

    port = _free_port()
    with tempfile.TemporaryDirectory() as state:
        env = {**os.environ, "CPN_API_TOKEN": "bench"}
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), state],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                  cwd=REPO, text=True)
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if line.strip() != "ready":
                print(f"server did not start: {line!r}", file=sys.stderr)
                return 1
            url = f"http://127.0.0.1:{port}"
            params = _queries(2000)
            print(f"warming up; then {args.rate:g} req/s for {args.duration_s:g} s",
                  file=sys.stderr)
            load(url, "/api/v1/paths", params, args.rate, 1.0, args.connections)
            rounds: list[tuple[str, dict[str, Any]]] = []
            for r in range(args.rounds):
                # alternate, so both feel the same background load of this shared machine
                rounds.append((f"GET /paths (national), round {r + 1}",
                               load(url, "/api/v1/paths", params, args.rate, args.duration_s,
                                    args.connections)))
                rounds.append((f"GET /health (HTTP floor), round {r + 1}",
                               load(url, "/api/v1/health", [{}], args.rate, args.duration_s,
                                    args.connections)))
        finally:
            if server.stdin is not None:
                server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
    eng = engine(params[:500])
    load_avg = os.getloadavg()
    rows = rounds
    path_rounds = [r for name, r in rounds if "/paths" in name]
    health_rounds = [r for name, r in rounds if "/health" in name]
    paths = sorted(path_rounds, key=lambda r: r["p99_ms"])[len(path_rounds) // 2]
    health = sorted(health_rounds, key=lambda r: r["p99_ms"])[len(health_rounds) // 2]
    lines = [f"# API benchmark {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
             "",
             f"rate {args.rate:g} req/s for {args.duration_s:g} s, {args.connections} keep-alive "
             f"connections, loopback; load average at end {load_avg[0]:.2f}; "
             f"{os.cpu_count()} CPUs (shared)",
             "",
             "| what | requests | achieved req/s | p50 ms | p90 ms | p99 ms | max ms | "
             "send delay p99 ms | errors (5xx/transport) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['requests']} | {r['achieved_per_s']:.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | "
                     f"{r['max_ms']:.2f} | {r['send_delay_p99_ms']:.2f} | {r['errors']} |")
    lines += ["",
              f"engine alone (query_paths in-process, {eng['queries']} queries): p50 "
              f"{eng['p50_ms']:.3f} ms, p99 {eng['p99_ms']:.3f} ms",
              "median rounds by p99:",
              f"ratios: /paths p50 / /health p50 = {paths['p50_ms'] / health['p50_ms']:.2f}; "
              f"/paths p50 / engine p50 = {paths['p50_ms'] / eng['p50_ms']:.1f}",
              f"target p99 < {TARGET_P99_MS:g} ms: "
              f"{'met' if paths['p99_ms'] < TARGET_P99_MS else 'NOT met'} "
              f"(p99 {paths['p99_ms']:.2f} ms); /paths status counts "
              f"{paths['status_counts']}"]
    text = "\n".join(lines)
    print(text)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"{stamp}-api.md").write_text(text + "\n")
    (out / f"{stamp}-api.json").write_text(json.dumps(
        {"rounds": [{"name": n, **r} for n, r in rounds], "engine": eng, "load_avg": load_avg,
         "rate": args.rate, "duration_s": args.duration_s, "connections": args.connections},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
