"""cpn-pce on the national SR backbone: PCReq -> PCRep latency and requests/s with 100
delegated LSPs in its database, and re-optimisation after a cut (the cut to the last PCUpd).

    .venv/bin/python benchmarks/bench_pce.py [--requests 2000] [--sessions 10] [--seed 19]

The PCE is a separate process (``python -m controller.pce.main`` on topologies/national-sr.yaml,
PCEP and REST on loopback), so the load generator does not share its GIL. The PCCs are asyncio
clients in this process, one source address each (127.0.0.10 ...): each opens a session,
asks for 10 paths (a random pair of routers, the delay bound 1.25x the pair's least delay, 1 to
10 Mbps) and reports each as a delegated LSP. Then:

* latency: one session sends requests one after the other (send to the whole PCRep read);
* throughput: every session sends its share of ``--requests`` at once (pipelined) and reads
  the answers; requests/s = all answers / the time to the last one;
* re-optimisation: the link under the most LSPs goes down by ``PUT /api/v1/pce/links``; the
  time from the call to the last PCUpd read by a PCC, and how many LSPs moved.

Peers measured in the same run, for ratios: the same queries computed in-process by the
engine (``PceEngine.compute``: pathcore plus the SID list) and "the networkx method" (walk
``shortest_simple_paths`` by cost until a path meets the bound and has the bandwidth, then
the same SID encoding), the method of a PCE without an exact constrained search. Every
networkx answer's cost is checked against the engine's. Prints a markdown table; writes
``benchmarks/results/<UTC time>-pce.{md,json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import networkx as nx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from controller.pce import codec  # noqa: E402
from controller.pce.codec import (  # noqa: E402
    Bandwidth,
    EndPoints,
    Ero,
    Lsp,
    LspIdentifiers,
    MessageType,
    Metric,
    MetricType,
    ObjectiveFunction,
    Open,
    Rp,
    Srp,
    SrSubobject,
)
from controller.pce.engine import PathRequest, PceEngine  # noqa: E402
from controller.topology.files import topology_file  # noqa: E402
from controller.topology.loader import load_topology  # noqa: E402

TOKEN = "bench-pce"
LSPS_PER_SESSION = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pcc:
    """One PCC session over asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.next_id = 1
        self.updates: list[tuple[float, codec.Message]] = []

    @classmethod
    async def connect(cls, port: int, source: str) -> Pcc:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(source, 0))
        pcc = cls(reader, writer)
        await pcc.recv()  # the PCE's Open
        pcc.send(MessageType.OPEN, [Open(keepalive_s=30, dead_timer_s=120, session_id=1,
                                         stateful_flags=codec.STATEFUL_U, sr_msd=10)])
        await pcc.recv()  # its Keepalive
        pcc.send(MessageType.KEEPALIVE, [])
        return pcc

    def send(self, msg_type: int, objects: list[codec.PcepObject]) -> None:
        self.writer.write(codec.encode_message(msg_type, objects))

    async def recv(self) -> codec.Message:
        header = await self.reader.readexactly(4)
        length = struct.unpack("!H", header[2:])[0]
        return codec.decode_message(header + await self.reader.readexactly(length - 4))

    async def reply(self) -> codec.Message:
        while True:
            msg = await self.recv()
            if msg.type == MessageType.PCREP:
                return msg
            if msg.type == MessageType.PCUPD:
                self.updates.append((time.perf_counter(), msg))

    def request(self, req: PathRequest) -> None:
        self.send(MessageType.PCREQ, [
            Rp(request_id=self.next_id), EndPoints(source=req.source,
                                                   destination=req.destination),
            Bandwidth(bytes_per_s=req.min_bandwidth_mbps * 1e6 / 8),
            Metric(metric_type=MetricType.PATH_DELAY, value=req.max_latency_ms * 1000,
                   bound=True), ObjectiveFunction(code=1)])
        self.next_id += 1


def make_requests(engine: PceEngine, rng: random.Random, n: int) -> list[PathRequest]:
    out: list[PathRequest] = []
    nodes = engine.topology.nodes
    while len(out) < n:
        a, b = rng.sample(nodes, 2)
        fastest = engine.te_graph.shortest_path(a.name, b.name, "latency")
        assert fastest is not None and a.router_id and b.router_id
        out.append(PathRequest(a.router_id, b.router_id,
                               max_latency_ms=round(fastest.latency_ms * 1.25, 3),
                               min_bandwidth_mbps=float(rng.randint(1, 10))))
    return out


