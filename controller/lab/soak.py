"""The chaos soak: seeded random faults on a real lab with the real controller, and invariant
checks after each quiet period (docs/soak.md).

Three parts, each usable alone:

- :class:`Schedule`: pure and seeded. From the topology, the weights and the seed it yields the
  same :class:`Event` sequence every time (link down/up, flap bursts, switch restarts and
  disconnects, controller SIGKILLs, bursts of REST writes), keeping track of which links it
  cut so every event is meaningful where it happens.
- :class:`Invariants`: reads the switches (through the API's live reads and ``ovs-ofctl``),
  the API, the controller's SQLite file and ``/proc``; each check returns the
  :class:`Violation` list, each with a diff. Its oracle of paths is built here, from the
  topology file and the link states, with networkx: it shares nothing with the engine.
- :func:`run_soak`: a controller process (or three cluster members on an etcd child
  process), a lab connected to it, the schedule, the checks; on the first violation it prints
  the seed, the event log and the diff and stops. Its output ends with exactly one line
  ``soak: N events, C checks, V violations, L pings lost``.

The lab package never imports the controller: everything here talks to the controller over
HTTP and reads its store as written (the SQLite file with :mod:`sqlite3`, or etcd's keys with
the cluster's etcd client), as an operator's tool would.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import count, islice
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import networkx as nx

from controller.cluster.etcd import EtcdClient
from controller.cluster.etcdproc import EtcdServer
from controller.errors import LabError
from controller.lab import process
from controller.lab.build import ControllerAddress
from controller.lab.network import LabNetwork
from controller.lab.ovs import run_command
from controller.settings import Settings
from controller.topology.model import Topology
from controller.topology.wiring import port_plan

__all__ = ["DEFAULT_WEIGHTS", "EVENT_KINDS", "ControllerProcess", "Event", "Invariants",
           "Oracle", "ResourceSample", "Schedule", "SoakConfig", "SoakResult", "Violation",
           "WriteOp", "least_squares_slope", "run_soak"]

log = logging.getLogger(__name__)

EVENT_KINDS = ("link_down", "link_up", "link_flap", "switch_restart", "switch_disconnect",
               "controller_kill", "rest_writes")
DEFAULT_WEIGHTS: Mapping[str, float] = {
    "link_down": 4.0, "link_up": 3.0, "link_flap": 1.0, "switch_restart": 1.5,
    "switch_disconnect": 1.5, "controller_kill": 1.0, "rest_writes": 2.0}
"""relative weights of the event kinds (any kind may be given 0)"""

FLAP_CHANGES = 100
"""state changes of one flap burst (even: the link ends as it started, up)"""
FLAP_SECONDS = 10.0
LATENCY_BOUNDS_MS = (3.0, 5.0, 10.0, 20.0, 40.0)
BANDWIDTHS_MBPS = (1000.0, 20000.0, 150000.0, 300000.0)
"""reservations of the bandwidth intents: the larger ones fill 400 Gbps links, so admission
and residual capacity are exercised, not only paths"""
SITE_STATES = ("up", "draining", "down")
ETCD_PREFIX = "/cpn"
"""where a cluster's store keeps its records in etcd (``controller/store/etcd.py``)"""
EPS = 1e-6

# Growth thresholds of the resource check (docs/soak.md): after the warm-up, a least-squares
# slope above these, over at least RESOURCE_MIN_SPAN_S of one controller process, is growth
# that would not stop on its own.
RSS_SLOPE_LIMIT_MB_PER_H = 64.0
THREADS_SLOPE_LIMIT_PER_H = 20.0
FDS_SLOPE_LIMIT_PER_H = 50.0
THREAD_POOL_ALLOWANCE = 40
"""threads the controller may add and drop with its load: the API's worker pool (anyio's,
up to 40 threads, idle ones pruned) grows with concurrent requests, so a thread slope alone
is not growth; the count must also rise past this over the window"""
RESOURCE_WARMUP_S = 120.0
RESOURCE_MIN_SPAN_S = 600.0


# -- the schedule (pure) ---------------------------------------------------------------------
@dataclass(frozen=True)
class WriteOp:
    """One REST write of a burst.

    ``kind``: ``add`` (one intent), ``batch`` (``POST /intents/batch``), ``delete`` (one of
    the intents the soak added, chosen at run time by ``pick`` in [0, 1)), ``place``,
    ``unplace`` (a placement the soak made, by ``pick``), ``site_state``. ``body``: the JSON
    body (``add``, ``batch``, ``place``, ``site_state``), or nothing."""

    kind: str
    body: dict[str, Any] = field(default_factory=dict)
    pick: float = 0.0
    site: str | None = None

    def describe(self) -> str:
        """One short phrase for the event log."""
        if self.kind == "add":
            b = self.body
            bw = f" {b['min_bandwidth_mbps']:g} Mbps" if b.get("min_bandwidth_mbps") else ""
            return f"add {b['src']}>{b['dst']} <= {b['max_latency_ms']:g} ms{bw}"
        if self.kind == "batch":
            return f"batch of {len(self.body['intents'])}"
        if self.kind == "place":
            return f"place {self.body['demand']:g} {self.body['kind']} from {self.body['source']}"
        if self.kind == "site_state":
            return f"site {self.site} {self.body['state']}"
        return f"{self.kind} pick {self.pick:.2f}"


@dataclass(frozen=True)
class Event:
    """One step of the soak: a fault (or none, for ``rest_writes``) and the REST writes fired
    concurrently with it.

    ``link``: index into ``topology.links``; ``node``: a switch; ``duration_s``: how long a
    disconnect or a controller kill lasts, or a flap burst's length; ``changes``: a flap
    burst's state changes."""

    index: int
    kind: str
    link: int | None = None
    node: str | None = None
    duration_s: float = 0.0
    changes: int = 0
    writes: tuple[WriteOp, ...] = ()
    member: int | None = None
    """the cluster member a controller kill hits (index; None with one controller)"""

    def describe(self, topology: Topology | None = None) -> str:
        """The event as one line of the event log."""
        what = self.kind
        if self.link is not None:
            name = str(self.link)
            if topology is not None:
                ln = topology.links[self.link]
                name = f"{self.link} ({ln.a}-{ln.b})"
            what += f" link {name}"
        if self.node is not None:
            what += f" {self.node}"
        if self.member is not None:
            what += f" m{self.member + 1}"
        if self.kind == "link_flap":
            what += f" x{self.changes} in {self.duration_s:g} s"
        elif self.duration_s:
            what += f" for {self.duration_s:.1f} s"
        if self.writes:
            kinds = Counter(w.kind for w in self.writes)
            what += " + writes " + ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        return f"#{self.index} {what}"


