"""The controller cluster on the national lab: takeover times and intent write rates.

Three ``cpn-controller --cluster`` members (processes) on one etcd (``EtcdServer``, a child
process on loopback) and the national lab (52 OVS switches in Mininet, each connected to all
three members), then one standalone controller (SQLite, no ``--cluster``) on a fresh lab.
Measured:

1. **Takeover after SIGKILL** (20 times, ``--quick`` 3): the member mastering the most
   switches is killed; the time from the kill until every switch it mastered has a surviving
   master whose role the switch confirmed (``GET /api/v1/cluster`` on both survivors, polled
   every 10 ms: ``master`` a survivor, ``role_here`` ``master`` on it). The survivors' logs
   give the same end without polling (the last ``event=takeover`` line) and the parts: the
   peer watch noticing (``event=peer_lost``) and each switch's orphaned-to-role-reply time
   (``duration_ms``). The killed member is restarted and the cluster waited on until all
   three master their share again.
2. **Takeover after SIGSTOP** (10 times, ``--quick`` 2): as above, but the member is frozen:
   nothing resets, its lease (1 s TTL) has to expire in etcd; then SIGCONT and the time until
   it has rejoined (fenced, registered anew, its share claimed back).
3. **Acknowledged intent writes per second**: 8 client threads POST ``/api/v1/intents``
   (random host pairs, ``max_latency_ms`` 50, a distinct UDP ``dst_port`` each, so none
   conflicts) for 10 s (``--quick`` 3 s), spread over the three members, and against the
   standalone controller; the intents are then removed with DELETE. The members'
   ``/metrics`` give the etcd transactions the cluster's writes took (a write that loses
   the compare-and-swap on the intent id counter to another member tries again).
4. **1,000 intents in one batch** (``POST /api/v1/intents/batch``, time to the 201) through
   the cluster and through the standalone controller, and **one intent** (``POST
   /api/v1/intents``); each run removed with DELETE before the next. The cluster's 201 comes
   after the etcd commit, the answering member's apply and the barriers of the switches
   *it* masters; the members' logs (``event=change`` lines of the sender) give when every
   member's switches were confirmed, their ``/metrics`` the time the answering member
   spent in etcd transactions.

Anchors: ONOS ~0.5 s takeover (ITU J-FET 2021 study); ONOS 1.0 3-node cluster 175.5 ms for
1,000 intents and 43.5 ms for one; ONOS 1.0 single node 48 ms and 15.5 ms (ON.Lab). Ratios are
anchor / ours (above 1: faster than the anchor). Nothing asserts a time.

Needs root and Open vSwitch; one lab at a time on the machine, so run it under the lab lock::

    flock /tmp/cpn-lab.lock .venv/bin/python benchmarks/bench_cluster.py [--quick]

The table goes to stdout (progress to stderr) and, with the raw numbers as JSON, to
``benchmarks/results/<UTC time>-cluster.{md,json}``; the members' and etcd's logs stay in
``benchmarks/results/<UTC time>-cluster/``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# the integration tests' harness runs members, etcd and labs; reuse it rather than copy it
for _p in (REPO, REPO / "tests", REPO / "tests" / "integration"):
    sys.path.insert(0, str(_p))

import httpx  # noqa: E402
import pytest  # noqa: E402  (the harness's bounded waits end with pytest.fail)

# tests/integration is not on mypy's path from here: these are checked with the tests
# (MYPYPATH=tests:tests/integration checks this file with them too)
from cluster_harness import Cluster, MemberProcess  # type: ignore[import-not-found, unused-ignore]  # noqa: E402,E501
from harness import ControllerProcess, start_lab  # type: ignore[import-not-found, unused-ignore]  # noqa: E402
from intent_specs import ONOS_1_INTENT_MS, ONOS_1000_INTENTS_MS  # noqa: E402

from controller.lab import ovs  # noqa: E402
from controller.lab.network import LabNetwork  # noqa: E402
from controller.topology.files import topology_file  # noqa: E402
from controller.topology.loader import load_topology  # noqa: E402
from controller.topology.model import Topology  # noqa: E402

TOKEN = "bench-cluster-token"
NATIONAL = topology_file("national")
ONOS_TAKEOVER_S = 0.5
"""ONOS mastership takeover after a node failure, ~0.5 s (ITU J-FET 2021 study)"""
KILL_TARGET_S = 0.5
FREEZE_TARGET_S = 2.0
ONOS_CLUSTER_1000_MS = 175.5
"""ONOS 1.0, 3-node cluster: 1,000 intents installed"""
ONOS_CLUSTER_1_MS = 43.5
"""ONOS 1.0, 3-node cluster: one intent installed"""
POLL_S = 0.010
"""how often the survivors' /cluster is read while a takeover runs"""
TAKEOVER_TIMEOUT_S = 15.0
WRITE_CLIENTS = 8


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pct(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank: an observed value, never interpolated."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM ends the run like Ctrl-C: through every finally, so nothing is left running
    raise KeyboardInterrupt(f"signal {signum}")


# -- the members' logs ---------------------------------------------------------------------

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}) (\S+) (\S+): (.*)$")


