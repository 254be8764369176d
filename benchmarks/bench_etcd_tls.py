"""What TLS with client certificates costs the cluster's etcd channel.

Two etcd child processes on loopback (``EtcdServer``), one plain HTTP, one TLS with
``--client-cert-auth`` (certificates from ``make_etcd_pki``), and the controller's own client
(``EtcdClient``) against each, in alternating rounds so both see the same machine:

1. **Sequential writes**: one thread, ``txn`` puts of 200-byte values (the cluster's writes
   are transactions), requests per second on kept-alive connections.
2. **Sequential reads**: one thread, ``get`` of one key.
3. **Concurrent writes**: 8 threads on one client (as a member's threads share one), for a
   fixed time.
4. **New connection**: a new client and its first read (TCP + TLS handshake, and for TLS the
   certificate checks), what a member pays once per endpoint and again after etcd restarts.

Printed: each rate or time for both and the ratio TLS / plain (below 1 for rates: TLS is
slower). Nothing asserts a time. ``--quick`` runs fewer operations (a few seconds).

    .venv/bin/python benchmarks/bench_etcd_tls.py [--quick]

The table goes to stdout and, with the raw numbers as JSON, to
``benchmarks/results/<UTC time>-etcd-tls.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from controller.cluster.etcd import EtcdClient, EtcdTls, Op
from controller.cluster.etcdproc import EtcdServer
from controller.lab.pki import etcd_pki_files, server_tls

RESULTS = Path(__file__).resolve().parent / "results"
VALUE = "x" * 200


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def sequential_writes(client: EtcdClient, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        client.txn((), [Op.put(f"/bench/w/{i % 100}", VALUE)])
    return _rate(n, time.perf_counter() - t0)


def sequential_reads(client: EtcdClient, n: int) -> float:
    client.put("/bench/r", VALUE)
    t0 = time.perf_counter()
    for _ in range(n):
        client.get("/bench/r")
    return _rate(n, time.perf_counter() - t0)


def concurrent_writes(client: EtcdClient, threads: int, seconds: float) -> float:
    done = [0] * threads
    stop = time.perf_counter() + seconds

    def work(k: int) -> None:
        i = 0
        while time.perf_counter() < stop and i < 1_000_000:
            client.txn((), [Op.put(f"/bench/c/{k}/{i % 50}", VALUE)])
            i += 1
        done[k] = i

    t0 = time.perf_counter()
    workers = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 30)
    return _rate(sum(done), time.perf_counter() - t0)


def new_connection_ms(url: str, tls: EtcdTls | None, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with EtcdClient([url], tls=tls) as c:
            c.get("/bench/r")
        times.append((time.perf_counter() - t0) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer operations (a few seconds)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3, "
                   "--quick 1)")
    args = p.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    n_seq = 300 if args.quick else 2000
    conc_s = 1.0 if args.quick else 3.0
    n_conn = 10 if args.quick else 50

    work = Path(tempfile.mkdtemp(prefix="cpn-bench-etcd-tls-"))
    tls_server = server_tls(work / "pki", "bench")
    member_tls = etcd_pki_files(work / "pki").client_tls("bench")
    plain = EtcdServer(workdir=work / "plain")
    secure = EtcdServer(workdir=work / "tls", tls=tls_server)
    results: dict[str, dict[str, list[float]]] = {"plain": {}, "tls": {}}
    try:
        plain.start()
        secure.start()
        sides: dict[str, tuple[str, EtcdTls | None]] = {
            "plain": (plain.client_url, None), "tls": (secure.client_url, member_tls)}
        measures: list[tuple[str, Callable[[EtcdClient, str, EtcdTls | None], float]]] = [
            ("sequential writes /s", lambda c, _u, _t: sequential_writes(c, n_seq)),
            ("sequential reads /s", lambda c, _u, _t: sequential_reads(c, n_seq)),
            ("8-thread writes /s", lambda c, _u, _t: concurrent_writes(c, 8, conc_s)),
            ("new connection + first read, ms (median)",
             lambda _c, u, t: new_connection_ms(u, t, n_conn)),
        ]
        for r in range(rounds):
            for side in (("plain", "tls") if r % 2 == 0 else ("tls", "plain")):
                url, tls = sides[side]
                with EtcdClient([url], tls=tls) as client:
                    client.get("/bench/warm")  # the connection made before timing
                    for name, measure in measures:
                        value = measure(client, url, tls)
                        results[side].setdefault(name, []).append(value)
                        print(f"round {r + 1} {side}: {name} {value:.1f}", file=sys.stderr)
    finally:
        plain.cleanup()
        secure.cleanup()

    rows = ["| measure | plain HTTP | TLS, client certificates | TLS / plain |",
            "|---|---|---|---|"]
    summary = {}
    for name in results["plain"]:
        a = statistics.median(results["plain"][name])
        b = statistics.median(results["tls"][name])
        summary[name] = {"plain": a, "tls": b, "ratio": b / a}
        rows.append(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f} |")
    table = "\n".join(rows)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (RESULTS / f"{stamp}-etcd-tls.md").write_text(table + "\n")
    (RESULTS / f"{stamp}-etcd-tls.json").write_text(json.dumps(
        {"rounds": rounds, "sequential_ops": n_seq, "concurrent_s": conc_s,
         "connections": n_conn, "raw": results, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
