"""The integration tests' harness: the controller as a subprocess (so a test can SIGKILL and
restart it), a lab connected to it (waiting, bounded, while another lab holds the machine),
flow-counter reading, a 10 ms ping, the shipped topologies by name.

Test modules import what they use: ``from harness import ControllerProcess, start_lab, ...``.
Bounded waits come from ``tests/waiting.py`` (``from waiting import wait_until``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from waiting import wait_until, wait_until_stable

from controller.errors import LabError
from controller.lab import process
from controller.lab.build import ControllerAddress
from controller.lab.cleanup import cleanup_stale
from controller.lab.network import LabNetwork
from controller.lab.pki import PkiFiles
from controller.lab.plan import LabPlan
from controller.network.flows import make_cookie
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from controller.topology.model import Topology
from controller.topology.wiring import port_plan

REPO = Path(__file__).resolve().parents[2]
"""The repository root: the working directory of the processes the tests start."""
DIAMOND = topology_file("diamond")
NATIONAL = topology_file("national")
MACHINE_WAIT_S = 240.0
"""How long a lab waits for another lab on this machine to finish (bridge names are global)."""
KIND_DESTINATION = 2
KIND_INTENT = 3
KIND_TUNNEL = 5


def intent_cookie(intent_id: int) -> int:
    return make_cookie(KIND_INTENT, intent_id)


def route_cookies(intent: dict[str, Any]) -> tuple[int, ...]:
    """The cookies of the flows that carry an intent's traffic (``intent`` as the state file
    or the REST API shows it): its own (the ingress; every switch for a protected intent),
    then those of its tunnel's segments (``mpls_labels``, one per switch after the
    ingress), if any."""
    own = intent_cookie(int(intent["id"]))
    return (own, *(make_cookie(KIND_TUNNEL, int(label))
                   for label in intent.get("mpls_labels") or ()))


def head_cookie(intent: dict[str, Any]) -> int | None:
    """The cookie of the tunnel head an intent's ingress enters by (its one flow in table 3
    at the ingress switch: it swaps the head's label, ``mpls_label``, for the tunnel's first,
    ``mpls_labels[0]``); None: the intent rides no tunnel."""
    label = intent.get("mpls_label")
    return None if label is None else make_cookie(KIND_TUNNEL, int(label))


def destination_cookie(ip: str) -> int:
    a, b, c, d = (int(x) for x in ip.split("."))
    return make_cookie(KIND_DESTINATION, (a << 24) | (b << 16) | (c << 8) | d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ControllerProcess:
    """``python -m controller.main`` in a subprocess, logging to a file."""

    def __init__(self, topology_file: Path, workdir: Path, startup_grace_s: float = 10.0) -> None:
        self.topology_file = topology_file
        self.port = free_port()
        self.log_path = workdir / "controller.log"
        self.state_path = workdir / "controller-state.json"
        self.state_dir = workdir / "state"  # the store and API token: never the user's own
        self.api_port = free_port()
        self.startup_grace_s = startup_grace_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.api_token: str | None = None
        """the API's write token, given as ``$CPN_API_TOKEN``; None: the controller makes one
        in its state directory (a ``CPN_API_TOKEN`` of the test process is never passed on,
        so one test's token cannot leak into another's controller)"""

    @property
    def address(self) -> ControllerAddress:
        return ControllerAddress("127.0.0.1", self.port)

    def command(self) -> list[str]:
        """The controller's command line (subclasses add options)."""
        return [sys.executable, "-m", "controller.main", "--topology", str(self.topology_file),
                "--ofp-port", str(self.port), "--log-file", str(self.log_path),
                "--state-file", str(self.state_path),
                "--state-dir", str(self.state_dir), "--api-port", str(self.api_port),
                "--startup-grace", str(self.startup_grace_s)]

    readiness = "listening for OpenFlow"

    def ready(self) -> bool:
        """True once the started controller is usable (here: its OpenFlow port accepts)."""
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def start(self, timeout_s: float = 20.0) -> None:
        self.starts += 1
        with open(self.log_path, "a") as f:
            f.write(f"===== start {self.starts} =====\n")
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it
        env = {k: v for k, v in os.environ.items() if k != "CPN_API_TOKEN"}
        if self.api_token is not None:
            env["CPN_API_TOKEN"] = self.api_token
        self.proc = subprocess.Popen(self.command(), cwd=REPO, stdout=log,
                                     stderr=subprocess.STDOUT, env=env)
        log.close()
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"controller exited ({proc.poll()}) before {self.readiness}:\n"
                            f"{self.log_tail()}", pytrace=False)
            return self.ready()

        wait_until(ready, timeout_s, f"controller {self.readiness} (port {self.port})",
                   detail=self.log_tail)

    def kill(self) -> None:
        """SIGKILL: no goodbye to the switches."""
        if self.proc is not None:
            process.kill(self.proc)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.proc is not None:
            process.stop(self.proc)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def switches_synced(self, count: int) -> bool:
        """True when the controller's REST API reports ``count`` switches connected and
        reconciled (``/health``, open on loopback)."""
        try:
            health = httpx.get(f"http://127.0.0.1:{self.api_port}/api/v1/health", timeout=5.0)
            return bool(health.json().get("switches_synced") == count)
        except (httpx.HTTPError, ValueError):
            return False

    def wait_synced(self, count: int, timeout_s: float, what: str = "every switch") -> None:
        """Wait (bounded) until :meth:`switches_synced`; fail naming ``what``."""
        wait_until(lambda: self.switches_synced(count), timeout_s, f"{what} reconciled",
                   poll_s=0.2, detail=lambda: self.log_tail(20))

    def state(self) -> dict[str, Any]:
        try:
            return json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}

    def wait_links_verified(self, count: int, timeout_s: float) -> dict[str, Any]:
        """Wait (bounded) until LLDP has verified ``count`` links; return the link report."""
        def report() -> dict[str, Any] | None:
            r = self.state().get("link_report")
            return r if r and len(r["verified"]) == count else None

        return wait_until(report, timeout_s, f"LLDP to verify all {count} links",
                          detail=lambda: str(self.state().get("link_report"))[:2000])

    def intent(self, name: str) -> dict[str, Any] | None:
        for i in self.state().get("intents", []):
            if i["name"] == name:
                return i
        return None

    def wait_intent(self, name: str, pred: Callable[[dict[str, Any]], bool],
                    timeout_s: float = 15.0) -> dict[str, Any]:
        return wait_until(lambda: (lambda i: i if i and pred(i) else None)(self.intent(name)),
                          timeout_s, f"intent {name} in the wanted state",
                          detail=lambda: json.dumps(self.intent(name)))