class LogLine:
    """One line of a member's structured log: wall time, logger, message, ``k=v`` fields."""

    def __init__(self, wall: float, logger: str, message: str, fields: dict[str, str]) -> None:
        self.wall = wall
        self.logger = logger
        self.message = message
        self.fields = fields


def log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def read_log(path: Path, offset: int) -> list[LogLine]:
    """The complete lines written to ``path`` after byte ``offset``, parsed."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return []
    text = data.decode(errors="replace")
    out = []
    for raw in text.splitlines(keepends=True):
        if not raw.endswith("\n"):
            break  # being written
        m = _LINE.match(raw.rstrip("\n"))
        if m is None:
            continue
        # the formatter writes local time (logging's asctime); read it back the same way
        wall = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").timestamp()
        message, _, tail = m.group(4).rpartition(" | ")
        if not message:
            message, tail = tail, ""
        fields = dict(kv.split("=", 1) for kv in tail.split() if "=" in kv)
        out.append(LogLine(wall, m.group(3), message, fields))
    return out


# -- HTTP ------------------------------------------------------------------------------------

def client(api_port: int, timeout_s: float = 30.0) -> httpx.Client:
    """A keep-alive client of one controller's ``/api/v1`` with the write token."""
    return httpx.Client(base_url=f"http://127.0.0.1:{api_port}/api/v1", timeout=timeout_s,
                        headers={"Authorization": f"Bearer {TOKEN}"})


class Workload:
    """Intent bodies between random host pairs of the topology, ``max_latency_ms`` 50, each
    with a UDP destination port of its own (distinct matches: no two conflict, each is a
    flow of its own)."""

    def __init__(self, topology: Topology, seed: int) -> None:
        self.hosts = [h.name for h in topology.hosts]
        self.seed = seed
        self._ports = itertools.count(1024)
        self._lock = threading.Lock()

    def rng(self, stream: int) -> random.Random:
        return random.Random(self.seed * 1000 + stream)

    def body(self, rng: random.Random) -> dict[str, Any]:
        with self._lock:
            port = next(self._ports)
        if port > 65535:
            raise SystemExit("the benchmark ran out of distinct UDP ports for its intents")
        src, dst = rng.sample(self.hosts, 2)
        return {"src": src, "dst": dst, "max_latency_ms": 50.0,
                "match": {"ip_proto": 17, "dst_port": port}}


def api_intents(c: httpx.Client) -> list[int]:
    """Ids of the intents added over the API that ``c``'s controller holds."""
    r = c.get("/intents")
    r.raise_for_status()
    return [int(i["id"]) for i in r.json() if i["source"] == "api"]


def delete_all(ports: Sequence[int], ids: Sequence[int]) -> dict[str, Any]:
    """DELETE ``ids`` with :data:`WRITE_CLIENTS` threads spread over the controllers at
    ``ports``; (seconds, failures)."""
    todo = list(ids)
    lock = threading.Lock()
    failures: list[str] = []

    def worker(k: int) -> None:
        with client(ports[k % len(ports)]) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    iid = todo.pop()
                try:
                    r = c.delete(f"/intents/{iid}")
                    if r.status_code != 200:
                        failures.append(f"{iid}: {r.status_code} {r.text[:160]}")
                except httpx.HTTPError as exc:
                    failures.append(f"{iid}: {exc!r}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(WRITE_CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    return {"seconds": time.perf_counter() - t0, "deleted": len(ids) - len(failures),
            "failures": failures[:5], "n_failures": len(failures)}


def wait_no_api_intents(ports: Sequence[int], timeout_s: float = 60.0) -> None:
    """Every controller at ``ports`` holds no API intent (the replicas caught up)."""
    deadline = time.monotonic() + timeout_s
    for port in ports:
        with client(port) as c:
            while api_intents(c):
                if time.monotonic() > deadline:
                    raise SystemExit(f"API intents still on :{port} after {timeout_s:g} s")
                time.sleep(0.1)


def clear_intents(ports: Sequence[int]) -> dict[str, Any]:
    """Remove every API intent (DELETE each, spread over ``ports``) and wait until every
    controller has none."""
    with client(ports[0]) as c:
        ids = api_intents(c)
    res = delete_all(ports, ids)
    wait_no_api_intents(ports)
    return res