def networkx_peer(engine: PceEngine, g: nx.DiGraph, req: PathRequest) -> float | None:
    """Yen by cost until a path meets the bound (the bandwidth is ample here), then the SIDs."""
    src, dst = engine.sr.by_router_id[req.source], engine.sr.by_router_id[req.destination]
    for nodes in nx.shortest_simple_paths(g, src, dst, weight="cost"):
        links = [g[u][v]["index"] for u, v in zip(nodes, nodes[1:], strict=False)]
        if sum(engine.sr.latency_ms[i] for i in links) <= req.max_latency_ms + 1e-9:
            engine.sr.encode(nodes, links)
            return float(sum(g[u][v]["cost"] for u, v in zip(nodes, nodes[1:], strict=False)))
    return None


def peers(engine: PceEngine, reqs: list[PathRequest]) -> dict[str, float]:
    g = nx.DiGraph()
    for i, lk in enumerate(engine.topology.links):  # the cheapest of parallel links
        for u, v in ((lk.a, lk.b), (lk.b, lk.a)):
            if not g.has_edge(u, v) or g[u][v]["cost"] > lk.cost:
                g.add_edge(u, v, cost=lk.cost, index=i)
    t0 = time.perf_counter()
    answers = [engine.compute(r) for r in reqs]
    t_engine = (time.perf_counter() - t0) / len(reqs)
    t0 = time.perf_counter()
    costs = [networkx_peer(engine, g, r) for r in reqs]
    t_nx = (time.perf_counter() - t0) / len(reqs)
    for ans, cost in zip(answers, costs, strict=True):
        assert (cost is None) == (not ans.found)
        assert cost is None or math.isclose(cost, ans.te_cost, abs_tol=1e-6), (cost, ans)
    return {"engine_ms": t_engine * 1000, "networkx_ms": t_nx * 1000}