def assert_lab_ports_match_wiring(topology: Topology) -> None:
    """The lab must number ports as the controller expects (``controller.topology.wiring``)."""
    lab_plan = LabPlan.from_topology(topology)
    w = port_plan(topology)
    assert list(lab_plan.link_ports) == [tuple(p) for p in w.link_ports]
    assert lab_plan.host_ports == {h: p for h, (_n, p) in w.host_port.items()}


@dataclass
class FlowLine:
    cookie: int
    table: int
    priority: int
    n_packets: int
    duration_s: float
    match: str
    actions: str


_FIELD_RE = {k: re.compile(rf"\b{k}=([0-9a-fx.]+)") for k in
             ("cookie", "duration", "table", "n_packets")}
_PRIO_RE = re.compile(r"\bpriority=(\d+),?(\S*)$")


def parse_flows(lines: list[str]) -> list[FlowLine]:
    """``ovs-ofctl dump-flows`` lines as :class:`FlowLine` (lines it cannot read skipped)."""
    out = []
    for ln in lines:
        head, sep, actions = ln.rpartition(" actions=")
        prio = _PRIO_RE.search(head)
        fields = {k: r.search(head) for k, r in _FIELD_RE.items()}
        if fields["table"] is None:  # some ovs-ofctl versions omit table=0
            fields["table"] = re.search(r"(0)", "0")
        if not sep or prio is None or any(v is None for v in fields.values()):
            continue
        out.append(FlowLine(int(fields["cookie"].group(1), 16),  # type: ignore[union-attr]
                            int(fields["table"].group(1)),  # type: ignore[union-attr]
                            int(prio.group(1)),
                            int(fields["n_packets"].group(1)),  # type: ignore[union-attr]
                            float(fields["duration"].group(1).rstrip(".")),  # type: ignore[union-attr]
                            prio.group(2), actions.strip()))
    return out


