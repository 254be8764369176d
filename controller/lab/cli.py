"""The Mininet lab: a topology file becomes a running network of Open vSwitch switches.

``cpn-lab up FILE`` builds the network and opens the Mininet CLI; ``cpn-lab check FILE`` builds
it, runs a ping matrix, prints a summary and tears it down (exit 1 on loss). The library side,
:class:`LabNetwork`, is what tests and later scenarios drive: bounded waits
(``wait_until_connected``, ``wait_until_reachable``, ``wait_until_flow``), a ping matrix, link
down/up and switch stop/start/restart.

Names: Linux limits interface names to 15 characters and Mininet names them ``<node>-eth<port>``,
so Mininet nodes get short names (``s1``..``sN`` for switches in file order, ``h1``..``hM`` for
hosts) and :class:`LabPlan` keeps the mapping. Every public method takes the topology's names.

Ports: fixed by :class:`LabPlan`, not by Mininet's order of creation, with the numbering of
``wiring.port_plan`` that the controller also uses: on each switch its links in file
order (port 1, 2, ...), then the hosts attached to it. Host interfaces are ``<host>-eth0``.

Switch modes: with controllers, ``fail_mode=secure`` (nothing forwards until a controller
programs it); without, ``fail_mode=standalone`` (OVS acts as a MAC-learning switch). A
learning switch floods, so a topology with a loop would storm; in standalone mode the lab
enables RSTP on every bridge when the topology has a loop (ports facing hosts are marked as
edge ports, so they forward at once). RSTP on userspace OVS here settles in a few seconds
(classic STP needs ~30 s: listening + learning at 15 s forward delay each).

Cleanup: the lab marks its bridges (``external_ids:cpn-lab-owner=<pid>``) and records what it
created (bridges, inter-switch veths, host shell pids) in ``/run/cpn-lab/<pid>.json``.
:meth:`LabNetwork.stop` runs ``net.stop()`` and then removes whatever of that record is left;
:func:`cleanup_stale` does the same for labs whose process died. Unlike ``mn -c`` it never kills
processes by name nor deletes bridges it did not create, so other work on the machine is safe.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mininet.link import Link as MininetLink
from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.node import Host as MininetHost
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo

from controller.errors import CpnError, LabError, NotFound
from controller.lab.ovs import LabEnvironment, probe_environment, run_command
from controller.topology.model import Topology, load_topology
from controller.topology.wiring import port_plan

__all__ = [
    "ControllerAddress",
    "LabNetwork",
    "LabPlan",
    "LabSwitch",
    "LabTopo",
    "PingMatrix",
    "PingResult",
    "cleanup_stale",
    "main",
    "parse_controller",
    "plan_ping_pairs",
    "require_root",
]

log = logging.getLogger("controller.lab.cli")

STATE_DIR = Path("/run/cpn-lab")
OWNER_KEY = "cpn-lab-owner"
ALL_PAIRS_MAX_HOSTS = 16
"""Up to this many hosts the ping matrix covers every ordered pair; above, a sample."""
SAMPLE_PAIRS = 200
"""Size of the sampled ping matrix for big networks."""
RSTP_DEFAULT_MAX_AGE = 20
BACKBONE_MTU = 1600
"""MTU of the switch-to-switch interfaces: room for the controller's MPLS label (4 bytes)
on a full 1500-byte host packet, with headroom, as MPLS backbones are configured"""


# ---------------------------------------------------------------------------------------------
# Root, controllers
# ---------------------------------------------------------------------------------------------

def require_root(euid: int | None = None) -> None:
    """Raise :class:`LabError` unless running as root (``euid`` injectable for tests)."""
    uid = os.geteuid() if euid is None else euid
    if uid != 0:
        raise LabError(f"the Mininet lab must run as root (effective uid is {uid}): Mininet "
                       "creates network namespaces and veth links, and OVS bridges; "
                       "run it with sudo")


@dataclass(frozen=True, slots=True)
class ControllerAddress:
    """An OpenFlow controller the switches connect to, e.g. ``tcp:127.0.0.1:6653``."""

    ip: str
    port: int = 6653
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.protocol}:{self.ip}:{self.port}"


def parse_controller(text: str) -> ControllerAddress:
    """Parse ``tcp:HOST:PORT`` (or ``HOST:PORT``, ``HOST``); :class:`LabError` if malformed."""
    parts = text.strip().split(":")
    if parts and parts[0] in ("tcp", "ssl"):
        protocol, parts = parts[0], parts[1:]
    else:
        protocol = "tcp"
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise LabError(f"bad controller address {text!r}: expected tcp:HOST:PORT")
    port = 6653
    if len(parts) == 2:
        if not parts[1].isdigit() or not 0 < int(parts[1]) < 65536:
            raise LabError(f"bad controller port in {text!r}: expected 1..65535")
        port = int(parts[1])
    return ControllerAddress(ip=parts[0], port=port, protocol=protocol)


# ---------------------------------------------------------------------------------------------
# The plan: names and port numbers, derived from the topology alone (no Mininet needed)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LabPlan:
    """Mininet names and port numbers for a topology.

    ``link_ports[i]`` is ``(port on link.a's switch, port on link.b's switch)`` for
    ``topology.links[i]``; ``host_ports[host]`` is the port of the host's switch.
    """

    topology: Topology
    switch_names: dict[str, str]
    host_names: dict[str, str]
    link_ports: list[tuple[int, int]]
    host_ports: dict[str, int]
    _node_of_switch: dict[str, str] = field(default_factory=dict, repr=False)
    _host_of_mn: dict[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_topology(cls, topology: Topology) -> LabPlan:
        switch_names = {n.name: f"s{i}" for i, n in enumerate(topology.nodes, start=1)}
        host_names = {h.name: f"h{i}" for i, h in enumerate(topology.hosts, start=1)}
        # One numbering for lab and controller: the controller knows every port from the file
        # (controller.topology.wiring) and checks it by LLDP, so the lab must wire exactly that.
        wiring = port_plan(topology)
        link_ports = [tuple(p) for p in wiring.link_ports]
        host_ports = {h: port for h, (_node, port) in wiring.host_port.items()}
        plan = cls(topology, switch_names, host_names, link_ports, host_ports)
        plan._node_of_switch.update((v, k) for k, v in switch_names.items())
        plan._host_of_mn.update((v, k) for k, v in host_names.items())
        return plan

    def switch(self, node: str) -> str:
        """Mininet name of the switch for topology node ``node``."""
        try:
            return self.switch_names[node]
        except KeyError:
            raise NotFound(f"no node {node!r} in topology {self.topology.name!r}") from None

    def host(self, host: str) -> str:
        """Mininet name of topology host ``host``."""
        try:
            return self.host_names[host]
        except KeyError:
            raise NotFound(f"no host {host!r} in topology {self.topology.name!r}") from None

    def node_of(self, switch: str) -> str:
        """Topology node name of Mininet switch ``switch``."""
        return self._node_of_switch[switch]

    def host_of(self, mn_host: str) -> str:
        """Topology host name of Mininet host ``mn_host``."""
        return self._host_of_mn[mn_host]

    def links_between(self, a: str, b: str) -> list[int]:
        """Indices into ``topology.links`` of the links joining nodes ``a`` and ``b``."""
        self.switch(a)
        self.switch(b)
        return [i for i, lk in enumerate(self.topology.links) if {lk.a, lk.b} == {a, b}]

    def link_interfaces(self, index: int) -> tuple[str, str]:
        """Interface names (``s1-eth3``, ``s2-eth4``) of ``topology.links[index]``."""
        link = self.topology.links[index]
        pa, pb = self.link_ports[index]
        return f"{self.switch(link.a)}-eth{pa}", f"{self.switch(link.b)}-eth{pb}"

    def switch_interfaces(self) -> dict[str, list[tuple[str, int]]]:
        """Per Mininet switch, its data interfaces as (name, port_no)."""
        out: dict[str, list[tuple[str, int]]] = {s: [] for s in self.switch_names.values()}
        for h in self.topology.hosts:
            sw = self.switch(h.node)
            out[sw].append((f"{sw}-eth{self.host_ports[h.name]}", self.host_ports[h.name]))
        for i in range(len(self.topology.links)):
            for iface in self.link_interfaces(i):
                sw, _, port = iface.rpartition("-eth")
                out[sw].append((iface, int(port)))
        return out

    def has_loop(self) -> bool:
        """True when the switch graph has a cycle (parallel links count): a learning switch
        would then need a spanning tree."""
        parent = {n: n for n in self.switch_names}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for link in self.topology.links:
            ra, rb = find(link.a), find(link.b)
            if ra == rb:
                return True
            parent[ra] = rb
        return False

    def diameter_hops(self) -> int:
        """Longest shortest path in switch hops (over each connected component)."""
        adj: dict[str, list[str]] = {n: [] for n in self.switch_names}
        for link in self.topology.links:
            adj[link.a].append(link.b)
            adj[link.b].append(link.a)
        best = 0
        for start in adj:
            dist = {start: 0}
            frontier = [start]
            while frontier:
                nxt = []
                for u in frontier:
                    for v in adj[u]:
                        if v not in dist:
                            dist[v] = dist[u] + 1
                            nxt.append(v)
                frontier = nxt
            best = max(best, max(dist.values()))
        return best

    def names_table(self) -> str:
        """A table mapping Mininet names to the topology's names (printed by ``cpn-lab up``)."""
        rows: list[tuple[str, ...]] = [("lab", "topology", "what")]
        for node in self.topology.nodes:
            rows.append((self.switch(node.name), node.name,
                         f"switch {node.kind} dpid {node.dpid:#x}"))
        for h in self.topology.hosts:
            rows.append((self.host(h.name), h.name,
                         f"host {h.ip}/{h.prefix_len} {h.mac} on {h.node} "
                         f"port {self.host_ports[h.name]}"))
        return _format_table(rows)