async def run(args: argparse.Namespace, port: int, api: str,
              engine: PceEngine) -> dict[str, Any]:
    rng = random.Random(args.seed)
    pccs = [await Pcc.connect(port, f"127.0.0.{10 + i}") for i in range(args.sessions)]
    # 100 delegated LSPs (10 per session): ask, then report what was answered
    for k, pcc in enumerate(pccs):
        for plsp, req in enumerate(make_requests(engine, rng, LSPS_PER_SESSION), 1):
            pcc.request(req)
            ero = (await pcc.reply()).first(Ero)
            assert isinstance(ero, Ero), f"no path for {req}"
            pcc.send(MessageType.PCRPT, [
                Srp(srp_id=0),
                Lsp(plsp_id=plsp, delegate=True, administrative=True, operational=2,
                    name=f"bench-{k}-{plsp}",
                    identifiers=LspIdentifiers(req.source, 0, 0, req.source,
                                               req.destination)),
                Ero(segments=[SrSubobject(label=s.label, nai_type=s.nai_type, nai=s.nai)
                              for s in ero.segments]),
                Bandwidth(bytes_per_s=req.min_bandwidth_mbps * 1e6 / 8)])
        pcc.send(MessageType.PCRPT, [Lsp(plsp_id=0), Ero()])
    async with httpx.AsyncClient(base_url=api, timeout=30) as http:
        for _ in range(100):
            lsps = (await http.get("/api/v1/pce/lsps")).json()
            if sum(1 for r in lsps if r["delegated"]) == args.sessions * LSPS_PER_SESSION:
                break
            await asyncio.sleep(0.1)
        delegated = sum(1 for r in lsps if r["delegated"])
        # latency: one request at a time
        reqs = make_requests(engine, rng, args.requests)
        lat = []
        for req in reqs[: args.requests // 2]:
            t0 = time.perf_counter()
            pccs[0].request(req)
            await pccs[0].reply()
            lat.append((time.perf_counter() - t0) * 1000)
        # throughput: every session pipelines its share
        share = args.requests // len(pccs)

        async def burst(pcc: Pcc, mine: list[PathRequest]) -> None:
            for req in mine:
                pcc.request(req)
            for _ in mine:
                await pcc.reply()

        t0 = time.perf_counter()
        await asyncio.gather(*(burst(p, reqs[i * share:(i + 1) * share])
                               for i, p in enumerate(pccs)))
        throughput = share * len(pccs) / (time.perf_counter() - t0)
        # re-optimisation: the link under the most LSPs goes down
        load: dict[frozenset[str], int] = {}
        for r in lsps:
            nodes = (r["computed"] or {}).get("nodes") or []
            for u, v in zip(nodes, nodes[1:], strict=False):
                load[frozenset((u, v))] = load.get(frozenset((u, v)), 0) + 1
        busiest, under = max(load.items(), key=lambda kv: kv[1])
        a, b = sorted(busiest)
        readers = [asyncio.create_task(p.reply()) for p in pccs]  # collect PCUpd meanwhile
        t0 = time.perf_counter()
        moved = (await http.put(f"/api/v1/pce/links/{a}/{b}", json={"up": False},
                                headers={"Authorization": f"Bearer {TOKEN}"})).json()["moved"]
        t_put = time.perf_counter() - t0
        expected = sum(1 for m in moved if m.get("srp_id"))
        deadline = time.monotonic() + 10
        while sum(len(p.updates) for p in pccs) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
        got = [t for p in pccs for t, _ in p.updates]
        for task in readers:
            task.cancel()
    return {
        "lsps_delegated": delegated, "requests": len(lat), "p50_ms": statistics.median(lat),
        "p99_ms": sorted(lat)[int(len(lat) * 0.99) - 1], "throughput_rps": throughput,
        "cut": f"{a}-{b}", "lsps_on_link": under, "moved": expected,
        "no_path_after_cut": sum(1 for m in moved if not m["found"]),
        "put_ms": t_put * 1000, "last_pcupd_ms": (max(got) - t0) * 1000 if got else None,
        "pcupd_received": len(got), **peers(engine, reqs[: min(300, len(reqs))]),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--seed", type=int, default=19)
    args = ap.parse_args()
    topo_path = topology_file("national-sr")
    engine = PceEngine(load_topology(topo_path))
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="bench-pce-", suffix=".log")[1])
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controller.pce.main", "--topology",
                                 str(topo_path), "--pcep", f"127.0.0.1:{port}", "--api",
                                 "127.0.0.1:0", "--request-rate", "1000000",
                                 "--log-level", "WARNING"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ,
                                                               "CPN_API_TOKEN": TOKEN})
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"API on (http://\S+)", log.read_text())):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"cpn-pce did not start: {log.read_text()}")
            time.sleep(0.1)
        res = asyncio.run(run(args, port, found.group(1), engine))
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        log.unlink()
    rows = [
        ("delegated LSPs in the database", f"{res['lsps_delegated']}"),
        ("PCReq -> PCRep, one at a time: p50 / p99",
         f"{res['p50_ms']:.2f} / {res['p99_ms']:.2f} ms ({res['requests']} requests)"),
        (f"PCReq -> PCRep pipelined on {args.sessions} sessions",
         f"{res['throughput_rps']:,.0f} requests/s"),
        ("one answer computed in-process (pathcore + SIDs)", f"{res['engine_ms']:.3f} ms"),
        ("the networkx method (Yen by cost until the bound) + SIDs",
         f"{res['networkx_ms']:.3f} ms ({res['networkx_ms'] / res['engine_ms']:.1f}x)"),
        (f"cut {res['cut']} under {res['lsps_on_link']} LSPs: LSPs moved by PCUpd",
         f"{res['moved']} ({res['no_path_after_cut']} left without a path)"),
        ("the cut to the last PCUpd read by a PCC",
         f"{res['last_pcupd_ms']:.1f} ms (PUT answered in {res['put_ms']:.1f} ms)"
         if res["last_pcupd_ms"] is not None else "-"),
    ]
    table = "| what | measured |\n|---|---:|\n" + "".join(f"| {a} | {b} |\n" for a, b in rows)
    print(table)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = REPO / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / f"{stamp}-pce.md").write_text(table)
    (results / f"{stamp}-pce.json").write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