def flows_of(lab: LabNetwork, node: str) -> list[FlowLine]:
    return parse_flows(lab.dump_flows(node))


def counters(lab: LabNetwork) -> dict[str, dict[int, int]]:
    """node -> cookie -> packets counted by that switch's flows with that cookie."""
    nodes = [n.name for n in lab.topology.nodes]
    with ThreadPoolExecutor(max_workers=8) as pool:
        tables = list(pool.map(lambda node: flows_of(lab, node), nodes))
    out: dict[str, dict[int, int]] = {}
    for node, flows in zip(nodes, tables, strict=True):
        per = out.setdefault(node, {})
        for f in flows:
            per[f.cookie] = per.get(f.cookie, 0) + f.n_packets
    return out


def settled_counters(lab: LabNetwork, timeout_s: float = 6.0, gap_s: float = 1.2
                     ) -> dict[str, dict[int, int]]:
    """:func:`counters` once two reads ``gap_s`` apart agree: OVS pushes datapath packet
    counts to its OpenFlow flows only every ~0.5-1 s (revalidators)."""
    return wait_until_stable(lambda: counters(lab), gap_s, timeout_s)


def by_cookie(table: dict[str, dict[int, int]], cookie: int | tuple[int, ...]
              ) -> dict[str, int]:
    """node -> packets of ``cookie``, summed over the cookies when given several (nodes
    without such a flow left out)."""
    cookies = (cookie,) if isinstance(cookie, int) else cookie
    return {n: sum(per[c] for c in cookies if c in per) for n, per in table.items()
            if any(c in per for c in cookies)}


def packets_by_cookie(lab: LabNetwork, cookie: int | tuple[int, ...]) -> dict[str, int]:
    """node -> packets counted by the flows carrying ``cookie`` (or any of several),
    absent: no such flow."""
    return by_cookie(counters(lab), cookie)


def counter_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {n: after.get(n, 0) - before.get(n, 0) for n in set(before) | set(after)
            if after.get(n, 0) - before.get(n, 0) > 0}


def table_signature(lab: LabNetwork, node: str) -> list[tuple[int, int, int, str, str]]:
    """The flow table without counters: (cookie, table, priority, match, actions), sorted."""
    return sorted((f.cookie, f.table, f.priority, f.match, f.actions)
                  for f in flows_of(lab, node))


_TX = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")