class Schedule:
    """A seeded, reproducible stream of :class:`Event` for ``topology``.

    Pure: ``random.Random(seed)`` is the only source of choice, and the schedule's own record
    of which links it cut (``max_links_down`` at most; a ``link_down`` beyond it becomes a
    ``link_up`` and a ``link_up`` with nothing down a ``link_down``) keeps the stream
    meaningful without looking at the network. Same seed, topology and weights: same
    events."""

    def __init__(self, topology: Topology, seed: int, weights: Mapping[str, float] | None = None,
                 *, max_links_down: int = 3, writes_per_event: int = 4,
                 burst_writes: int = 12, members: int = 1) -> None:
        unknown = set(weights or {}) - set(EVENT_KINDS)
        if unknown:
            raise ValueError(f"unknown event kinds {sorted(unknown)}; known: {EVENT_KINDS}")
        self.topology = topology
        self.seed = seed
        self.weights = {k: float((weights or DEFAULT_WEIGHTS).get(k, 0.0)) for k in EVENT_KINDS}
        if any(w < 0 or math.isnan(w) for w in self.weights.values()):
            raise ValueError(f"weights must be >= 0: {self.weights}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one event kind needs a positive weight")
        self.max_links_down = max_links_down
        self.members = members
        self.writes_per_event = writes_per_event
        self.burst_writes = burst_writes
        self._rng = random.Random(seed)
        self._down: list[int] = []
        self._soak_intents = 0
        self._placements = 0
        self._hosts = [h.name for h in topology.hosts]
        self._nodes = [n.name for n in topology.nodes]
        self._sites = [s.id for s in topology.compute_sites]
        self._index = count()
        self._names = count(1)

    def __iter__(self) -> Iterator[Event]:
        while True:
            yield self.next_event()

    def take(self, n: int) -> list[Event]:
        """The next ``n`` events."""
        return list(islice(self, n))

    @property
    def links_down(self) -> tuple[int, ...]:
        """Links the schedule has cut so far (and not restored)."""
        return tuple(sorted(self._down))

    def next_event(self) -> Event:
        """The next event of the stream."""
        rng = self._rng
        kinds = [k for k in EVENT_KINDS if self.weights[k] > 0]
        kind = rng.choices(kinds, weights=[self.weights[k] for k in kinds])[0]
        links = len(self.topology.links)
        if kind == "link_down" and (len(self._down) >= self.max_links_down
                                    or len(self._down) >= links):
            kind = "link_up"
        if kind == "link_up" and not self._down:
            kind = "link_down" if links else "rest_writes"
        if kind == "link_flap" and len(self._down) >= links:
            kind = "link_up"
        index = next(self._index)
        writes: tuple[WriteOp, ...] = ()
        if kind == "rest_writes":
            writes = self._writes(self.burst_writes)
        elif self.writes_per_event and rng.random() < 0.8:
            writes = self._writes(rng.randint(1, self.writes_per_event))
        if kind == "link_down":
            up = [i for i in range(links) if i not in self._down]
            link = rng.choice(up)
            self._down.append(link)
            return Event(index, kind, link=link, writes=writes)
        if kind == "link_up":
            link = rng.choice(sorted(self._down))
            self._down.remove(link)
            return Event(index, kind, link=link, writes=writes)
        if kind == "link_flap":
            up = [i for i in range(links) if i not in self._down]
            return Event(index, kind, link=rng.choice(up), changes=FLAP_CHANGES,
                         duration_s=FLAP_SECONDS, writes=writes)
        if kind == "switch_restart":
            return Event(index, kind, node=rng.choice(self._nodes), writes=writes)
        if kind == "switch_disconnect":
            return Event(index, kind, node=rng.choice(self._nodes),
                         duration_s=round(rng.uniform(1.0, 5.0), 1), writes=writes)
        if kind == "controller_kill":
            duration = round(rng.uniform(0.5, 3.0), 1)
            # drawn only for a cluster, so one controller's schedules stay as they were
            member = rng.randrange(self.members) if self.members > 1 else None
            return Event(index, kind, duration_s=duration, writes=writes, member=member)
        return Event(index, kind, writes=writes)

    def _intent_body(self) -> dict[str, Any]:
        rng = self._rng
        src, dst = rng.sample(self._hosts, 2)
        body: dict[str, Any] = {"name": f"soak-{next(self._names)}", "src": src, "dst": dst,
                                "max_latency_ms": rng.choice(LATENCY_BOUNDS_MS)}
        if rng.random() < 0.35:
            body["min_bandwidth_mbps"] = rng.choice(BANDWIDTHS_MBPS)
            body["police"] = rng.random() < 0.4
        return body

    def _writes(self, n: int) -> tuple[WriteOp, ...]:
        rng = self._rng
        ops: list[WriteOp] = []
        sites_touched: set[str] = set()
        for _ in range(n):
            # deletes grow likelier as the soak's intents pile up, so their number stays
            # around a few dozen however long the soak runs; the other kinds keep their share
            p_delete = min(0.45, self._soak_intents / 80)
            kind = rng.choices(("add", "batch", "delete", "compute", "site_state"),
                               weights=(0.30, 0.10, p_delete, 0.25,
                                        0.10 if self._sites else 0.0))[0]
            if kind == "add":
                ops.append(WriteOp("add", self._intent_body()))
                self._soak_intents += 1
            elif kind == "batch":
                k = rng.randint(2, 5)
                ops.append(WriteOp("batch", {"intents": [self._intent_body()
                                                         for _ in range(k)]}))
                self._soak_intents += k
            elif kind == "delete":
                ops.append(WriteOp("delete", pick=rng.random()))
                self._soak_intents -= 1
            elif kind == "compute":
                if self._placements > 6 and rng.random() < 0.6:
                    ops.append(WriteOp("unplace", pick=rng.random()))
                    self._placements -= 1
                else:
                    ops.append(WriteOp("place", {
                        "source": rng.choice(self._hosts),
                        "demand": rng.choice((0.1, 0.5, 1.0, 2.0)),
                        "kind": rng.choice(("general", "intelligent")),
                        "max_latency_ms": rng.choice((5.0, 20.0, 40.0))}))
                    self._placements += 1
            else:
                free = [s for s in self._sites if s not in sites_touched]
                if not free:
                    continue
                site = rng.choice(free)
                sites_touched.add(site)  # one state write per site and burst: a defined end
                ops.append(WriteOp("site_state", {"state": rng.choice(SITE_STATES)}, site=site))
        return tuple(ops)


# -- the oracle of paths (networkx) -----------------------------------------------------------
class Oracle:
    """Least cost within a latency bound on the links that are up, from the topology file,
    computed with networkx (Yen's k shortest simple paths by cost, the first within the bound
    wins). Independent of the engine under test.

    Capacity is per direction (docs/topology.md): ``residual_mbps`` gives each link's
    residual as ``(a to b, b to a)``, and with ``min_bandwidth_mbps`` only the directions
    with that much left are used."""

    def __init__(self, topology: Topology, up: Sequence[bool],
                 residual_mbps: Sequence[tuple[float, float]] | None = None, *,
                 min_bandwidth_mbps: float = 0.0, max_paths: int = 5000) -> None:
        self.topology = topology
        self.max_paths = max_paths
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(n.name for n in topology.nodes)
        for i, ln in enumerate(topology.links):
            if not up[i]:
                continue
            for d, (u, v) in enumerate(((ln.a, ln.b), (ln.b, ln.a))):
                if residual_mbps is not None \
                        and residual_mbps[i][d] + EPS < min_bandwidth_mbps:
                    continue
                old = self.graph.get_edge_data(u, v)
                if old is None or ln.cost < old["cost"]:
                    self.graph.add_edge(u, v, cost=ln.cost, latency=ln.latency_ms, index=i)
        self.undecided = 0

    def path_cost_latency(self, path: Sequence[str]) -> tuple[float, float] | None:
        """Cost and latency of ``path`` on the graph; None when a hop is not an up link."""
        cost = latency = 0.0
        for u, v in zip(path, path[1:], strict=False):
            e = self.graph.get_edge_data(u, v)
            if e is None:
                return None
            cost += e["cost"]
            latency += e["latency"]
        return cost, latency

    def best(self, src: str, dst: str, max_latency_ms: float
             ) -> tuple[float, float, list[str]] | None | str:
        """``(cost, latency, path)`` of the least-cost path within the bound; None when none
        exists; ``"undecided"`` when ``max_paths`` paths were tried without an answer."""
        if src == dst:
            return 0.0, 0.0, [src]
        try:
            lowest = nx.dijkstra_path_length(self.graph, src, dst, weight="latency")
        except nx.NetworkXNoPath:
            return None
        if lowest > max_latency_ms + EPS:
            return None
        for k, path in enumerate(nx.shortest_simple_paths(self.graph, src, dst, weight="cost")):
            if k >= self.max_paths:
                self.undecided += 1
                return "undecided"
            cl = self.path_cost_latency(path)
            assert cl is not None
            if cl[1] <= max_latency_ms + EPS:
                return cl[0], cl[1], list(path)
        return None


# -- checks ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Violation:
    """One broken invariant: which (1-5, or ``quiet``), about what, and the diff."""

    invariant: str
    subject: str
    message: str
    diff: str = ""

    def render(self) -> str:
        """The violation for people: a headline and the indented diff."""
        head = f"[{self.invariant}] {self.subject}: {self.message}"
        if not self.diff:
            return head
        return head + "\n" + "\n".join(f"    {ln}" for ln in self.diff.splitlines())


@dataclass(frozen=True)
class ResourceSample:
    """The controller process at one check."""

    t_s: float
    pid: int
    rss_mb: float
    threads: int
    fds: int