def write_load(ports: Sequence[int], work: Workload, duration_s: float) -> dict[str, Any]:
    """:data:`WRITE_CLIENTS` closed-loop clients POST single intents for ``duration_s``
    seconds, client ``k`` to the controller at ``ports[k % len(ports)]``; every 201 counts."""
    lock = threading.Lock()
    acked: list[int] = []
    latencies_ms: list[float] = []
    states: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    errors: list[str] = []
    per_port: Counter[int] = Counter()
    slow: list[tuple[float, float, int, int]] = []
    stop = threading.Event()
    # made before the clock starts: each costs tens of ms (an SSL context)
    clients = [client(ports[k % len(ports)]) for k in range(WRITE_CLIENTS)]
    deadline = time.perf_counter() + duration_s

    def worker(k: int) -> None:
        rng = work.rng(10_000 + k)
        port = ports[k % len(ports)]
        with clients[k] as c:
            while not stop.is_set() and time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = c.post("/intents", json=work.body(rng))
                except httpx.HTTPError as exc:
                    with lock:
                        statuses["transport"] += 1
                        errors.append(repr(exc))
                    continue
                took = (time.perf_counter() - t0) * 1000.0
                with lock:
                    statuses[str(r.status_code)] += 1
                    if r.status_code == 201:
                        body = r.json()
                        acked.append(int(body["id"]))
                        states[body["state"]] += 1
                        latencies_ms.append(took)
                        per_port[port] += 1
                        slow.append((took, time.time(), port, int(body["id"])))
                    else:
                        errors.append(f"{r.status_code} {r.text[:160]}")

    t_start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(k,), daemon=True)
               for k in range(WRITE_CLIENTS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=duration_s + 120)
    finally:
        stop.set()
    elapsed = time.perf_counter() - t_start
    if len(set(acked)) != len(acked):
        raise SystemExit("an intent id was acknowledged twice")
    return {"clients": WRITE_CLIENTS, "controllers": len(ports), "duration_s": elapsed,
            "acked": len(acked), "writes_per_s": len(acked) / elapsed,
            "p50_ms": pct(latencies_ms, 0.5) if latencies_ms else None,
            "p90_ms": pct(latencies_ms, 0.9) if latencies_ms else None,
            "p99_ms": pct(latencies_ms, 0.99) if latencies_ms else None,
            "states": dict(states), "statuses": dict(statuses), "errors": errors[:5],
            "per_controller": [per_port[p] for p in ports], "ids": acked,
            # to find the slowest answers in the controllers' logs
            "slowest": [{"ms": ms, "answered": datetime.fromtimestamp(t).isoformat(
                timespec="milliseconds"), "port": port, "id": iid}
                for ms, t, port, iid in sorted(slow, reverse=True)[:5]]}