# ---------------------------------------------------------------------------------------------
# Mininet classes
# ---------------------------------------------------------------------------------------------

class LabTopo(Topo):
    """Mininet topology built from a :class:`LabPlan` (one switch per node, hosts, links)."""

    def build(self, plan: LabPlan, link_delays: bool = False) -> None:  # type: ignore[override]
        topo = plan.topology
        for node in topo.nodes:
            self.addSwitch(plan.switch(node.name), dpid=f"{node.dpid:016x}")
        for h in topo.hosts:
            name = plan.host(h.name)
            self.addHost(name, ip=h.ip_with_prefix, mac=h.mac)
            self.addLink(name, plan.switch(h.node), port1=0, port2=plan.host_ports[h.name])
        for i, link in enumerate(topo.links):
            pa, pb = plan.link_ports[i]
            opts: dict[str, Any] = {}
            if link_delays:
                opts = {"cls": TCLink, "delay": f"{link.latency_ms:.3f}ms"}
            self.addLink(plan.switch(link.a), plan.switch(link.b), port1=pa, port2=pb, **opts)


class LabSwitch(OVSSwitch):
    """OVSSwitch that marks its bridge as the lab's and can run RSTP.

    ``rstp``: enable RSTP (standalone mode only); host-facing ports become RSTP edge ports.
    ``rstp_max_age_s``: RSTP max age, which also bounds the network diameter in hops.
    """

    def __init__(self, name: str, rstp: bool = False,
                 rstp_max_age_s: int = RSTP_DEFAULT_MAX_AGE, **params: Any) -> None:
        super().__init__(name, **params)
        self.rstp = rstp
        self.rstp_max_age_s = rstp_max_age_s

    def bridgeOpts(self) -> str:  # noqa: N802 (Mininet's name)
        opts = super().bridgeOpts() + f" external_ids:{OWNER_KEY}={os.getpid()}"
        if self.rstp and self.failMode == "standalone":
            # RSTP needs 2 * (forward_delay - 1) >= max_age.
            forward_delay_s = max(15, self.rstp_max_age_s // 2 + 1)
            opts += (" rstp_enable=true"
                     f" other_config:rstp-max-age={self.rstp_max_age_s}"
                     f" other_config:rstp-forward-delay={forward_delay_s}")
        return opts

    def intfOpts(self, intf: Any) -> str:  # noqa: N802 (Mininet's name)
        opts = super().intfOpts(intf)
        link = getattr(intf, "link", None)
        if self.rstp and link is not None:
            peer = link.intf2 if link.intf1 is intf else link.intf1
            if not isinstance(peer.node, OVSSwitch):
                opts += f" -- set Port {intf} other_config:rstp-port-admin-edge=true"
        return opts


# ---------------------------------------------------------------------------------------------
# OVSDB helpers (one ovs-vsctl call per poll, for all switches)
# ---------------------------------------------------------------------------------------------

def _ovsdb_value(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
        kind, body = v
        if kind == "set":
            return [_ovsdb_value(x) for x in body]
        if kind == "map":
            return {_ovsdb_value(k): _ovsdb_value(x) for k, x in body}
        if kind in ("uuid", "named-uuid"):
            return body
    return v


def ovsdb_list(table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of an OVSDB table as dicts (sets -> lists, maps -> dicts, uuids -> str)."""
    res = run_command(["ovs-vsctl", "--timeout=5", "--format=json",
                       f"--columns={','.join(columns)}", "list", table], timeout_s=10)
    if res.returncode != 0:
        raise LabError(f"ovs-vsctl list {table} failed: {res.stderr.strip()}")
    doc = json.loads(res.stdout)
    return [{h: _ovsdb_value(v) for h, v in zip(doc["headings"], row, strict=True)}
            for row in doc["data"]]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------------------------------------
# Ping
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PingResult:
    """Echo requests from ``src`` to ``dst`` (topology host names)."""

    src: str
    dst: str
    sent: int
    received: int
    avg_rtt_ms: float | None

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent


@dataclass(frozen=True)
class PingMatrix:
    """The results of a ping matrix and how its pairs were chosen."""

    results: list[PingResult]
    description: str
    hosts: list[str]

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.results)

    @property
    def received(self) -> int:
        return sum(r.received for r in self.results)

    @property
    def loss_percent(self) -> float:
        return 0.0 if self.sent == 0 else 100.0 * (self.sent - self.received) / self.sent

    @property
    def failed(self) -> list[PingResult]:
        return [r for r in self.results if not r.ok]

    def summary_table(self, plan: LabPlan | None = None) -> str:
        """Per source host: pairs, echo requests sent and answered, loss, mean RTT."""
        rows: list[tuple[str, ...]] = [
            ("source", "lab", "address", "pairs", "sent", "recv", "loss", "avg rtt")]
        by_src: dict[str, list[PingResult]] = {}
        for r in self.results:
            by_src.setdefault(r.src, []).append(r)
        for src in self.hosts:
            rs = by_src.get(src)
            if not rs:
                continue
            rows.append(self._row(src, rs, plan))
        rows.append(self._row("total", self.results, None))
        return _format_table(rows, right_from=3)

    def _row(self, label: str, rs: list[PingResult], plan: LabPlan | None) -> tuple[str, ...]:
        sent = sum(r.sent for r in rs)
        recv = sum(r.received for r in rs)
        rtts = [r.avg_rtt_ms for r in rs if r.avg_rtt_ms is not None]
        loss = 0.0 if sent == 0 else 100.0 * (sent - recv) / sent
        lab = plan.host(label) if plan is not None else ""
        addr = plan.topology.host(label).ip if plan is not None else ""
        rtt = f"{sum(rtts) / len(rtts):.3f} ms" if rtts else "-"
        return (label, lab, addr, str(len(rs)), str(sent), str(recv), f"{loss:.0f}%", rtt)

    def matrix_table(self) -> str:
        """Source x destination grid: ``ok``, ``LOSS`` or blank (pair not tried)."""
        cell = {(r.src, r.dst): ("ok" if r.ok else "LOSS") for r in self.results}
        rows: list[tuple[str, ...]] = [("from \\ to", *self.hosts)]
        for s in self.hosts:
            rows.append((s, *[("-" if s == d else cell.get((s, d), "")) for d in self.hosts]))
        return _format_table(rows)


def plan_ping_pairs(hosts: Sequence[str], *, all_pairs_max_hosts: int = ALL_PAIRS_MAX_HOSTS,
                    sample_pairs: int = SAMPLE_PAIRS, seed: int = 0,
                    force_all: bool = False) -> tuple[list[tuple[str, str]], str]:
    """Ordered host pairs for a ping matrix, and a sentence saying how they were chosen.

    Every ordered pair up to ``all_pairs_max_hosts`` hosts (or with ``force_all``). Above, a
    bounded sample: each host pings its successor and the host half-way round the list (so every
    host sends and receives), topped up with pairs drawn at random (``seed``) to
    ``sample_pairs``.
    """
    n = len(hosts)
    total = n * (n - 1)
    if n < 2:
        return [], "no pairs: fewer than two hosts"
    if force_all or n <= all_pairs_max_hosts or total <= sample_pairs:
        pairs = [(a, b) for a in hosts for b in hosts if a != b]
        return pairs, f"all {total} ordered pairs of {n} hosts"
    chosen: dict[tuple[str, str], None] = {}
    for i, a in enumerate(hosts):
        for step in (1, n // 2):
            b = hosts[(i + step) % n]
            if a != b:
                chosen.setdefault((a, b))
    rng = random.Random(seed)
    budget = max(sample_pairs, len(chosen))
    attempts = 0
    while len(chosen) < budget and attempts < 50 * budget:
        attempts += 1
        a, b = rng.sample(list(hosts), 2)
        chosen.setdefault((a, b))
    pairs = list(chosen)
    return pairs, (f"a sample of {len(pairs)} of {total} ordered pairs of {n} hosts "
                   f"(each host to its successor and to the host half-way round, "
                   f"plus random pairs, seed {seed}); --all-pairs for every pair")


_PING_SCRIPT = r"""
for ip in "$@"; do
  (
    if out=$(ping -n -q -c "$PING_COUNT" -i "$PING_INTERVAL" -W "$PING_WAIT" "$ip" 2>&1);
    then rc=0; else rc=$?; fi
    echo "@@ $ip $rc $(printf '%s\n' "$out" | grep -E 'transmitted|rtt' | tr '\n' ' ')"
  ) &
done
wait
"""
_TX_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT_RE = re.compile(r"= [\d.]+/([\d.]+)/")


def _parse_ping_lines(output: str) -> dict[str, tuple[int, int, float | None]]:
    out: dict[str, tuple[int, int, float | None]] = {}
    for line in output.splitlines():
        if not line.startswith("@@ "):
            continue
        _, ip, _rc, *rest = line.split(" ")
        text = " ".join(rest)
        tx = _TX_RE.search(text)
        rtt = _RTT_RE.search(text)
        sent, recv = (int(tx.group(1)), int(tx.group(2))) if tx else (0, 0)
        out[ip] = (sent, recv, float(rtt.group(1)) if rtt else None)
    return out


# ---------------------------------------------------------------------------------------------
# State record and cleanup
# ---------------------------------------------------------------------------------------------

def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start_time: str | None) -> bool:
    now = _proc_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def _kill_host_shell(pid: int) -> None:
    """SIGKILL a Mininet host shell we recorded, after checking it is one (pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"mininet:" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_recorded(record: dict[str, Any]) -> list[str]:
    """Remove what a lab record lists; return a description of what was removed."""
    removed: list[str] = []
    owner = str(record.get("pid"))
    for pid in record.get("host_pids", []):
        if Path(f"/proc/{pid}").exists():
            _kill_host_shell(int(pid))
            removed.append(f"host shell {pid}")
    bridges = {b["name"]: b for b in ovsdb_list("Bridge", ["name", "external_ids"])}
    doomed = [name for name in record.get("bridges", [])
              if name in bridges and bridges[name]["external_ids"].get(OWNER_KEY) == owner]
    if doomed:
        run_command(["ovs-vsctl", "--timeout=10"] + [
            arg for name in doomed for arg in ("--", "--if-exists", "del-br", name)],
            timeout_s=20)
        removed.extend(f"bridge {name}" for name in doomed)
    # Deleting one end of a veth deletes its peer, so check the list again each time.
    existing = set(_ip_links())
    for name in record.get("interfaces", []) + record.get("bridges", []):
        if name in existing and run_command(["ip", "link", "del", name]).returncode == 0:
            removed.append(f"link {name}")
            existing = set(_ip_links())
    return removed


def _ip_links() -> list[str]:
    res = run_command(["ip", "-o", "link", "show"])
    names = []
    for line in res.stdout.splitlines():
        parts = line.split(": ", 2)
        if len(parts) >= 2:
            names.append(parts[1].split("@", 1)[0])
    return names


def cleanup_stale(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove what labs whose process has died left behind; return what was removed.

    Reads the records in ``state_dir`` and also removes bridges marked with the owner key
    whose owner process is gone (a lab killed before it wrote its record).
    """
    removed: list[str] = []
    if state_dir.is_dir():
        for path in sorted(state_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if _alive(int(record.get("pid", 0)), record.get("start_time")):
                continue
            removed.extend(_remove_recorded(record))
            path.unlink(missing_ok=True)
    orphans = []
    for b in ovsdb_list("Bridge", ["name", "external_ids"]):
        owner = b["external_ids"].get(OWNER_KEY)
        if owner is not None and owner.isdigit() and _proc_start_time(int(owner)) is None:
            orphans.append(b["name"])
    if orphans:
        run_command(["ovs-vsctl", "--timeout=10"] + [
            arg for name in orphans for arg in ("--", "--if-exists", "del-br", name)],
            timeout_s=20)
        removed.extend(f"bridge {name}" for name in orphans)
    return removed


def _live_labs(state_dir: Path = STATE_DIR) -> list[int]:
    pids = []
    if state_dir.is_dir():
        for path in state_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                pid = int(record.get("pid", 0))
                if pid != os.getpid() and _alive(pid, record.get("start_time")):
                    pids.append(pid)
    return pids


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BringUp:
    """Timings of :meth:`LabNetwork.start`, seconds."""

    build_s: float
    start_s: float
    ready_s: float
    total_s: float


class LabNetwork:
    """A Mininet network built from a topology; use as a context manager or call
    :meth:`start` and (always) :meth:`stop`.

    ``controllers``: OpenFlow controllers (switches in ``fail_mode=secure``, OpenFlow 1.3).
    None or empty: standalone learning switches, with RSTP when the topology has a loop
    (``rstp`` overrides the automatic choice).
    """

    def __init__(self, topology: Topology, *, controllers: Sequence[ControllerAddress] = (),
                 rstp: bool | None = None, env: LabEnvironment | None = None,
                 state_dir: Path = STATE_DIR) -> None:
        self.topology = topology
        self.plan = LabPlan.from_topology(topology)
        self.controllers = list(controllers)
        self.standalone = not self.controllers
        self.rstp = (self.plan.has_loop() if rstp is None else rstp) and self.standalone
        self.env = env
        self.state_dir = state_dir
        self.net: Mininet | None = None
        self.bring_up: BringUp | None = None
        self._record_path = state_dir / f"{os.getpid()}.json"
        self._stopped = False
        self._wrote_record = False
        self._admin_down: set[str] = set()
        """Interfaces set down by :meth:`set_link` (not a readiness problem)."""

    # lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> LabNetwork:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 120.0) -> BringUp:
        """Build and start the network; wait (bounded) until it is ready.

        Ready means: every bridge exists with its ports up on the planned port numbers; with
        controllers, every switch connected to one; with RSTP, every port forwarding or
        blocked by RSTP. Raises :class:`LabError` (after cleaning up) on failure.
        """
        require_root()
        if self.net is not None:
            raise LabError("this lab network was already started")
        if self.env is None:
            self.env = probe_environment()
        if self._own_record_is_live():
            raise LabError("a lab network is already running in this process "
                           f"({self._record_path}); stop it first")
        others = _live_labs(self.state_dir)
        if others:
            raise LabError(f"another cpn-lab network is running (pid {others[0]}); "
                           "stop it first: OVS bridge names are global")
        cleaned = cleanup_stale(self.state_dir)
        if cleaned:
            log.info("removed leftovers of an earlier lab: %s", ", ".join(cleaned))
        self._refuse_foreign_bridges()
        self._say_environment()
        t0 = time.monotonic()
        try:
            self.net = self._make_net()
            self._write_record()
            self.net.build()
            self._write_record()
            self._set_backbone_mtu()
            t1 = time.monotonic()
            self.net.start()
            t2 = time.monotonic()
            remaining = max(1.0, timeout_s - (t2 - t0))
            self.wait_until_connected(timeout_s=remaining)
            if self.rstp:
                self.wait_until_rstp_converged(timeout_s=max(1.0, timeout_s - (
                    time.monotonic() - t0)))
            t3 = time.monotonic()
        except BaseException:
            self.stop()
            raise
        self.bring_up = BringUp(build_s=t1 - t0, start_s=t2 - t1, ready_s=t3 - t2,
                                total_s=t3 - t0)
        return self.bring_up

    def stop(self) -> None:
        """Stop the network and remove everything it created. Safe to call more than once."""
        if self._stopped:
            return
        self._stopped = True
        with _signals_deferred():
            if self.net is not None:
                try:
                    self._remove_bridges_and_links()
                    self.net.stop()
                except Exception as exc:  # keep cleaning even if Mininet trips
                    log.warning("mininet stop failed (%s); removing the lab's leftovers", exc)
            if self._wrote_record and self._record_path.exists():
                try:
                    record = json.loads(self._record_path.read_text())
                    left = _remove_recorded(record)
                    if left:
                        log.info("removed leftovers: %s", ", ".join(left))
                finally:
                    self._record_path.unlink(missing_ok=True)

    def _set_backbone_mtu(self) -> None:
        """Give every switch-to-switch interface an MTU of :data:`BACKBONE_MTU` (one
        ``ip -batch`` call), so a full-size host frame still fits once the controller's
        tunnels push an MPLS label onto it (host-facing interfaces keep 1500; the label is
        popped before the host)."""
        ifaces = [i for k in range(len(self.topology.links))
                  for i in self.plan.link_interfaces(k)]
        if not ifaces:
            return
        r = subprocess.run(["ip", "-batch", "-"], text=True, capture_output=True,
                           input="".join(f"link set dev {i} mtu {BACKBONE_MTU}\n"
                                         for i in ifaces), timeout=120, check=False)
        if r.returncode != 0:
            raise LabError(f"could not set the backbone MTU to {BACKBONE_MTU}: "
                           f"{r.stderr.strip()}")

    def _remove_bridges_and_links(self) -> None:
        """Delete all bridges in one ovs-vsctl call and all veths in one ``ip -batch``.

        Mininet's ``net.stop()`` deletes each veth through a node shell (two round trips per
        link): 9 s instead of 7 s for the national backbone. The kernel's veth deletion and
        vswitchd's port removal (~20 ms each) are the rest and cannot be batched away.
        """
        assert self.net is not None
        bridges = [str(s) for s in self.net.switches]
        if bridges:
            run_command(["ovs-vsctl", "--timeout=30"] + [
                a for b in bridges for a in ("--", "--if-exists", "del-br", b)], timeout_s=60)
        existing = set(_ip_links())
        ifaces = [i for ifs in self.plan.switch_interfaces().values() for i, _ in ifs
                  if i in existing]
        if ifaces:
            subprocess.run(["ip", "-force", "-batch", "-"], text=True, capture_output=True,
                           input="".join(f"link del {i}\n" for i in ifaces), timeout=120,
                           check=False)
        self.net.links = []  # gone; net.stop() now only stops switches and hosts

    def _make_net(self) -> Mininet:
        assert self.env is not None
        max_age = RSTP_DEFAULT_MAX_AGE
        if self.rstp:
            hops = self.plan.diameter_hops()
            max_age = min(40, max(RSTP_DEFAULT_MAX_AGE, hops + 2))
            if hops + 2 > 40:
                log.warning("diameter %d hops exceeds what RSTP covers (max age 40): "
                            "distant switches may stay partitioned", hops)
        switch_params = dict(
            datapath=self.env.datapath, protocols="OpenFlow13",
            failMode="standalone" if self.standalone else "secure",
            rstp=self.rstp, rstp_max_age_s=max_age, batch=True)

        def make_switch(name: str, **params: Any) -> LabSwitch:
            return LabSwitch(name, **{**switch_params, **params})

        topo = LabTopo(plan=self.plan, link_delays=self.env.netem)
        net = Mininet(topo=topo, switch=make_switch, host=MininetHost, link=MininetLink,
                      controller=None, build=False, autoSetMacs=False, waitConnected=False)
        for i, c in enumerate(self.controllers):
            net.addController(f"c{i}", controller=RemoteController, ip=c.ip, port=c.port,
                              protocol=c.protocol)
        return net

    def _own_record_is_live(self) -> bool:
        """True when this process already runs a lab (a record from a dead process that had
        the same pid does not count: its start time differs)."""
        try:
            record = json.loads(self._record_path.read_text())
        except (OSError, ValueError):
            return False
        return record.get("start_time") == _proc_start_time(os.getpid())

    def _write_record(self) -> None:
        assert self.net is not None
        interfaces = [iface for i in range(len(self.topology.links))
                      for iface in self.plan.link_interfaces(i)]
        record = {
            "pid": os.getpid(),
            "start_time": _proc_start_time(os.getpid()),
            "topology": self.topology.name,
            "bridges": sorted(self.plan.switch_names.values()),
            "interfaces": interfaces,
            "host_pids": [h.pid for h in self.net.hosts if getattr(h, "pid", None)],
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record))
        tmp.replace(self._record_path)
        self._wrote_record = True

    def _refuse_foreign_bridges(self) -> None:
        wanted = set(self.plan.switch_names.values())
        foreign = sorted(b["name"] for b in ovsdb_list("Bridge", ["name", "external_ids"])
                         if b["name"] in wanted and OWNER_KEY not in b["external_ids"])
        if foreign:
            raise LabError(f"OVS bridges {', '.join(foreign)} exist and were not created by "
                           "cpn-lab; remove them first (ovs-vsctl del-br NAME, or mn -c)")

    def _say_environment(self) -> None:
        assert self.env is not None
        if self.env.ovs_started:
            log.info("started Open vSwitch %s (ovs-ctl)", self.env.ovs_version)
        if self.env.datapath == "user":
            log.info("no OVS kernel datapath here: switches use the userspace datapath")
        if not self.env.netem:
            log.info("this kernel has no netem: link delays are not applied (latency_ms stays "
                     "configured data for the controller)")
        mode = ("standalone learning switches" + (" with RSTP (the topology has a loop)"
                                                  if self.rstp else "")
                if self.standalone else
                "fail_mode=secure, OpenFlow 1.3, controller "
                + ", ".join(str(c) for c in self.controllers))
        log.info("switches: %s", mode)

    # lookups -------------------------------------------------------------------------------
    def _net(self) -> Mininet:
        if self.net is None or self._stopped:
            raise LabError("the lab network is not running")
        return self.net

    def switch(self, node: str) -> OVSSwitch:
        """The Mininet switch of topology node ``node``."""
        return self._net().get(self.plan.switch(node))

    def host(self, host: str) -> MininetHost:
        """The Mininet host of topology host ``host``."""
        return self._net().get(self.plan.host(host))

    def bridge_dpid(self, node: str) -> int:
        """The datapath id OVS reports for ``node``'s bridge."""
        res = run_command(["ovs-vsctl", "--timeout=5", "get", "Bridge", self.plan.switch(node),
                           "datapath_id"])
        if res.returncode != 0:
            raise LabError(f"cannot read the dpid of {node}: {res.stderr.strip()}")
        return int(res.stdout.strip().strip('"'), 16)

    def dump_flows(self, node: str, table: int | None = None) -> list[str]:
        """``ovs-ofctl -O OpenFlow13 dump-flows`` lines of ``node``'s switch."""
        args = ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.plan.switch(node)]
        if table is not None:
            args.append(f"table={table}")
        res = run_command(args)
        if res.returncode != 0:
            raise LabError(f"dump-flows on {node} failed: {res.stderr.strip()}")
        return [ln.strip() for ln in res.stdout.splitlines()
                if ln.strip() and "reply" not in ln]

    # bounded waits -------------------------------------------------------------------------
    def _not_ready(self, switches: Iterable[str] | None = None) -> list[str]:
        """What keeps the (given) switches from being ready, one phrase per problem."""
        plan_ifaces = self.plan.switch_interfaces()
        names = list(plan_ifaces) if switches is None else list(switches)
        problems: list[str] = []
        bridges = {b["name"]: b for b in ovsdb_list("Bridge", ["name", "controller"])}
        ifaces = {i["name"]: i for i in ovsdb_list("Interface", ["name", "ofport", "link_state"])}
        connected: dict[str, bool] = {}
        if not self.standalone:
            connected = {c["_uuid"]: bool(c["is_connected"])
                         for c in ovsdb_list("Controller", ["_uuid", "is_connected"])}
        for sw in names:
            node = self.plan.node_of(sw)
            label = node if node == sw else f"{node} ({sw})"
            if sw not in bridges:
                problems.append(f"{label}: no bridge")
                continue
            for iface, port in plan_ifaces[sw]:
                row = ifaces.get(iface)
                if row is None or row["ofport"] != port:
                    problems.append(f"{label}: {iface} not on port {port}")
                elif row["link_state"] != "up" and not self._link_is_down(iface):
                    problems.append(f"{label}: {iface} link {row['link_state'] or 'unknown'}")
            if not self.standalone:
                uuids = _as_list(bridges[sw]["controller"])
                if not any(connected.get(u) for u in uuids):
                    problems.append(f"{label}: not connected to a controller")
        return problems

    def _link_is_down(self, iface: str) -> bool:
        return iface in self._admin_down

    def wait_until_connected(self, timeout_s: float = 30.0, poll_s: float = 0.2,
                             nodes: Iterable[str] | None = None) -> float:
        """Wait until the switches (all, or those of ``nodes``) are ready; return seconds.

        Ready: bridge present, every planned port on its port number and up, and (with
        controllers) connected. :class:`LabError` naming what is missing on timeout.
        """
        switches = None if nodes is None else [self.plan.switch(n) for n in nodes]
        t0 = time.monotonic()
        problems: list[str] = []
        while True:
            problems = self._not_ready(switches)
            if not problems:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout_s:
                break
            time.sleep(poll_s)
        hint = ""
        if not self.standalone and any("controller" in p for p in problems):
            hint = (" — is the controller running at "
                    + ", ".join(str(c) for c in self.controllers) + "?")
        raise LabError(f"switches not ready after {timeout_s:.1f} s: "
                       + "; ".join(problems[:10])
                       + (f" (and {len(problems) - 10} more)" if len(problems) > 10 else "")
                       + hint)

    def rstp_pending(self) -> list[str]:
        """Switch ports RSTP has not yet settled (neither forwarding nor blocked)."""
        wanted = {iface for ifs in self.plan.switch_interfaces().values() for iface, _ in ifs}
        pending = []
        for row in ovsdb_list("Port", ["name", "rstp_status"]):
            if row["name"] not in wanted or row["name"] in self._admin_down:
                continue
            status = row["rstp_status"] or {}
            role, state = status.get("rstp_port_role"), status.get("rstp_port_state")
            if state == "Forwarding" or role in ("Alternate", "Backup", "Disabled"):
                continue
            pending.append(f"{row['name']} {role or '?'}/{state or '?'}")
        return pending

    def wait_until_rstp_converged(self, timeout_s: float = 60.0, poll_s: float = 0.2) -> float:
        """Wait until every switch port is forwarding or blocked by RSTP; return seconds."""
        t0 = time.monotonic()
        pending: list[str] = []
        settled_polls = 0
        while time.monotonic() - t0 <= timeout_s:
            pending = self.rstp_pending()
            # Two settled polls in a row: a single one could catch a handshake mid-way.
            settled_polls = 0 if pending else settled_polls + 1
            if settled_polls >= 2:
                return time.monotonic() - t0
            time.sleep(poll_s)
        raise LabError(f"RSTP did not settle within {timeout_s:.1f} s; ports still pending: "
                       + ", ".join(pending[:10]))

    def wait_until_reachable(self, src: str, dst: str, timeout_s: float = 15.0) -> float:
        """Ping from host ``src`` to host ``dst`` until answered; return seconds taken.

        :class:`LabError` on timeout, naming both hosts and addresses.
        """
        t0 = time.monotonic()
        while True:
            left = timeout_s - (time.monotonic() - t0)
            if left <= 0:
                break
            r = self.ping(src, dst, count=1, wait_s=max(1, min(2, int(left))))
            if r.received:
                return time.monotonic() - t0
        s, d = self.topology.host(src), self.topology.host(dst)
        raise LabError(f"{src} ({self.plan.host(src)}, {s.ip}) could not reach {dst} "
                       f"({self.plan.host(dst)}, {d.ip}) within {timeout_s:g} s")

    def wait_until_flow(self, node: str, match: str | Callable[[str], bool],
                        timeout_s: float = 10.0, poll_s: float = 0.2,
                        table: int | None = None) -> list[str]:
        """Wait until a flow of ``node``'s switch matches; return the matching flow lines.

        ``match``: a substring of the ``ovs-ofctl dump-flows`` line, or a predicate on it.
        """
        def test(line: str) -> bool:
            return match(line) if callable(match) else match in line

        t0 = time.monotonic()
        while True:
            hits = [ln for ln in self.dump_flows(node, table) if test(ln)]
            if hits:
                return hits
            if time.monotonic() - t0 > timeout_s:
                break
            time.sleep(poll_s)
        what = match if isinstance(match, str) else getattr(match, "__name__", "predicate")
        raise LabError(f"no flow matching {what!r} on {node} ({self.plan.switch(node)}) "
                       f"within {timeout_s:g} s")

    # ping ----------------------------------------------------------------------------------
    def _ping_from(self, src: str, dsts: Sequence[str], count: int, wait_s: int,
                   interval_s: float = 0.2) -> subprocess.Popen[bytes]:
        ips = [self.topology.host(d).ip for d in dsts]
        env = {**os.environ, "PING_COUNT": str(count), "PING_WAIT": str(wait_s),
               "PING_INTERVAL": f"{interval_s:g}"}
        return self.host(src).popen(["sh", "-c", _PING_SCRIPT, "ping-matrix", *ips], env=env)

    def _collect(self, src: str, dsts: Sequence[str], proc: subprocess.Popen[bytes],
                 timeout_s: float) -> list[PingResult]:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        parsed = _parse_ping_lines(out.decode(errors="replace"))
        results = []
        for d in dsts:
            sent, recv, rtt = parsed.get(self.topology.host(d).ip, (0, 0, None))
            results.append(PingResult(src, d, sent, recv, rtt))
        return results

    def ping(self, src: str, dst: str, count: int = 1, wait_s: int = 2) -> PingResult:
        """Ping host ``dst`` from host ``src`` (topology names)."""
        proc = self._ping_from(src, [dst], count, wait_s)
        return self._collect(src, [dst], proc, timeout_s=count * 0.2 + wait_s + 10)[0]

    def ping_matrix(self, pairs: Sequence[tuple[str, str]] | None = None, *, count: int = 1,
                    wait_s: int = 3, parallel_sources: int = 4,
                    force_all: bool = False) -> PingMatrix:
        """Ping each ordered pair (default: :func:`plan_ping_pairs`); sources run a few at a
        time, each pinging its destinations in parallel."""
        hosts = [h.name for h in self.topology.hosts]
        if pairs is None:
            pairs, description = plan_ping_pairs(hosts, force_all=force_all)
        else:
            description = f"{len(pairs)} given pairs"
        by_src: dict[str, list[str]] = {}
        for a, b in pairs:
            by_src.setdefault(a, []).append(b)
        results: list[PingResult] = []
        sources = list(by_src)
        for i in range(0, len(sources), max(1, parallel_sources)):
            batch = sources[i:i + parallel_sources]
            procs = [(s, self._ping_from(s, by_src[s], count, wait_s)) for s in batch]
            for s, proc in procs:
                results.extend(self._collect(s, by_src[s], proc,
                                             timeout_s=count * 0.2 + wait_s + 20))
        return PingMatrix(results, f"{description}, {count} echo request(s) each", hosts)

    # failures ------------------------------------------------------------------------------
    def set_link(self, a: str, b: str, up: bool, index: int | None = None) -> list[int]:
        """Bring the link(s) between nodes ``a`` and ``b`` down or up (both ends' interfaces).

        With parallel links, all of them unless ``index`` (into ``topology.links``) picks one.
        Returns the indices changed.
        """
        indices = self.plan.links_between(a, b)
        if index is not None:
            if index not in indices:
                raise NotFound(f"link {index} does not join {a} and {b}")
            indices = [index]
        if not indices:
            raise NotFound(f"no link between {a} and {b} in topology {self.topology.name!r}")
        net = self._net()
        for i in indices:
            for iface in self.plan.link_interfaces(i):
                sw, _, port = iface.rpartition("-eth")
                intf = net.get(sw).intfs[int(port)]
                err = intf.ifconfig("up" if up else "down")
                if err:
                    raise LabError(f"cannot set {iface} {'up' if up else 'down'}: {err}")
                if up:
                    self._admin_down.discard(iface)
                else:
                    self._admin_down.add(iface)
        return indices

    def link_down(self, a: str, b: str, index: int | None = None) -> list[int]:
        """Cut the link(s) between nodes ``a`` and ``b`` (see :meth:`set_link`)."""
        return self.set_link(a, b, up=False, index=index)

    def link_up(self, a: str, b: str, index: int | None = None) -> list[int]:
        """Restore the link(s) between nodes ``a`` and ``b`` (see :meth:`set_link`)."""
        return self.set_link(a, b, up=True, index=index)

    def stop_switch(self, node: str) -> None:
        """Delete ``node``'s bridge (its links stay; their far ends see no carrier change)."""
        self.switch(node).stop(deleteIntfs=False)

    def start_switch(self, node: str, timeout_s: float = 30.0) -> float:
        """Recreate ``node``'s bridge with the same dpid, ports and controllers; wait until
        it is ready. Returns seconds waited."""
        self.switch(node).start(self._net().controllers)
        return self.wait_until_connected(timeout_s=timeout_s, nodes=[node])

    def restart_switch(self, node: str, timeout_s: float = 30.0) -> float:
        """Stop and start ``node``'s switch (flows are lost, as on a real switch reboot)."""
        self.stop_switch(node)
        return self.start_switch(node, timeout_s=timeout_s)

    def cli(self) -> None:
        """Open the Mininet CLI on the running network."""
        from mininet.cli import CLI

        CLI(self._net())


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while tearing down, so a second Ctrl-C cannot leave debris."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals cannot be touched, nothing to defer
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------

def _format_table(rows: Sequence[Sequence[str]], right_from: int | None = None) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            right = right_from is not None and i >= right_from
            cells.append(cell.rjust(widths[i]) if right else cell.ljust(widths[i]))
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpn-lab", description="Build a Mininet network from a topology file.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help="topology file (YAML)")
        mode = sp.add_mutually_exclusive_group()
        mode.add_argument("--controller", action="append", default=[], metavar="tcp:HOST:PORT",
                          help="OpenFlow controller (repeatable); switches in fail_mode=secure")
        mode.add_argument("--standalone", action="store_true",
                          help="no controller: OVS learning switches, RSTP on looped "
                               "topologies (the default while no --controller is given)")
        sp.add_argument("--timeout", type=float, default=180.0, metavar="S",
                        help="bring-up timeout in seconds (default 180)")
        sp.add_argument("-v", "--verbose", action="store_true", help="Mininet's own log too")

    up = sub.add_parser("up", help="build the network and open the Mininet CLI")
    common(up)
    check = sub.add_parser("check", help="build, ping matrix, summary, tear down")
    common(check)
    check.add_argument("--all-pairs", action="store_true",
                       help=f"ping every ordered pair even above {ALL_PAIRS_MAX_HOSTS} hosts")
    check.add_argument("--count", type=int, default=1, help="echo requests per pair")
    sub.add_parser("clean", help="remove what crashed cpn-lab runs left behind")
    return p


def _raise_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cpn-lab`` command. Returns the exit status: 0 ok, 1 loss, 2 error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cpn-lab: %(message)s")
    # The Mininet CLI prints at level "output"; check keeps Mininet quiet.
    verbose = getattr(args, "verbose", False)
    setLogLevel("info" if verbose else "output" if args.command == "up" else "warning")
    # SIGTERM/SIGHUP unwind like Ctrl-C, through the finally clauses that tear the net down.
    previous = {sig: signal.signal(sig, _raise_on_signal)
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    try:
        require_root()
        if args.command == "clean":
            probe_environment()
            removed = cleanup_stale()
            print("removed: " + (", ".join(removed) if removed else "nothing"))
            return 0
        topology = load_topology(args.file)
        controllers = [parse_controller(c) for c in args.controller]
        lab = LabNetwork(topology, controllers=controllers)
        try:
            print(f"topology {topology.name}: {len(topology.nodes)} switches, "
                  f"{len(topology.hosts)} hosts, {len(topology.links)} links")
            up = lab.start(timeout_s=args.timeout)
            print(f"network up in {up.total_s:.1f} s (build {up.build_s:.1f} s, "
                  f"start {up.start_s:.1f} s, ready {up.ready_s:.1f} s)")
            if args.command == "up":
                print(lab.plan.names_table())
                example = ""
                if len(topology.hosts) >= 2:
                    example = (f" (e.g. '{lab.plan.host(topology.hosts[0].name)} ping "
                               f"{lab.plan.host(topology.hosts[-1].name)}')")
                print(f"Mininet CLI: use the lab names above{example}; 'exit' tears down.")
                lab.cli()
                return 0
            return _check(lab, args)
        finally:
            lab.stop()
    except CpnError as exc:
        print(f"cpn-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cpn-lab: interrupted; network torn down", file=sys.stderr)
        return 130


def _check(lab: LabNetwork, args: argparse.Namespace) -> int:
    hosts = lab.topology.hosts
    if len(hosts) >= 2:
        # A first answered ping shows forwarding works before the matrix counts losses.
        lab.wait_until_reachable(hosts[0].name, hosts[-1].name, timeout_s=30.0)
    t0 = time.monotonic()
    matrix = lab.ping_matrix(count=args.count, force_all=args.all_pairs)
    took = time.monotonic() - t0
    print(f"ping matrix: {matrix.description} ({took:.1f} s)")
    if len(matrix.hosts) <= 12 and len(matrix.results) == len(hosts) * (len(hosts) - 1):
        print(matrix.matrix_table())
        print()
    print(matrix.summary_table(lab.plan))
    failed = matrix.failed
    if failed:
        shown = ", ".join(f"{r.src}->{r.dst} ({r.received}/{r.sent})" for r in failed[:20])
        print(f"LOSS: {len(failed)} of {len(matrix.results)} pairs lost packets: {shown}"
              + (" ..." if len(failed) > 20 else ""))
        return 1
    print(f"OK: {len(matrix.results)} pairs, {matrix.sent} echo requests, 0% loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