def least_squares_slope(points: Sequence[tuple[float, float]]) -> float:
    """The least-squares slope of ``(x, y)`` points (0 with fewer than two distinct x)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx <= 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def read_process(pid: int, t_s: float) -> ResourceSample | None:
    """RSS, threads and open descriptors of ``pid`` from ``/proc`` (None: gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(ln.split(":", 1) for ln in status.splitlines() if ":" in ln)
    rss_kb = int(fields.get("VmRSS", "0 kB").split()[0])
    return ResourceSample(t_s, pid, rss_kb / 1024, int(fields.get("Threads", "0")), fds)


def resource_slopes(samples: Sequence[ResourceSample], warmup_s: float = RESOURCE_WARMUP_S
                    ) -> dict[str, Any]:
    """Per-hour least-squares slopes of RSS (MB), threads and descriptors over the samples of
    the longest-lived controller process after its warm-up (a run with controller kills has
    several; the latest of equals), with the span they cover, and the peaks of every process
    (``*_max``: bounded across restarts too)."""
    if not samples:
        return {"pid": None, "samples": 0, "span_s": 0.0, "rss_mb_per_h": 0.0,
                "threads_per_h": 0.0, "fds_per_h": 0.0, "threads_rise": 0,
                "processes": 0, "rss_mb_max": 0.0, "threads_max": 0, "fds_max": 0}
    by_pid: dict[int, list[ResourceSample]] = {}
    for s in samples:
        by_pid.setdefault(s.pid, []).append(s)

    def after_warmup(mine: list[ResourceSample]) -> list[ResourceSample]:
        return [s for s in mine if s.t_s - mine[0].t_s >= warmup_s] or mine[-1:]

    runs = [after_warmup(mine) for mine in by_pid.values()]  # in order of first sample
    used = max(reversed(runs), key=lambda r: r[-1].t_s - r[0].t_s)
    pid = used[0].pid
    span = used[-1].t_s - used[0].t_s

    def per_h(get: Callable[[ResourceSample], float]) -> float:
        return least_squares_slope([(s.t_s, get(s)) for s in used]) * 3600.0

    quarter = max(1, len(used) // 4)
    return {"pid": pid, "samples": len(used), "span_s": span,
            "rss_mb_per_h": per_h(lambda s: s.rss_mb),
            "threads_per_h": per_h(lambda s: s.threads),
            "fds_per_h": per_h(lambda s: s.fds),
            # the least of the last quarter over the most of the first: a pool that filled
            # up and fluctuates does not rise, a leak does
            "threads_rise": min(s.threads for s in used[-quarter:])
            - max(s.threads for s in used[:quarter]),
            "processes": len(by_pid), "rss_mb_max": max(s.rss_mb for s in samples),
            "threads_max": max(s.threads for s in samples),
            "fds_max": max(s.fds for s in samples)}


def resource_violations(slopes: Mapping[str, Any], min_span_s: float = RESOURCE_MIN_SPAN_S
                        ) -> list[Violation]:
    """Growth beyond the documented thresholds, judged only over ``min_span_s`` or more."""
    if slopes["span_s"] < min_span_s or slopes["samples"] < 5:
        return []
    out = []
    for key, limit, unit in (("rss_mb_per_h", RSS_SLOPE_LIMIT_MB_PER_H, "MB/h"),
                             ("threads_per_h", THREADS_SLOPE_LIMIT_PER_H, "threads/h"),
                             ("fds_per_h", FDS_SLOPE_LIMIT_PER_H, "fds/h")):
        if key == "threads_per_h" and slopes.get("threads_rise", 0) <= THREAD_POOL_ALLOWANCE:
            continue
        if slopes[key] > limit:
            out.append(Violation("5", f"controller pid {slopes['pid']}",
                                 f"{key} {slopes[key]:.1f} {unit} over "
                                 f"{slopes['span_s'] / 60:.0f} min exceeds {limit:g} {unit}",
                                 json.dumps(slopes, indent=1)))
    return out


def flow_key(flow: Mapping[str, Any]) -> str:
    """A flow without its counters, as one comparable string."""
    return json.dumps({k: flow.get(k) for k in ("table_id", "priority", "cookie", "match",
                                                "instructions")}, sort_keys=True)


def diff_flows(switch: Sequence[Mapping[str, Any]], plan: Sequence[Mapping[str, Any]]
               ) -> str:
    """Missing (``-``, planned but not on the switch) and stray (``+``) flows; "" when the
    two agree as multisets."""
    have, want = Counter(map(flow_key, switch)), Counter(map(flow_key, plan))
    lines = [f"- missing {k}" for k in sorted((want - have).elements())]
    lines += [f"+ stray   {k}" for k in sorted((have - want).elements())]
    return "\n".join(lines)


_METER_RE = re.compile(r"meter=(\d+)\b.*?\brate=(\d+)", re.S)
_GROUP_RE = re.compile(r"group_id=(\d+)")


def parse_meters(text: str) -> dict[int, int]:
    """``ovs-ofctl -O OpenFlow13 dump-meters`` output as meter id -> rate (kbit/s)."""
    return {int(m.group(1)): int(m.group(2))
            for m in _METER_RE.finditer(text.replace("\n", " ").replace("meter=", "\nmeter="))}


def parse_groups(text: str) -> set[int]:
    """Group ids of ``ovs-ofctl -O OpenFlow13 dump-groups`` output."""
    return {int(g) for g in _GROUP_RE.findall(text)}


_TO_CONTROLLER = 0xFFFF_FFFD  # OFPP_CONTROLLER
_LLDP_ARP = (0x88CC, 0x0806)


def packet_in_meters_wanted(flows: Sequence[Mapping[str, Any]], packet_in_pps: int,
                            control_pps: int) -> dict[int, int]:
    """meter id -> rate (packets/s) the switch should hold for its packet-ins: the meters
    its flows to the controller pass (the API's form of flows), at the configured rate of
    their kind (LLDP and ARP: ``control_pps``, anything else: ``packet_in_pps``). A flow to
    the controller without a meter while its kind has a rate maps to id -1, which no switch
    holds, so the check reports it."""
    out: dict[int, int] = {}
    for f in flows:
        insts = [(i["type"], i["value"]) for i in f.get("instructions", [])]
        if ("output", _TO_CONTROLLER) not in insts:
            continue
        rate = control_pps if f.get("match", {}).get("eth_type") in _LLDP_ARP \
            else packet_in_pps
        meters = [int(v) for k, v in insts if k == "meter"]
        if rate > 0:
            out[meters[0] if meters else -1] = rate
    return out


BYPASS_GROUP_BASE = 0x7F00_0000
BYPASS_IP_GROUP_BASE = 0x7E00_0000
"""the fast-reroute group ids of a port as docs/controller.md gives them (tunnels, plain IPv4:
base + port); written out here, not imported, so the check does not take the controller's
word for them"""


def bypass_groups_wanted(topology: Topology) -> dict[str, set[int]]:
    """Switch name -> the fast-reroute groups it holds whatever its flows use: two per port
    toward another switch (tunnels, plain IPv4), from the port plan the lab wires."""
    plan = port_plan(topology)
    out: dict[str, set[int]] = {n.name: set() for n in topology.nodes}
    for i, lk in enumerate(topology.links):
        for node in (lk.a, lk.b):
            port = plan.link_port(i, node)
            out[node] |= {BYPASS_GROUP_BASE + port, BYPASS_IP_GROUP_BASE + port}
    return out


def groups_referenced(flows: Sequence[Mapping[str, Any]]) -> set[int]:
    """Group ids the flows' instructions send to."""
    out: set[int] = set()

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            if "group_id" in x:
                out.add(int(x["group_id"]))
            elif x.get("type") == "group" and isinstance(x.get("value"), int):
                out.add(x["value"])  # the API's form: {"type": "group", "value": 5}
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            # the API renders an action as [name, argument]: ["group", 5]
            if len(x) == 2 and x[0] == "group" and isinstance(x[1], int):
                out.add(x[1])
            for v in x:
                walk(v)

    for f in flows:
        walk(f.get("instructions"))
    return out


# -- the controller as a process, and its API ------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControllerProcess:
    """``python -m controller.main`` as a child process: the same arguments, store file and
    token on every start, so a SIGKILL and restart is exactly that."""

    def __init__(self, topology_path: Path, workdir: Path, *, startup_grace_s: float = 5.0,
                 extra_args: Sequence[str] = (), name: str = "controller",
                 token_path: Path | None = None) -> None:
        self.topology_path = topology_path
        self.workdir = workdir
        self.name = name
        self.ofp_port = _free_port()
        self.api_port = _free_port()
        self.state_dir = workdir / "state"
        self.log_path = workdir / "controller.log"
        self.token_path = token_path or workdir / "api-token"
        workdir.mkdir(parents=True, exist_ok=True)
        if not self.token_path.exists():
            self.token_path.write_text(secrets.token_urlsafe(24))
            self.token_path.chmod(0o600)
        self.token = self.token_path.read_text().strip()
        self.startup_grace_s = startup_grace_s
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def address(self) -> ControllerAddress:
        """Where the switches connect."""
        return ControllerAddress("127.0.0.1", self.ofp_port)

    @property
    def api_url(self) -> str:
        """The REST API's base URL."""
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    @property
    def store_path(self) -> Path:
        """The SQLite store the controller writes."""
        return self.state_dir / "state.sqlite3"

    @property
    def pid(self) -> int | None:
        """The running process's id."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def command(self) -> list[str]:
        """The command line (the same on every start)."""
        return [sys.executable, "-m", "controller.main", "--topology", str(self.topology_path),
                "--ofp-port", str(self.ofp_port), "--api-port", str(self.api_port),
                "--state-dir", str(self.state_dir), "--api-token-file", str(self.token_path),
                "--log-file", str(self.log_path),
                "--startup-grace", str(self.startup_grace_s), *self.extra_args]

    def start(self, timeout_s: float = 30.0) -> None:
        """Start it and wait (bounded) until its API answers."""
        self.starts += 1
        with open(self.log_path, "a") as f:
            f.write(f"===== soak start {self.starts} =====\n")
        with open(self.workdir / "controller.stderr", "ab") as stderr:  # the child keeps it
            self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                         stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"the controller exited ({self.proc.returncode}) on start; "
                               f"log: {self.log_path}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise LabError(f"the controller's API did not answer within {timeout_s:g} s")

    def kill(self) -> None:
        """SIGKILL: no goodbye to anyone."""
        if self.proc is not None:
            process.kill(self.proc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None:
            process.stop(self.proc)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class WriteRecord:
    """One REST write the soak fired: what, the answer's status (None: no answer), and the
    ids it acknowledged."""

    event: int
    op: str
    status: int | None
    intent_ids: list[int] = field(default_factory=list)
    placement_id: str | None = None
    site: str | None = None
    state: str | None = None
    error: str = ""

    @property
    def acked(self) -> bool:
        """A 2xx answer: the controller promised it."""
        return self.status is not None and 200 <= self.status < 300


class Ledger:
    """Every write the soak fired, and what the acknowledged ones promise (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[WriteRecord] = []
        self.live_intents: list[int] = []
        """acknowledged adds not (yet) deleted: the candidates of a delete"""
        self.live_placements: list[str] = []
        self.added: set[int] = set()
        self.deleted: set[int] = set()
        self.uncertain_intents: set[int] = set()
        """targets of deletes that got no answer: either way is right"""
        self.placed: set[str] = set()
        self.unplaced: set[str] = set()
        self.uncertain_placements: set[str] = set()
        self.site_state: dict[str, str] = {}
        self.uncertain_sites: set[str] = set()

    def take_intent(self, pick: float) -> int | None:
        with self.lock:
            if not self.live_intents:
                return None
            return self.live_intents.pop(int(pick * len(self.live_intents)))

    def take_placement(self, pick: float) -> str | None:
        with self.lock:
            if not self.live_placements:
                return None
            return self.live_placements.pop(int(pick * len(self.live_placements)))

    def record(self, rec: WriteRecord) -> None:
        with self.lock:
            self.records.append(rec)
            if rec.op in ("add", "batch"):
                if rec.acked:
                    self.added.update(rec.intent_ids)
                    self.live_intents.extend(rec.intent_ids)
            elif rec.op == "delete" and rec.intent_ids:
                iid = rec.intent_ids[0]
                if rec.acked:
                    self.deleted.add(iid)
                elif rec.status == 404:
                    pass  # already gone: nothing promised either way
                else:
                    self.uncertain_intents.add(iid)
            elif rec.op == "place" and rec.acked and rec.placement_id:
                self.placed.add(rec.placement_id)
                self.live_placements.append(rec.placement_id)
            elif rec.op == "unplace" and rec.placement_id:
                if rec.acked:
                    self.unplaced.add(rec.placement_id)
                else:
                    self.uncertain_placements.add(rec.placement_id)
            elif rec.op == "site_state" and rec.site:
                if rec.acked and rec.state:
                    self.site_state[rec.site] = rec.state
                    self.uncertain_sites.discard(rec.site)
                elif rec.status is None or rec.status >= 500:
                    self.uncertain_sites.add(rec.site)

    def acked_count(self) -> int:
        with self.lock:
            return sum(1 for r in self.records if r.acked)


class Api:
    """The controller's REST API (one httpx client, shared by the write pool's threads)."""

    def __init__(self, ctl: ControllerProcess) -> None:
        self.ctl = ctl
        self.client = httpx.Client(timeout=30.0,
                                   headers={"Authorization": f"Bearer {ctl.token}"})

    def url(self, path: str) -> str:
        return f"{self.ctl.api_url}{path}"

    def get(self, path: str, **params: Any) -> Any:
        r = self.client.get(self.url(path), params=params or None)
        r.raise_for_status()
        return r.json()

    def send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, self.url(path), json=body)

    def close(self) -> None:
        self.client.close()


class Controllers:
    """The controllers the soak runs: one process on its SQLite store, or ``members``
    cluster members (``--cluster``) on an etcd child process, every switch connected to
    each. All share one API token; each has its :class:`Api`."""

    def __init__(self, topology_path: Path, workdir: Path, members: int = 1,
                 extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.etcd: EtcdServer | None = None
        token = workdir / "api-token"
        workdir.mkdir(parents=True, exist_ok=True)
        if members > 1:
            self.etcd = EtcdServer(workdir=workdir / "etcd")
            self.procs = [ControllerProcess(
                topology_path, workdir / f"m{i}", name=f"m{i}", token_path=token,
                extra_args=["--cluster", self.etcd.client_url, "--member-id", f"m{i}",
                            *extra_args])
                for i in range(1, members + 1)]
        else:
            self.procs = [ControllerProcess(topology_path, workdir, token_path=token,
                                            extra_args=extra_args)]
        self.apis = {p.name: Api(p) for p in self.procs}

    @property
    def cluster(self) -> bool:
        """Members on etcd (else one controller on SQLite)."""
        return self.etcd is not None

    @property
    def addresses(self) -> list[ControllerAddress]:
        """Where the switches connect: every controller."""
        return [p.address for p in self.procs]

    def start(self) -> None:
        """etcd (in a cluster), then every controller, each waited for."""
        if self.etcd is not None:
            self.etcd.start()
        for p in self.procs:
            p.start()

    def stop(self) -> None:
        """Every controller, then etcd; the API clients closed."""
        for api in self.apis.values():
            api.close()
        for p in self.procs:
            p.stop()
        if self.etcd is not None:
            self.etcd.stop()

    def live(self) -> list[ControllerProcess]:
        """The controllers running now."""
        return [p for p in self.procs if p.pid is not None]

    def api(self) -> Api:
        """The API of the first running controller (reads of the whole network)."""
        live = self.live()
        return self.apis[(live[0] if live else self.procs[0]).name]

    def api_for(self, k: int) -> Api:
        """The API of the ``k``-th controller, counted round the running ones (writes spread
        over the members)."""
        live = self.live() or self.procs
        return self.apis[live[k % len(live)].name]

    def read_store(self) -> tuple[dict[int, dict[str, Any]], dict[str, dict[str, Any]],
                                  set[str]]:
        """The store as written, not through the controller: intents (id -> spec), compute
        sites (id -> record) and placement ids. One controller: its SQLite file opened
        read-only; a cluster: etcd's keys (the layout of ``controller/store/etcd.py``)."""
        if self.etcd is None:
            path = self.procs[0].store_path
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                return ({int(r[0]): json.loads(r[1])
                         for r in db.execute("SELECT id, spec FROM intents")},
                        {r[0]: json.loads(r[1])
                         for r in db.execute("SELECT id, spec FROM compute_sites")},
                        {r[0] for r in db.execute("SELECT id FROM placements")})
            finally:
                db.close()
        client = EtcdClient(self.etcd.client_url, timeout_s=5.0)
        intents = {int(kv.key.rsplit("/", 1)[1]): json.loads(kv.value)
                   for kv in client.get_prefix(f"{ETCD_PREFIX}/intents/")[0]}
        sites = {unquote(kv.key.rsplit("/", 1)[1]): json.loads(kv.value)
                 for kv in client.get_prefix(f"{ETCD_PREFIX}/compute/sites/")[0]}
        places = {unquote(kv.key.rsplit("/", 1)[1])
                  for kv in client.get_prefix(f"{ETCD_PREFIX}/compute/placements/")[0]}
        return intents, sites, places

    def log_tails(self, lines: int = 20) -> str:
        """The last lines of every controller's log."""
        return "\n".join(f"--- {p.name} ({p.log_path}) ---\n{p.log_tail(lines)}"
                         for p in self.procs)


def fire_write(api: Api, ledger: Ledger, event: int, op: WriteOp) -> WriteRecord:
    """Send one write and record what its answer promised."""
    rec = WriteRecord(event, op.kind, None)
    try:
        if op.kind == "add":
            r = api.send("POST", "/intents", op.body)
            rec.status = r.status_code
            if rec.acked:
                rec.intent_ids = [int(r.json()["id"])]
        elif op.kind == "batch":
            r = api.send("POST", "/intents/batch", op.body)
            rec.status = r.status_code
            if rec.acked:
                rec.intent_ids = [int(i["id"]) for i in r.json()]
        elif op.kind == "delete":
            iid = ledger.take_intent(op.pick)
            if iid is None:
                rec.error = "nothing to delete"
                return rec
            rec.intent_ids = [iid]
            r = api.send("DELETE", f"/intents/{iid}")
            rec.status = r.status_code
        elif op.kind == "place":
            r = api.send("POST", "/placements", op.body)
            rec.status = r.status_code
            if rec.acked:
                rec.placement_id = str(r.json()["id"])
        elif op.kind == "unplace":
            pid = ledger.take_placement(op.pick)
            if pid is None:
                rec.error = "nothing to release"
                return rec
            rec.placement_id = pid
            r = api.send("DELETE", f"/placements/{pid}")
            rec.status = r.status_code
        elif op.kind == "site_state":
            rec.site, rec.state = op.site, op.body["state"]
            r = api.send("PATCH", f"/compute-sites/{op.site}", op.body)
            rec.status = r.status_code
        else:
            raise ValueError(f"unknown write {op.kind}")
        if not rec.acked:
            rec.error = r.text[:200]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        rec.error = f"{type(exc).__name__}: {exc}"
    finally:
        if op.kind not in ("delete", "unplace") or rec.intent_ids or rec.placement_id:
            ledger.record(rec)
    return rec


# -- invariants -------------------------------------------------------------------------------
class Invariants:
    """The checks run after each quiet period (docs/soak.md lists them)."""

    def __init__(self, topology: Topology, lab: LabNetwork, ctls: Controllers,
                 ledger: Ledger, *, seed: int = 0, ping_sample: int = 3,
                 settle_timeout_s: float = 30.0, fast_reroute: bool = False) -> None:
        self.topology = topology
        self.bypass_groups = bypass_groups_wanted(topology) if fast_reroute else {}
        """switch -> the groups fast reroute adds beside those its flows use"""
        self.lab = lab
        self.ctls = ctls
        self.ledger = ledger
        self.rng = random.Random(seed ^ 0x5EED)
        self.ping_sample = ping_sample
        self.settle_timeout_s = settle_timeout_s
        # the soak's controllers run with the default packet-in meter rates
        self.packet_in_pps = int(Settings.default("network.packet_in_pps"))
        self.packet_in_control_pps = int(Settings.default("network.packet_in_control_pps"))
        self.expected_down: set[int] = set()
        """links the soak holds down now"""
        self.samples: dict[str, list[ResourceSample]] = {p.name: [] for p in ctls.procs}
        self.t0 = time.monotonic()
        self.pings_sent = 0
        self.pings_lost = 0
        self.oracle_undecided = 0

    @property
    def api(self) -> Api:
        """The API the network is read through (the first running controller)."""
        return self.ctls.api()

    def _master_api(self, node: str, masters: Mapping[str, str | None]) -> Api:
        m = masters.get(node)
        return self.ctls.apis[m] if m in self.ctls.apis else self.api

    def masters(self) -> dict[str, str | None]:
        """Switch name -> the member mastering it (empty for one controller)."""
        if not self.ctls.cluster:
            return {}
        return {s["name"]: s["master"] for s in self.api.get("/cluster")["switches"]}

    # quiet -------------------------------------------------------------------------------
    def wait_quiet(self) -> list[Violation]:
        """Wait (bounded) until every switch is connected and synced, the controller's link
        states are the lab's, and no intent is pending; a violation names what is not."""
        deadline = time.monotonic() + self.settle_timeout_s
        problems: list[str] = []
        while True:
            problems = self._unquiet()
            if not problems:
                return []
            if time.monotonic() > deadline:
                return [Violation("quiet", "controller", f"not quiet within "
                                  f"{self.settle_timeout_s:g} s", "\n".join(problems[:30]))]
            time.sleep(0.3)

    def _unquiet(self) -> list[str]:
        try:
            health = self.api.get("/health")
            links = self.api.get("/links")["links"]
            intents = self.api.get("/intents")
        except (httpx.HTTPError, ValueError) as exc:
            return [f"API: {exc}"]
        out = []
        healths = {self.ctls.procs[0].name: health}
        if self.ctls.cluster:
            try:
                healths = {p.name: self.ctls.apis[p.name].get("/health")
                           for p in self.ctls.live()}
                live = set(healths)
                out += [f"{s['name']}: master {s['master']} is not a running member"
                        for s in self.api.get("/cluster")["switches"]
                        if s["master"] not in live]
            except (httpx.HTTPError, ValueError) as exc:
                return [f"API: {exc}"]
        for name, h in healths.items():
            total = h["switches_total"]
            if h["switches_synced"] != total or h["switches_connected"] != total:
                out.append(f"{name}: switches connected {h['switches_connected']}, synced "
                           f"{h['switches_synced']} of {total}")
        for ln in links:
            want_up = ln["index"] not in self.expected_down
            if bool(ln["up"]) != want_up:
                out.append(f"link {ln['index']} ({ln['a']}-{ln['b']}) up={ln['up']}, the "
                           f"lab has it {'up' if want_up else 'down'}")
        out += [f"intent {i['id']} {i['name']} pending" for i in intents
                if i["state"] == "pending"]
        return out

    # 1. flows, meters, groups ---------------------------------------------------------------
    def check_tables(self) -> list[Violation]:
        """Each switch's flows (read from the switch) equal the controller's plan; meters
        equal the policed intents' (independently derived); groups equal those the flows use.
        Re-read (bounded) while they differ: a Change may be in flight."""
        deadline = time.monotonic() + self.settle_timeout_s
        pending = [n.name for n in self.topology.nodes]
        found: dict[str, Violation] = {}
        while pending:
            found = {}
            masters = self.masters()
            with ThreadPoolExecutor(max_workers=8) as pool:
                apis = [self._master_api(n, masters) for n in pending]
                for node, v in zip(pending, pool.map(self._table_of, pending, apis),
                                   strict=True):
                    if v is not None:
                        found[node] = v
            pending = list(found)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        out = list(found.values())
        if not out:
            out = self._side_tables()
        return out

    def _table_of(self, node: str, api: Api) -> Violation | None:
        """One switch read live against its plan, both through ``api`` (in a cluster, the
        switch's master: the member whose plan it carries out)."""
        try:
            live = api.get(f"/switches/{node}/flows", source="switch")
            plan = api.get(f"/switches/{node}/flows", source="controller")
        except (httpx.HTTPError, ValueError) as exc:
            return Violation("1", node, f"flows not readable: {exc}")
        d = diff_flows(live["flows"], plan["flows"])
        if d:
            return Violation("1", node, f"switch flows differ from the controller's plan "
                             f"({plan['plan']})", d)
        return None

    def _side_tables(self) -> list[Violation]:
        intents = self.api.get("/intents")
        want_meters: dict[str, dict[int, int]] = {}
        for i in intents:
            if i.get("police") and i.get("min_bandwidth_mbps", 0) > 0 and i.get("path"):
                want_meters.setdefault(i["path"][0], {})[int(i["id"])] = max(
                    1, round(i["min_bandwidth_mbps"] * 1000))
        out = []
        for node in (n.name for n in self.topology.nodes):
            br = self.lab.plan.switch(node)
            meters = run_command(["ovs-ofctl", "-O", "OpenFlow13", "dump-meters", br])
            groups = run_command(["ovs-ofctl", "-O", "OpenFlow13", "dump-groups", br])
            if meters.returncode != 0 or groups.returncode != 0:
                out.append(Violation("1", node, "dump-meters/dump-groups failed",
                                     meters.stderr + groups.stderr))
                continue
            flows = self.api.get(f"/switches/{node}/flows", source="switch")["flows"]
            have = parse_meters(meters.stdout)
            want = {**want_meters.get(node, {}),
                    **packet_in_meters_wanted(flows, self.packet_in_pps,
                                              self.packet_in_control_pps)}
            if have != want:
                lines = [f"- missing meter {k} rate {v}" for k, v in sorted(want.items())
                         if have.get(k) != v]
                lines += [f"+ stray   meter {k} rate {v}" for k, v in sorted(have.items())
                          if want.get(k) != v]
                out.append(Violation("1", node, "meters differ from the policed intents' "
                                     "and the packet-in meters", "\n".join(lines)))
            used = groups_referenced(flows) | self.bypass_groups.get(node, set())
            held = parse_groups(groups.stdout)
            if used != held:
                out.append(Violation("1", node, "groups differ from those the flows use",
                                     "\n".join([f"- missing group {g}"
                                                for g in sorted(used - held)]
                                               + [f"+ stray   group {g}"
                                                  for g in sorted(held - used)])))
        return out

    # 2. routes ----------------------------------------------------------------------------
    def check_routes(self) -> list[Violation]:
        """Each intent against the oracle; bandwidth intents by feasibility on residual
        capacity."""
        links = sorted(self.api.get("/links")["links"], key=lambda x: x["index"])
        up = [bool(ln["up"]) for ln in links]
        reserved = [_reserved(ln) for ln in links]
        capacity = [ln.bandwidth_mbps for ln in self.topology.links]
        oracle = Oracle(self.topology, up)
        out: list[Violation] = []
        # two intents for the same traffic (hosts, match, priority) cannot both steer it:
        # the first in routing order (reservations first, then higher priority, then lower
        # id; docs/controller.md) is routed, the others wait with a reason
        intents = sorted(self.api.get("/intents"), key=lambda i: (
            -(i["min_bandwidth_mbps"] > 0), -i["priority"], int(i["id"])))
        first: dict[str, int] = {}
        for i in intents:
            key = json.dumps([i["src"], i["dst"], i.get("match"), i["priority"]],
                             sort_keys=True)
            owner = first.setdefault(key, int(i["id"]))
            if owner != int(i["id"]):
                subject = f"intent {i['id']} {i['name']} (same traffic as intent {owner})"
                out += self._reason_given(i, subject)
                continue
            out += self._check_intent(i, oracle, up, reserved, capacity)
        self.oracle_undecided += oracle.undecided
        return out

    def _check_intent(self, i: Mapping[str, Any], oracle: Oracle, up: Sequence[bool],
                      reserved: Sequence[tuple[float, float]], capacity: Sequence[float]
                      ) -> list[Violation]:
        subject = f"intent {i['id']} {i['name']} ({i['src']}>{i['dst']} <= " \
                  f"{i['max_latency_ms']:g} ms, {i['min_bandwidth_mbps']:g} Mbps)"
        src, dst = self.topology.host(i["src"]).node, self.topology.host(i["dst"]).node
        bound, bw = float(i["max_latency_ms"]), float(i["min_bandwidth_mbps"])
        path = i.get("path")
        state = i["state"]
        if bw > 0:
            if state == "installed" and path:
                cl = oracle.path_cost_latency(path)
                if cl is None:
                    return [Violation("2", subject, "installed on a path with a link down",
                                      f"path {path}")]
                if cl[1] > bound + 1e-3:
                    return [Violation("2", subject, "installed over its latency bound",
                                      f"path {path} latency {cl[1]:.3f} ms")]
                return []
            # not installed: no path within the bound may have the bandwidth left
            residual = [(c - r[0], c - r[1]) for c, r in zip(capacity, reserved, strict=True)]
            fit = Oracle(self.topology, up, residual, min_bandwidth_mbps=bw).best(
                src, dst, bound)
            if isinstance(fit, tuple):
                return [Violation("2", subject, f"{state} ({i['reason']}) though a path "
                                  "within the bound has the bandwidth",
                                  f"path {fit[2]} latency {fit[1]:.3f} ms cost {fit[0]:g}")]
            return self._reason_given(i, subject)
        best = oracle.best(src, dst, bound)
        if best == "undecided":
            return []
        if best is None:
            if state == "installed":
                return [Violation("2", subject, "installed though no path meets the bound "
                                  "on the links that are up", f"path {path}")]
            return self._reason_given(i, subject)
        assert isinstance(best, tuple)
        if state != "installed" or not path:
            return [Violation("2", subject, f"{state} ({i['reason']}) though a path meets "
                              "the bound", f"oracle path {best[2]} latency {best[1]:.3f} ms "
                              f"cost {best[0]:g}")]
        cl = oracle.path_cost_latency(path)
        if cl is None or cl[1] > bound + 1e-3 or abs(cl[0] - best[0]) > 1e-6 * max(1, best[0]):
            got = "a link down" if cl is None else f"latency {cl[1]:.3f} ms cost {cl[0]:g}"
            return [Violation("2", subject, "installed path is not least cost within the "
                              "bound", f"installed {path} ({got})\noracle    {best[2]} "
                              f"(latency {best[1]:.3f} ms cost {best[0]:g})")]
        return []

    @staticmethod
    def _reason_given(i: Mapping[str, Any], subject: str) -> list[Violation]:
        if i["state"] == "installed":
            return [Violation("2", subject, "installed though nothing fits")]
        if not str(i.get("reason") or "").strip():
            return [Violation("2", subject, f"{i['state']} without a reason")]
        return []

    def check_pings(self, fault_kind: str) -> tuple[list[Violation], int]:
        """Ping along a sample of installed intents; a pair that loses every ping is a
        violation. Returns the violations and the pings lost."""
        installed = [i for i in self.api.get("/intents") if i["state"] == "installed"
                     and i["src"] != i["dst"]]
        sample = self.rng.sample(installed, min(self.ping_sample, len(installed)))
        out, lost = [], 0
        for i in sample:
            r = self.lab.ping(i["src"], i["dst"], count=3, wait_s=2)
            self.pings_sent += r.sent
            missing = max(0, r.sent - r.received)
            lost += missing
            if r.received == 0:
                out.append(Violation("2", f"intent {i['id']} {i['name']}",
                                     f"no ping delivered {i['src']} -> {i['dst']} after "
                                     f"{fault_kind}", f"path {i.get('path')}"))
        self.pings_lost += lost
        return out, lost

    # 3. reservations ------------------------------------------------------------------------
    def check_capacity(self) -> list[Violation]:
        """Reserved bandwidth within each link's capacity in each direction (the API's sum,
        backups of protected intents included, and the soak's own sum over the intents'
        paths, which the API's must cover); compute reservations within each site's."""
        links = self.api.get("/links")["links"]
        intents = self.api.get("/intents")
        mine = [[0.0, 0.0] for _ in self.topology.links]
        pairs: dict[tuple[str, str], list[tuple[int, int]]] = {}
        for k, ln in enumerate(self.topology.links):
            pairs.setdefault((ln.a, ln.b), []).append((k, 0))
            pairs.setdefault((ln.b, ln.a), []).append((k, 1))
        for i in intents:
            if i.get("path") and i["min_bandwidth_mbps"] > 0:
                for u, v in zip(i["path"], i["path"][1:], strict=False):
                    ks = pairs.get((u, v), [])
                    if len(ks) == 1:  # parallel links: which one is the engine's to say
                        mine[ks[0][0]][ks[0][1]] += float(i["min_bandwidth_mbps"])
        out = []
        for ln in links:
            k, cap = ln["index"], self.topology.links[ln["index"]].bandwidth_mbps
            api = _reserved(ln)
            for d, arrow in enumerate((f"{ln['a']}>{ln['b']}", f"{ln['b']}>{ln['a']}")):
                if api[d] > cap + EPS or mine[k][d] > cap + EPS or mine[k][d] > api[d] + EPS:
                    out.append(Violation("3", f"link {k} {arrow}",
                                         "reservations exceed capacity" if max(
                                             api[d], mine[k][d]) > cap + EPS else
                                         "the API reserves less than the intents' paths hold",
                                         f"capacity {cap:g} Mbps, API reserved {api[d]:g}, "
                                         f"sum over the intents' paths {mine[k][d]:g}"))
        for s in self.api.get("/compute-sites"):
            if s["reserved"] > s["capacity"] + EPS or s["free_capacity"] < -EPS:
                out.append(Violation("3", f"site {s['id']}", "reservations exceed capacity",
                                     json.dumps(s)))
        return out

    # 4. store ---------------------------------------------------------------------------------
    def check_store(self) -> list[Violation]:
        """The SQLite file (read-only) against the API; every acknowledged write kept."""
        stored, sites, placements = self.ctls.read_store()
        api_intents = {int(i["id"]): i for i in self.api.get("/intents") if i["source"] == "api"}
        out = []
        if self.ctls.cluster:
            # every member applies the same committed intents
            for p in self.ctls.live()[1:]:
                theirs = {int(i["id"]) for i in self.ctls.apis[p.name].get("/intents")
                          if i["source"] == "api"}
                if theirs != set(api_intents):
                    out.append(Violation("4", f"intents on {p.name}", "members disagree",
                                         "\n".join([f"- missing on {p.name} {i}" for i in
                                                    sorted(set(api_intents) - theirs)]
                                                   + [f"+ only on {p.name} {i}" for i in
                                                      sorted(theirs - set(api_intents))])))
        lines = []
        for iid in sorted(set(stored) | set(api_intents)):
            s, a = stored.get(iid), api_intents.get(iid)
            if s is None:
                lines.append(f"+ api only   {iid} {a and a['name']}")
            elif a is None:
                lines.append(f"- store only {iid} {s.get('name')}")
            else:
                for k in ("src", "dst", "max_latency_ms", "min_bandwidth_mbps", "priority",
                          "protection", "police"):
                    if s.get(k) != a.get(k) and not (isinstance(s.get(k), float | int)
                                                     and float(s[k]) == float(a[k])):
                        lines.append(f"~ {iid} {k}: store {s.get(k)!r} api {a.get(k)!r}")
        if lines:
            out.append(Violation("4", "intents", "store and API disagree", "\n".join(lines)))
        with self.ledger.lock:
            lost = sorted(self.ledger.added - self.ledger.deleted
                          - self.ledger.uncertain_intents - set(api_intents))
            kept = sorted(self.ledger.deleted & (set(api_intents) | set(stored)))
            placed = sorted(self.ledger.placed - self.ledger.unplaced
                            - self.ledger.uncertain_placements - placements)
            unplaced = sorted(self.ledger.unplaced & placements)
            site_state = {k: v for k, v in self.ledger.site_state.items()
                          if k not in self.ledger.uncertain_sites}
        if lost or kept:
            out.append(Violation("4", "intents", "acknowledged writes not kept",
                                 "\n".join([f"- acknowledged add missing {i}" for i in lost]
                                           + [f"+ acknowledged delete present {i}"
                                              for i in kept])))
        api_places = {str(p["id"]) for p in self.api.get("/placements")}
        if api_places != placements or placed or unplaced:
            out.append(Violation("4", "placements", "store, API and acknowledged writes "
                                 "disagree",
                                 "\n".join([f"+ api only {p}" for p in sorted(api_places
                                                                               - placements)]
                                           + [f"- store only {p}" for p in
                                              sorted(placements - api_places)]
                                           + [f"- acknowledged placement missing {p}"
                                              for p in placed]
                                           + [f"+ acknowledged release present {p}"
                                              for p in unplaced])))
        api_sites = {s["id"]: s for s in self.api.get("/compute-sites")}
        lines = []
        for sid, spec in sorted(sites.items()):
            a = api_sites.get(sid)
            if a is None:
                lines.append(f"- store only {sid}")
            elif spec.get("state") != a["state"] or float(spec.get("capacity", -1)) != float(
                    a["capacity"]):
                lines.append(f"~ {sid}: store {spec.get('state')}/{spec.get('capacity')} "
                             f"api {a['state']}/{a['capacity']}")
        for sid, state in sorted(site_state.items()):
            a = api_sites.get(sid)
            if a is None or a["state"] != state:
                lines.append(f"~ {sid}: acknowledged {state}, api "
                             f"{a['state'] if a else 'absent'}")
        if lines:
            out.append(Violation("4", "compute sites", "store, API and acknowledged writes "
                                 "disagree", "\n".join(lines)))
        return out

    # 5. resources -----------------------------------------------------------------------------
    def sample_resources(self) -> None:
        """One sample of each running controller process (kept for the slopes)."""
        for p in self.ctls.live():
            pid = p.pid
            s = read_process(pid, time.monotonic() - self.t0) if pid else None
            if s is not None:
                self.samples[p.name].append(s)

    def slopes(self) -> dict[str, dict[str, Any]]:
        """Controller name -> :func:`resource_slopes` of its samples."""
        return {name: resource_slopes(s) for name, s in self.samples.items()}

    def check(self, fault_kind: str) -> tuple[list[Violation], int]:
        """Every invariant once; the violations and the pings lost."""
        out = self.wait_quiet()
        if out:
            return out, 0
        self.sample_resources()
        out += self.check_tables()
        out += self.check_routes()
        out += self.check_capacity()
        out += self.check_store()
        pv, lost = self.check_pings(fault_kind)
        out += pv
        for slopes in self.slopes().values():
            out += resource_violations(slopes)
        return out, lost


# -- faults ---------------------------------------------------------------------------------
class Injector:
    """Carries out the schedule's faults on the lab and the controller."""

    def __init__(self, topology: Topology, lab: LabNetwork, ctls: Controllers,
                 invariants: Invariants) -> None:
        self.topology = topology
        self.lab = lab
        self.ctls = ctls
        self.invariants = invariants

    def _set(self, link: int, up: bool) -> None:
        ln = self.topology.links[link]
        self.lab.set_link(ln.a, ln.b, up, index=link)
        if up:
            self.invariants.expected_down.discard(link)
        else:
            self.invariants.expected_down.add(link)

    def apply(self, ev: Event) -> None:
        """Inject ``ev``'s fault (its writes run beside it, elsewhere)."""
        if ev.kind == "link_down":
            assert ev.link is not None
            self._set(ev.link, up=False)
        elif ev.kind == "link_up":
            assert ev.link is not None
            self._set(ev.link, up=True)
        elif ev.kind == "link_flap":
            assert ev.link is not None
            gap = ev.duration_s / max(1, ev.changes)
            for k in range(ev.changes):
                self._set(ev.link, up=k % 2 == 1)
                time.sleep(gap)
            self._set(ev.link, up=True)  # the defined end state, whatever the count
        elif ev.kind == "switch_restart":
            assert ev.node is not None
            self.lab.restart_switch(ev.node, timeout_s=60)
        elif ev.kind == "switch_disconnect":
            assert ev.node is not None
            br = self.lab.plan.switch(ev.node)
            _vsctl(["del-controller", br])
            time.sleep(ev.duration_s)
            _vsctl(["set-controller", br, *(str(c) for c in self.lab.controllers)])
        elif ev.kind == "controller_kill":
            proc = self.ctls.procs[(ev.member or 0) % len(self.ctls.procs)]
            proc.kill()
            time.sleep(ev.duration_s)
            proc.start()


def _reserved(link: Mapping[str, Any]) -> tuple[float, float]:
    """What ``GET /links`` says intents hold on a link: (a to b, b to a), Mbps."""
    return (float(link.get("reserved_mbps") or 0.0),
            float(link.get("reserved_b_to_a_mbps") or 0.0))


def _vsctl(args: Sequence[str]) -> None:
    res = run_command(["ovs-vsctl", "--timeout=10", *args], timeout_s=20)
    if res.returncode != 0:
        raise LabError(f"ovs-vsctl {' '.join(args)} failed: {res.stderr.strip()}")


# -- the run --------------------------------------------------------------------------------
@dataclass
class SoakConfig:
    """What :func:`run_soak` runs."""

    topology_path: Path
    topology: Topology
    minutes: float
    seed: int
    workdir: Path
    weights: Mapping[str, float] | None = None
    max_events: int | None = None
    """stop after this many events even if ``minutes`` are not over (None: no limit); with
    the seed it fixes exactly which events a run injects, however fast the machine"""
    members: int = 1
    report: Path | None = None
    stop_on_violation: bool = True
    ping_sample: int = 3
    settle_timeout_s: float = 30.0
    machine_wait_s: float = 240.0
    fast_reroute: bool = False
    """the controllers run with ``--fast-reroute`` (bypass groups are then expected on every
    switch-to-switch port)"""


@dataclass
class SoakResult:
    """The outcome: counts, the event log and the violations."""

    seed: int
    events: int = 0
    checks: int = 0
    violations: list[Violation] = field(default_factory=list)
    pings_lost: int = 0
    pings_sent: int = 0
    events_by_kind: dict[str, int] = field(default_factory=dict)
    pings_lost_by_kind: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    writes: int = 0
    writes_acked: int = 0
    writes_by_answer: dict[str, int] = field(default_factory=dict)
    """``op status`` (status ``none``: no answer) -> writes: why writes were not acknowledged
    (a 409 of an infeasible add or a 404 of a placement without a site is an honest no)"""
    slopes: dict[str, dict[str, Any]] = field(default_factory=dict)
    """controller (or member) name -> its resource slopes"""
    samples: dict[str, list[ResourceSample]] = field(default_factory=dict)
    """controller (or member) name -> every resource sample (to tell a plateau from growth)"""
    duration_s: float = 0.0

    @property
    def exit_code(self) -> int:
        """0 without violations, else 1."""
        return 1 if self.violations else 0

    def summary(self) -> str:
        """The last line of the output."""
        return (f"soak: {self.events} events, {self.checks} checks, {len(self.violations)} "
                f"violations, {self.pings_lost} pings lost")

    def as_dict(self) -> dict[str, Any]:
        """The report's data."""
        return {"seed": self.seed, "events": self.events, "checks": self.checks,
                "violations": [asdict(v) for v in self.violations],
                "pings_sent": self.pings_sent, "pings_lost": self.pings_lost,
                "events_by_kind": self.events_by_kind,
                "pings_lost_by_kind": self.pings_lost_by_kind, "writes": self.writes,
                "writes_acknowledged": self.writes_acked,
                "writes_by_answer": self.writes_by_answer, "resource_slopes": self.slopes,
                "resource_samples": {k: [asdict(x) for x in v]
                                     for k, v in self.samples.items()},
                "duration_s": self.duration_s, "event_log": self.log}

    def markdown(self) -> str:
        """The report as markdown."""
        rows = [f"| {k} | {n} | {self.pings_lost_by_kind.get(k, 0)} |"
                for k, n in sorted(self.events_by_kind.items())]
        return "\n".join([
            f"# Soak report (seed {self.seed})", "",
            f"{self.duration_s / 60:.1f} min, {self.events} events, {self.checks} checks, "
            f"{len(self.violations)} violations, {self.pings_lost} of {self.pings_sent} pings "
            f"lost, {self.writes_acked} of {self.writes} writes acknowledged.", "",
            "Writes by answer: " + (", ".join(f"{k} x{n}" for k, n in
                                              sorted(self.writes_by_answer.items())) or "none")
            + ".", "",
            "| event kind | events | pings lost after it |", "|---|---|---|", *rows, "",
            "| controller | processes | longest-lived pid | samples after warm-up | span min "
            "| RSS MB/h | threads/h | fds/h | peak RSS MB | peak threads | peak fds |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
            *(f"| {name} | {s.get('processes', 1)} | {s['pid']} | {s['samples']} | "
              f"{s['span_s'] / 60:.1f} | {s['rss_mb_per_h']:+.1f} | {s['threads_per_h']:+.1f} "
              f"| {s['fds_per_h']:+.1f} | {s.get('rss_mb_max', 0.0):.0f} | "
              f"{s.get('threads_max', 0)} | {s.get('fds_max', 0)} |"
              for name, s in sorted(self.slopes.items())), "",
            *(["## Violations", "", "```", *(v.render() for v in self.violations), "```"]
              if self.violations else [])]) + "\n"


def _start_lab(topology: Topology, ctls: Controllers, wait_s: float) -> LabNetwork:
    """A started lab connected to ``ctls``, waiting (bounded) while another lab runs."""
    deadline = time.monotonic() + wait_s
    while True:
        lab = LabNetwork(topology, controllers=ctls.addresses)
        try:
            lab.start(timeout_s=180)
            return lab
        except LabError as exc:
            lab.stop()
            if "another cpn-lab network is running" not in str(exc) \
                    or time.monotonic() > deadline:
                raise
        time.sleep(3.0)


class Soak:
    """The controllers (:class:`Controllers`) and a lab connected to them, ready for events
    and checks; use as a context manager (everything is stopped at the end)."""

    def __init__(self, config: SoakConfig) -> None:
        self.config = config
        self.ctls = Controllers(config.topology_path, config.workdir, config.members,
                                ["--fast-reroute"] if config.fast_reroute else [])
        self.lab: LabNetwork | None = None
        self.ledger = Ledger()
        self.invariants: Invariants | None = None
        self.injector: Injector | None = None

    def __enter__(self) -> Soak:
        try:
            self.ctls.start()
            self.lab = _start_lab(self.config.topology, self.ctls, self.config.machine_wait_s)
            self.invariants = Invariants(self.config.topology, self.lab, self.ctls,
                                         self.ledger, seed=self.config.seed,
                                         ping_sample=self.config.ping_sample,
                                         settle_timeout_s=self.config.settle_timeout_s,
                                         fast_reroute=self.config.fast_reroute)
            self.injector = Injector(self.config.topology, self.lab, self.ctls,
                                     self.invariants)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.lab is not None:
            self.lab.stop()
        self.ctls.stop()


def run_soak(config: SoakConfig, out: Callable[[str], None] = print) -> SoakResult:
    """Run the soak for ``config.minutes`` of events (at most ``config.max_events``); print
    the event log as it goes, the seed, log and diff at the first violation, and last the
    summary line. Returns the result (``exit_code`` 1 with violations)."""
    result = SoakResult(config.seed)
    schedule = Schedule(config.topology, config.seed, config.weights,
                        members=config.members)
    t_start = time.monotonic()
    out(f"soak: seed {config.seed}, {config.topology.name}, {config.minutes:g} min, "
        f"workdir {config.workdir}")
    with Soak(config) as soak:
        assert soak.invariants is not None and soak.injector is not None
        inv, ctls = soak.invariants, soak.ctls
        first, lost = inv.check("start")
        result.checks += 1
        if first:
            result.violations += first
            _report_violation(result, first, out, ctls)
        deadline = t_start + config.minutes * 60
        with ThreadPoolExecutor(max_workers=4) as pool:
            while (not (config.stop_on_violation and result.violations)
                   and time.monotonic() < deadline
                   and (config.max_events is None or result.events < config.max_events)):
                ev = schedule.next_event()
                line = f"{time.monotonic() - t_start:7.1f}s {ev.describe(config.topology)}"
                futures = [pool.submit(fire_write, ctls.api_for(ev.index + k), soak.ledger,
                                       ev.index, op)
                           for k, op in enumerate(ev.writes)]
                fault_failed: list[Violation] = []
                try:
                    soak.injector.apply(ev)
                except LabError as exc:
                    fault_failed = [Violation("fault", ev.describe(), f"{exc}")]
                    result.violations += fault_failed
                recs = [f.result() for f in futures]
                result.events += 1
                result.events_by_kind[ev.kind] = result.events_by_kind.get(ev.kind, 0) + 1
                result.writes += len(recs)
                result.writes_acked += sum(1 for r in recs if r.acked)
                for r in recs:
                    key = f"{r.op} {r.status if r.status is not None else 'none'}"
                    result.writes_by_answer[key] = result.writes_by_answer.get(key, 0) + 1
                t_check = time.monotonic()
                found, lost = ([], 0) if fault_failed else inv.check(ev.kind)
                result.checks += 1
                result.pings_lost += lost
                result.pings_lost_by_kind[ev.kind] = (result.pings_lost_by_kind.get(ev.kind, 0)
                                                      + lost)
                acked = sum(1 for r in recs if r.acked)
                line += (f" -> writes {acked}/{len(recs)} acked, checked in "
                         f"{time.monotonic() - t_check:.1f} s, {lost} pings lost")
                result.log.append(line)
                out(line)
                if fault_failed or found:
                    result.violations += found
                    _report_violation(result, fault_failed + found, out, ctls)
        result.slopes = inv.slopes()
        result.samples = {k: list(v) for k, v in inv.samples.items()}
        result.pings_sent = inv.pings_sent
        if inv.oracle_undecided:
            out(f"soak: the oracle gave up on {inv.oracle_undecided} intent checks "
                "(too many paths within the cost order)")
    result.duration_s = time.monotonic() - t_start
    for name, s in result.slopes.items():
        out(f"soak: {name} RSS {s['rss_mb_per_h']:+.1f} MB/h, threads "
            f"{s['threads_per_h']:+.1f}/h, fds {s['fds_per_h']:+.1f}/h over "
            f"{s['span_s'] / 60:.1f} min ({s['samples']} samples after warm-up)")
    if config.report is not None:
        write_report(result, config.report)
        out(f"soak: report written to {config.report}")
    out(result.summary())
    return result


def _report_violation(result: SoakResult, found: Sequence[Violation],
                      out: Callable[[str], None], ctls: Controllers) -> None:
    out(f"soak: VIOLATION with seed {result.seed} after {result.events} events")
    out("soak: event log up to it:")
    for ln in result.log:
        out(f"  {ln}")
    for v in found:
        out(v.render())
    out(f"soak: controller log tails:\n{ctls.log_tails(20)}")


def write_report(result: SoakResult, path: Path) -> None:
    """The result as JSON (``.json``) or markdown (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        path.write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    else:
        path.write_text(result.markdown())