def confirmed_everywhere(logs: Sequence[Path], offsets: Sequence[int], t_post: float,
                         timeout_s: float = 15.0) -> float | None:
    """Seconds from ``t_post`` (wall) to the last controller's confirmation of the biggest
    change it sent after it (the sender's ``event=change`` log line is written once every
    barrier of the change is back); None when a controller logged none within the wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        ends = []
        for path, off in zip(logs, offsets, strict=True):
            sent = [ln for ln in read_log(path, off) if ln.fields.get("event") == "change"
                    and int(ln.fields.get("messages", "0")) > 0]
            if sent:
                ends.append(max(sent, key=lambda ln: int(ln.fields["messages"])).wall)
        if len(ends) == len(logs):
            return max(ends) - t_post
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def etcd_txns(members: Sequence[MemberProcess]) -> tuple[float, float]:
    """(count, seconds) of the etcd transactions the ``members`` made so far, summed (their
    ``cpn_cluster_etcd_request_seconds`` histogram, ``op="txn"``)."""
    name = "cpn_cluster_etcd_request_seconds"
    return (sum(m.metric(f"{name}_count", op="txn") for m in members),
            sum(m.metric(f"{name}_sum", op="txn") for m in members))


def intent_adds(ports: Sequence[int], logs: Sequence[Path], work: Workload, n: int,
                runs: int, stream: int,
                members: Sequence[MemberProcess] = ()) -> list[dict[str, Any]]:
    """``runs`` times: ``n`` intents (one POST /intents, or one POST /intents/batch) to the
    controller at ``ports[run % len(ports)]``, timed to the 201; then removed. With
    ``members`` (a cluster, in the order of ``ports``), also the time the answering member
    spent in etcd transactions meanwhile."""
    out = []
    for run in range(runs):
        rng = work.rng(stream + run)
        port = ports[run % len(ports)]
        offsets = [log_size(p) for p in logs]
        answering = [members[run % len(members)]] if members else []
        txn0 = etcd_txns(answering)
        with client(port, timeout_s=120.0) as c:
            if n == 1:
                body: Any = work.body(rng)
                path = "/intents"
            else:
                body = {"intents": [work.body(rng) for _ in range(n)]}
                path = "/intents/batch"
            t_wall = time.time()
            t0 = time.perf_counter()
            r = c.post(path, json=body)
            took_ms = (time.perf_counter() - t0) * 1000.0
        if r.status_code != 201:
            raise SystemExit(f"POST {path} ({n} intents) answered {r.status_code}: "
                             f"{r.text[:300]}")
        txn1 = etcd_txns(answering)
        answer = r.json()
        answered = answer if isinstance(answer, list) else [answer]
        # one intent crosses the switches of one or two members only: no "everywhere"
        everywhere = confirmed_everywhere(logs, offsets, t_wall) if n > 1 else None
        cleared = clear_intents(ports)
        rec = {"n": n, "port": port, "ms": took_ms,
               "everywhere_ms": None if everywhere is None else everywhere * 1000.0,
               "states": dict(Counter(i["state"] for i in answered)),
               "delete_s": cleared["seconds"], "delete_failures": cleared["n_failures"],
               # the write's transaction, and any status update the member made meanwhile
               "etcd_txns": txn1[0] - txn0[0] if members else None,
               "etcd_txn_ms": (txn1[1] - txn0[1]) * 1000.0 if members else None}
        say(f"  {n} intent(s) via :{port}: {took_ms:.1f} ms to the 201, every controller's "
            f"switches confirmed after {rec['everywhere_ms'] or float('nan'):.1f} ms "
            f"{rec['states']}; removed in {cleared['seconds']:.1f} s")
        out.append(rec)
    return out


# -- takeovers ---------------------------------------------------------------------------------

def masters(c: httpx.Client) -> dict[str, str | None]:
    r = c.get("/cluster")
    r.raise_for_status()
    return {s["name"]: s["master"] for s in r.json()["switches"]}


def pick_victim(cluster: Cluster, kills: Counter[str]) -> tuple[MemberProcess, list[str]]:
    """The member mastering the most switches (ties: the one killed least), and those
    switches."""
    with client(cluster.members[0].api_port) as c:
        view = masters(c)
    counts = Counter(m for m in view.values() if m is not None)
    victim_id = max(sorted(counts), key=lambda m: (counts[m], -kills[m]))
    kills[victim_id] += 1
    return cluster.member(victim_id), sorted(n for n, m in view.items() if m == victim_id)


def wait_taken_over(survivors: Sequence[MemberProcess], clients: Sequence[httpx.Client],
                    orphans: Sequence[str], t0: float, what: str, tails: Callable[[], str]
                    ) -> dict[str, Any]:
    """Poll ``/cluster`` on every survivor (at once, one thread each) every :data:`POLL_S`
    until each orphan's master (as the first survivor sees it) is a survivor whose own view
    says ``role_here`` master (``clients``: one per survivor, made before ``t0``: making
    one costs tens of ms). Returns ms from ``t0`` to the end of the poll that saw it
    (``polled_ms``) and to when that poll went out (``sent_ms``), and the number of
    polls."""
    ids = {m.member_id for m in survivors}

    def view(c: httpx.Client) -> dict[str, Any]:
        return {s["name"]: s for s in c.get("/cluster").json()["switches"]}

    polls = 0
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        while True:
            t_poll = time.perf_counter()
            polls += 1
            try:
                got = list(pool.map(view, clients))
            except (httpx.HTTPError, ValueError, KeyError):
                got = []
            if got:
                views = {m.member_id: v for m, v in zip(survivors, got, strict=True)}
                first = got[0]
                if all(first[n]["master"] in ids
                       and views[first[n]["master"]][n]["role_here"] == "master"
                       for n in orphans):
                    return {"polled_ms": (time.perf_counter() - t0) * 1000.0,
                            "sent_ms": (t_poll - t0) * 1000.0, "polls": polls}
            if time.perf_counter() - t0 > TAKEOVER_TIMEOUT_S:
                raise SystemExit(f"{what}: the orphaned switches were not mastered by the "
                                 f"survivors within {TAKEOVER_TIMEOUT_S:g} s\n{tails()}")
            time.sleep(max(0.0, POLL_S - (time.perf_counter() - t_poll)))


def idle_read_ms(ports: Sequence[int], n: int = 30) -> float:
    """Median time of one round of ``GET /cluster`` on every controller at ``ports`` at
    once while nothing happens (what a takeover poll costs at rest)."""
    clients = [client(p, timeout_s=2.0) for p in ports]
    times = []
    try:
        with ThreadPoolExecutor(max_workers=len(clients)) as pool:
            for _ in range(n):
                t0 = time.perf_counter()
                list(pool.map(lambda c: c.get("/cluster").json(), clients))
                times.append((time.perf_counter() - t0) * 1000.0)
                time.sleep(POLL_S)
    finally:
        for c in clients:
            c.close()
    return statistics.median(times)


def takeover_from_logs(survivors: Sequence[MemberProcess], offsets: Sequence[int],
                       orphan_dpids: set[int], t_wall: float, timeout_s: float = 5.0
                       ) -> dict[str, Any]:
    """What the survivors logged after ``t_wall``: the ``event=takeover`` line of each
    orphan (waited for, bounded), the ``event=peer_lost`` lines. Times in ms after
    ``t_wall``."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = [ln for m, off in zip(survivors, offsets, strict=True)
                 for ln in read_log(m.log_path, off)]
        takes = {}
        for ln in lines:
            if ln.fields.get("event") == "takeover":
                dpid = int(ln.fields["dpid"], 16)
                if dpid in orphan_dpids:
                    takes[dpid] = ln
        if len(takes) == len(orphan_dpids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lost = [ln.wall for ln in lines if ln.fields.get("event") == "peer_lost"]
    durations = [float(ln.fields["duration_ms"]) for ln in takes.values()]
    return {
        "logged": len(takes),
        "last_takeover_ms": (max(ln.wall for ln in takes.values()) - t_wall) * 1000.0
        if takes else None,
        # a survivor learns a switch is orphaned at its log time minus duration_ms
        "learned_ms": (min(ln.wall - float(ln.fields["duration_ms"]) / 1000.0
                           for ln in takes.values()) - t_wall) * 1000.0 if takes else None,
        "peer_lost_ms": (min(lost) - t_wall) * 1000.0 if lost else None,
        "orphan_to_role_ms": {"median": statistics.median(durations),
                              "max": max(durations)} if durations else None,
    }


def restore_member(cluster: Cluster, victim: MemberProcess, count: int) -> float:
    """Bring the victim back (restart it when dead, SIGCONT when frozen) and wait until it
    holds every switch reconciled and all three members master their share; seconds."""
    t0 = time.perf_counter()
    if victim.proc is not None and victim.proc.poll() is None:
        victim.thaw()
    else:
        victim.start(timeout_s=30.0)
    victim.wait_synced(count, 60.0, f"every switch on {victim.member_id}")
    cluster.wait_mastered(count, 60.0)
    with client(victim.api_port) as c:
        while True:
            st = c.get("/cluster").json()
            mine = sum(1 for s in st["switches"] if s["master"] == victim.member_id)
            if st["writable"] and mine >= count // len(cluster.members):
                break
            if time.perf_counter() - t0 > 90.0:
                raise SystemExit(f"{victim.member_id} did not take its share back\n"
                                 f"{cluster.tails()}")
            time.sleep(0.05)
    return time.perf_counter() - t0


def takeovers(cluster: Cluster, topology: Topology, how: str, times: int) -> list[dict[str, Any]]:
    """``times`` takeovers: the busiest member killed (``how`` = "kill") or frozen
    ("freeze"), timed, then brought back."""
    dpid_of = {n.name: n.dpid for n in topology.nodes}
    count = len(topology.nodes)
    kills: Counter[str] = Counter()
    out = []
    for k in range(times):
        victim, orphans = pick_victim(cluster, kills)
        survivors = [m for m in cluster.members if m is not victim]
        offsets = [log_size(m.log_path) for m in survivors]
        clients = [client(m.api_port, timeout_s=2.0) for m in survivors]
        try:
            for c in clients:  # connected before the signal
                c.get("/cluster").raise_for_status()
            assert victim.proc is not None
            t_wall = time.time()
            t0 = time.perf_counter()
            victim.proc.send_signal(signal.SIGKILL if how == "kill" else signal.SIGSTOP)
            polled = wait_taken_over(survivors, clients, orphans, t0, f"{how} {k + 1}",
                                     cluster.tails)
        finally:
            for c in clients:
                c.close()
        if how == "kill":
            victim.proc.wait(timeout=10)
        logs = takeover_from_logs(survivors, offsets, {dpid_of[n] for n in orphans}, t_wall)
        back_s = restore_member(cluster, victim, count)
        rec = {"victim": victim.member_id, "orphans": len(orphans), **polled, **logs,
               "rejoin_s": back_s}
        say(f"  {how} {k + 1}/{times}: {victim.member_id} ({len(orphans)} switches) taken "
            f"over in {polled['polled_ms']:.0f} ms (polled; poll sent at "
            f"{polled['sent_ms']:.0f} ms), last takeover logged at "
            f"{logs['last_takeover_ms'] or float('nan'):.0f} ms; back in {back_s:.1f} s")
        out.append(rec)
    return out


# -- the runs ----------------------------------------------------------------------------------

def cluster_part(args: argparse.Namespace, topology: Topology, lab_env: Any,
                 workdir: Path, work: Workload, res: dict[str, Any]) -> None:
    count = len(topology.nodes)
    cluster = Cluster(NATIONAL, workdir / "cluster", 3)
    lab: LabNetwork | None = None
    try:
        t0 = time.monotonic()
        cluster.start()
        lab, _ = start_lab(lab_env, topology, cluster.members, timeout_s=180.0)
        for m in cluster.members:
            m.wait_synced(count, 120.0, f"every switch on {m.member_id}")
        cluster.wait_mastered(count, 60.0)
        res["cluster_up_s"] = time.monotonic() - t0
        say(f"cluster and lab up, every switch mastered in {res['cluster_up_s']:.1f} s")
        ports = [m.api_port for m in cluster.members]
        logs = [m.log_path for m in cluster.members]
        res["idle_read_ms"] = idle_read_ms(ports[:2])
        say(f"takeover after SIGKILL, {args.kills} times")
        res["kill"] = takeovers(cluster, topology, "kill", args.kills)
        say(f"takeover after SIGSTOP, {args.freezes} times")
        res["freeze"] = takeovers(cluster, topology, "freeze", args.freezes)
        say(f"writes for {args.write_s:g} s, {WRITE_CLIENTS} clients over 3 members")
        txn_b = etcd_txns(cluster.members)
        w = write_load(ports, work, args.write_s)
        txn_c = etcd_txns(cluster.members)
        # besides the writes, each member puts its applied revision at most every half TTL
        # while the revision moves (member.py's periodic loop)
        status_max = len(cluster.members) * 2.0 * w["duration_s"]
        w["etcd"] = {"txns": txn_c[0] - txn_b[0], "status_max": status_max,
                     "txns_per_write": (txn_c[0] - txn_b[0] - status_max)
                     / max(1, w["acked"]),
                     "txn_mean_ms": (txn_c[1] - txn_b[1]) * 1000.0
                     / max(1.0, txn_c[0] - txn_b[0])}
        w["cleanup"] = {k: v for k, v in clear_intents(ports).items() if k != "failures"}
        res["writes_cluster"] = {k: v for k, v in w.items() if k != "ids"}
        say(f"  {w['acked']} acknowledged, {w['writes_per_s']:.1f}/s, {w['statuses']}")
        say(f"one batch of 1,000 intents, {args.batch_runs} runs")
        res["batch_cluster"] = intent_adds(ports, logs, work, 1000, args.batch_runs, 20_000,
                                           cluster.members)
        say(f"one intent, {args.single_runs} runs")
        res["one_cluster"] = intent_adds(ports, logs, work, 1, args.single_runs, 30_000,
                                         cluster.members)
    finally:
        if lab is not None:
            lab.stop()
        cluster.stop()


def standalone_part(args: argparse.Namespace, topology: Topology, lab_env: Any,
                    workdir: Path, work: Workload, res: dict[str, Any]) -> None:
    count = len(topology.nodes)
    (workdir / "standalone").mkdir(parents=True, exist_ok=True)
    ctl = ControllerProcess(NATIONAL, workdir / "standalone")
    lab: LabNetwork | None = None
    try:
        t0 = time.monotonic()
        ctl.start(timeout_s=30.0)
        lab, _ = start_lab(lab_env, topology, ctl, timeout_s=180.0)
        ctl.wait_synced(count, 120.0, "every switch on the standalone controller")
        res["standalone_up_s"] = time.monotonic() - t0
        say(f"standalone controller and lab up in {res['standalone_up_s']:.1f} s")
        ports = [ctl.api_port]
        say(f"writes for {args.write_s:g} s, {WRITE_CLIENTS} clients, one controller")
        w = write_load(ports, work, args.write_s)
        w["cleanup"] = {k: v for k, v in clear_intents(ports).items() if k != "failures"}
        res["writes_single"] = {k: v for k, v in w.items() if k != "ids"}
        say(f"  {w['acked']} acknowledged, {w['writes_per_s']:.1f}/s, {w['statuses']}")
        say(f"one batch of 1,000 intents, {args.batch_runs} runs")
        res["batch_single"] = intent_adds(ports, [ctl.log_path], work, 1000, args.batch_runs,
                                          40_000)
        say(f"one intent, {args.single_runs} runs")
        res["one_single"] = intent_adds(ports, [ctl.log_path], work, 1, args.single_runs,
                                        50_000)
    finally:
        if lab is not None:
            lab.stop()
        ctl.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions, a fast check")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kills", type=int, help="takeovers after SIGKILL (20; quick 3)")
    p.add_argument("--freezes", type=int, help="takeovers after SIGSTOP (10; quick 2)")
    p.add_argument("--write-s", type=float, help="seconds of concurrent writes (10; quick 3)")
    p.add_argument("--batch-runs", type=int, help="1,000-intent batches (5; quick 1)")
    p.add_argument("--single-runs", type=int, help="one-intent adds (10; quick 3)")
    args = p.parse_args(argv)
    for name, full, quick in (("kills", 20, 3), ("freezes", 10, 2), ("write_s", 10.0, 3.0),
                              ("batch_runs", 5, 1), ("single_runs", 10, 3)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if os.geteuid() != 0:
        raise SystemExit("bench_cluster.py needs root (Mininet and Open vSwitch)")
    # explicit for SIGINT too: a shell starting this in the background leaves SIGINT
    # ignored, and Python then never turns it into KeyboardInterrupt
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir = REPO / "benchmarks" / "results"
    workdir = out_dir / f"{stamp}-cluster"
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["CPN_API_TOKEN"] = TOKEN  # the members and the standalone controller inherit it
    topology = load_topology(NATIONAL)
    work = Workload(topology, args.seed)
    res: dict[str, Any] = {
        "mode": "quick" if args.quick else "full", "started": stamp,
        "load_avg_start": os.getloadavg(), "cpus": os.cpu_count(),
        "topology": topology.name, "switches": len(topology.nodes),
        "hosts": len(topology.hosts), "file_intents": len(topology.intents),
        "args": {k: v for k, v in vars(args).items()}, "workdir": str(workdir)}
    t_run = time.monotonic()
    try:
        lab_env = ovs.probe_environment(start_ovs=True)
        cluster_part(args, topology, lab_env, workdir, work, res)
        standalone_part(args, topology, lab_env, workdir, work, res)
    except pytest.fail.Exception as exc:  # a harness wait ran out
        raise SystemExit(f"benchmark stopped: {exc}") from None
    except KeyboardInterrupt:
        say("interrupted: the lab, the controllers and etcd are stopped")
        return 130
    finally:
        # etcd preallocates 64 MB of WAL; its log stays with the members' logs
        shutil.rmtree(workdir / "cluster" / "etcd" / "data", ignore_errors=True)
    res["load_avg_end"] = os.getloadavg()
    res["run_s"] = time.monotonic() - t_run
    table = report(res)
    print(table)
    (out_dir / f"{stamp}-cluster.md").write_text(table + "\n")
    (out_dir / f"{stamp}-cluster.json").write_text(json.dumps(res, indent=1, default=str))
    say(f"wrote {out_dir / f'{stamp}-cluster.md'} and .json ({res['run_s']:.0f} s)")
    return 0


# -- the report --------------------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f} ms" if v < 1000 else f"{v / 1000:,.2f} s"


def _stats(values: Sequence[float]) -> tuple[float, float, float]:
    return statistics.median(values), pct(values, 0.9), max(values)


def report(res: dict[str, Any]) -> str:
    la0, la1 = res["load_avg_start"], res["load_avg_end"]
    lines = [f"## Cluster benchmark ({res['mode']}), "
             f"{datetime.strptime(res['started'], '%Y%m%dT%H%M%SZ'):%Y-%m-%d %H:%M} UTC",
             "",
             f"{res['topology']}: {res['switches']} switches, {res['hosts']} hosts, "
             f"{res['file_intents']} intents from the file; 3 members + 1 etcd, or one "
             "standalone controller (SQLite), all on this machine with the lab (Mininet, OVS "
             f"userspace datapath); {res['cpus']} CPUs (shared); load average at start "
             f"{la0[0]:.2f} / {la0[1]:.2f} / {la0[2]:.2f}, at end {la1[0]:.2f} / "
             f"{la1[1]:.2f} / {la1[2]:.2f}; run {res['run_s'] / 60:.1f} min.",
             "",
             "| what | runs | median | p90 | worst | anchor | anchor / ours (median) | "
             "target |",
             "|---|---:|---:|---:|---:|---|---:|---|"]

    def row(what: str, values: Sequence[float], anchor_ms: float | None, anchor: str,
            target: str) -> None:
        if not values:
            lines.append(f"| {what} | 0 | - | - | - | {anchor} | - | {target} |")
            return
        med, p90, worst = _stats(values)
        ratio = f"{anchor_ms / med:.2f}" if anchor_ms else "-"
        lines.append(f"| {what} | {len(values)} | {_ms(med)} | {_ms(p90)} | {_ms(worst)} | "
                     f"{anchor} | {ratio} | {target} |")

    onos_to = f"ONOS ~{ONOS_TAKEOVER_S:g} s (ITU J-FET 2021)"
    for how, target in (("kill", f"median ≤ {KILL_TARGET_S:g} s"),
                        ("freeze", f"median ≤ {FREEZE_TARGET_S:g} s")):
        runs = res[how]
        sig = "SIGKILL" if how == "kill" else "SIGSTOP"
        row(f"takeover after {sig}: {sig} → every orphan mastered by a survivor, role "
            f"confirmed (/cluster polled every {POLL_S * 1000:.0f} ms)",
            [r["polled_ms"] for r in runs], ONOS_TAKEOVER_S * 1000, onos_to, target)
        row(f"takeover after {sig}, from the survivors' logs: {sig} → last "
            "`event=takeover`", [r["last_takeover_ms"] for r in runs
                                 if r["last_takeover_ms"] is not None],
            ONOS_TAKEOVER_S * 1000, onos_to, target)
    for where, label, onos1000, onos1, names in (
            ("cluster", "3-member cluster", ONOS_CLUSTER_1000_MS, ONOS_CLUSTER_1_MS,
             "ONOS 1.0 3-node"),
            ("single", "standalone controller", ONOS_1000_INTENTS_MS, ONOS_1_INTENT_MS,
             "ONOS 1.0 1 node")):
        batch = res[f"batch_{where}"]
        row(f"1,000 intents in one batch, {label}: POST → 201",
            [r["ms"] for r in batch], onos1000, f"{names} {onos1000:g} ms", "")
        row(f"1,000 intents in one batch, {label}: POST → every controller's switches "
            "confirmed (logs)", [r["everywhere_ms"] for r in batch
                                 if r["everywhere_ms"] is not None],
            onos1000, f"{names} {onos1000:g} ms", "")
        row(f"1 intent, {label}: POST → 201", [r["ms"] for r in res[f"one_{where}"]],
            onos1, f"{names} {onos1:g} ms", "")

    lines += ["", "| takeover | runs | switches moved | SIGKILL/SIGSTOP → a survivor "
              "learns (median, max) | peer watch fired (median) | orphaned → MASTER role "
              "reply, per switch (median of medians, worst) | polls per takeover (median) | "
              "confirming poll sent → answered (median) | "
              "back: restart/SIGCONT → all three master their share (median, max) |",
              "|---|---:|---:|---|---:|---|---:|---|---|"]
    for how in ("kill", "freeze"):
        runs = res[how]
        if not runs:
            continue
        learned = [r["learned_ms"] for r in runs if r["learned_ms"] is not None]
        lost = [r["peer_lost_ms"] for r in runs if r["peer_lost_ms"] is not None]
        roles = [r["orphan_to_role_ms"] for r in runs if r["orphan_to_role_ms"]]
        lines.append(
            f"| {'SIGKILL' if how == 'kill' else 'SIGSTOP'} | {len(runs)} | "
            f"{statistics.median(r['orphans'] for r in runs):g} | "
            + (f"{_ms(statistics.median(learned))}, {_ms(max(learned))}" if learned else "-")
            + f" | {_ms(statistics.median(lost)) if lost else '-'} | "
            + (f"{_ms(statistics.median(x['median'] for x in roles))}, "
               f"{_ms(max(x['max'] for x in roles))}" if roles else "-")
            + f" | {statistics.median(r['polls'] for r in runs):g} | "
            f"{_ms(statistics.median(r['sent_ms'] for r in runs))} → "
            f"{_ms(statistics.median(r['polled_ms'] for r in runs))} | "
            f"{statistics.median(r['rejoin_s'] for r in runs):.1f} s, "
            f"{max(r['rejoin_s'] for r in runs):.1f} s |")

    lines += ["", "| intent writes | clients | seconds | acknowledged | writes/s | "
              "ratio to standalone | latency p50 / p90 / p99 | answers | states | "
              "per controller | removal (DELETE, same clients) |",
              "|---|---:|---:|---:|---:|---:|---|---|---|---|---|"]
    single = res["writes_single"]["writes_per_s"]
    for key, label in (("writes_single", "standalone controller (SQLite)"),
                       ("writes_cluster", "3-member cluster, clients spread over the three")):
        w = res[key]
        cl = w["cleanup"]
        lines.append(
            f"| {label} | {w['clients']} | {w['duration_s']:.1f} | {w['acked']} | "
            f"{w['writes_per_s']:.1f} | {w['writes_per_s'] / single:.2f} | "
            f"{_ms(w['p50_ms'])} / {_ms(w['p90_ms'])} / {_ms(w['p99_ms'])} | "
            f"{w['statuses']} | {w['states']} | {w['per_controller']} | "
            f"{cl['deleted']} in {cl['seconds']:.1f} s "
            f"({cl['deleted'] / max(cl['seconds'], 1e-9):.1f}/s) |")
    states: Counter[str] = Counter()
    for key in ("batch_cluster", "batch_single", "one_cluster", "one_single"):
        for r in res[key]:
            states.update(r["states"])
    e = res["writes_cluster"].get("etcd")
    if e:
        lines += ["", f"Cluster writes: {e['txns']:.0f} etcd transactions for "
                  f"{res['writes_cluster']['acked']} acknowledged writes, at least "
                  f"{e['txns_per_write']:.2f} per write once the members' status updates "
                  f"(at most {e['status_max']:.0f}) are taken out (1.00: no compare-and-swap "
                  "on the intent id counter lost); "
                  f"{e['txn_mean_ms']:.1f} ms per transaction on average."]
    for key, what in (("batch_cluster", "1,000-intent batch"), ("one_cluster", "one intent")):
        txn = [r["etcd_txn_ms"] for r in res[key] if r.get("etcd_txn_ms") is not None]
        if txn:
            lines.append(f"Cluster, {what}: the answering member spent a median "
                         f"{_ms(statistics.median(txn))} in etcd transactions (of "
                         f"{_ms(statistics.median(r['ms'] for r in res[key]))} to the 201).")
    lines += ["", f"One poll (GET /cluster on both survivors at once) takes "
              f"{_ms(res['idle_read_ms'])} at rest (median).", ""]
    lines += [f"States in the 201 answers of the batch and one-intent runs: "
              f"{dict(states)}. Bring-up: cluster and lab {res['cluster_up_s']:.0f} s, "
              f"standalone and lab {res['standalone_up_s']:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