def fast_ping(lab: LabNetwork, src: str, dst: str, count: int,
              interval_s: float = 0.01) -> subprocess.Popen[bytes]:
    """``ping -i 0.01 -c count`` from host ``src`` to ``dst`` in the background."""
    ip = lab.topology.host(dst).ip
    return lab.host(src).popen(["ping", "-n", "-q", "-i", f"{interval_s:g}", "-W", "1",
                                "-c", str(count), ip],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def ping_result(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, int, str]:
    """(transmitted, received, output) of a :func:`fast_ping`."""
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    text = out.decode(errors="replace")
    m = _TX.search(text)
    if m is None:
        pytest.fail(f"no ping summary in: {text}", pytrace=False)
    return int(m.group(1)), int(m.group(2)), text


def start_lab(lab_env: Any, topology: Topology,
              controller: ControllerProcess | Sequence[ControllerProcess],
              timeout_s: float = 120.0, machine_wait_s: float = MACHINE_WAIT_S, *,
              tls: PkiFiles | None = None, connected: bool = True
              ) -> tuple[LabNetwork, float]:
    """A started lab connected to ``controller`` (or to each of several: a cluster's
    members); returns it and its bring-up seconds. ``tls``: the switches' certificates for
    ``ssl:`` controllers; ``connected`` False: do not wait for the switches to connect.

    While another lab runs on the machine (the lab refuses to start beside one), retry for up
    to ``machine_wait_s`` seconds."""
    started: list[tuple[LabNetwork, float]] = []
    refusal: list[str] = []

    def attempt() -> bool:
        cleanup_stale()
        ctls = [controller] if isinstance(controller, ControllerProcess) else controller
        lab = LabNetwork(topology, env=lab_env, controllers=[c.address for c in ctls], tls=tls)
        t0 = time.monotonic()
        try:
            lab.start(timeout_s=timeout_s, connected=connected)
        except LabError as exc:
            lab.stop()
            if "another cpn-lab network is running" not in str(exc):
                raise
            refusal[:] = [str(exc)]
            return False
        except BaseException:
            lab.stop()
            raise
        started.append((lab, time.monotonic() - t0))
        return True

    wait_until(attempt, machine_wait_s, "the machine free for a lab", poll_s=3.0,
               detail=lambda: refusal[0] if refusal else "")
    return started[0]


@contextlib.contextmanager
def controller_and_lab(lab_env: Any, topology_path: Path, workdir: Path, *,
                       startup_grace_s: float = 10.0, lab_timeout_s: float = 120.0,
                       synced_timeout_s: float = 60.0
                       ) -> Iterator[tuple[ControllerProcess, LabNetwork]]:
    """The controller on ``topology_path`` and a lab connected to it, every switch reconciled;
    both stopped at the end, and the controller's log tail printed (pytest shows it when a
    test failed)."""
    ctl = ControllerProcess(topology_path, workdir, startup_grace_s=startup_grace_s)
    ctl.start()
    try:
        lab, _ = start_lab(lab_env, load_topology(topology_path), ctl, timeout_s=lab_timeout_s)
        try:
            ctl.wait_synced(len(lab.topology.nodes), synced_timeout_s,
                            f"every {lab.topology.name} switch")
            yield ctl, lab
        finally:
            lab.stop()
    finally:
        print(f"--- controller log (tail) ---\n{ctl.log_tail(60)}")
        ctl.stop()


def dump_on_failure(controller: ControllerProcess) -> str:
    return f"--- controller log (tail) ---\n{controller.log_tail(80)}"


def env_root_ok() -> None:
    if os.geteuid() != 0:
        pytest.fail("controller integration tests need root", pytrace=False)


def tx_offload_off(lab: LabNetwork, hosts: Iterable[str]) -> None:
    """Switch off tx checksum offload on ``hosts``: veths hand userspace OVS TCP segments with
    checksums left to offload, which the userspace datapath does not fill in, so a TCP
    connection never opens. ``ethtool -K <intf> tx off`` (Debian package ethtool) fixes it."""
    if shutil.which("ethtool") is None:
        pytest.fail("ethtool is missing (apt-get install ethtool): needed to switch off tx "
                    "checksum offload on the lab hosts for TCP", pytrace=False)
    for name in hosts:
        h = lab.host(name)
        out = h.cmd(f"ethtool -K {h.defaultIntf()} tx off 2>&1; echo rc=$?")
        assert out.strip().endswith("rc=0"), out


def wait_until_listening(lab: LabNetwork, hosts: Iterable[str], port: int,
                         timeout_s: float = 10.0, detail: Callable[[], str] | None = None
                         ) -> None:
    """Wait (bounded) until a TCP server listens on ``port`` on every one of ``hosts``."""
    names = list(hosts)

    def listening() -> bool:
        return all(f":{port} " in lab.host(h).cmd(f"ss -ltnH sport = :{port}") for h in names)

    wait_until(listening, timeout_s, f"TCP port {port} listening on {', '.join(names)}",
               detail=detail)
