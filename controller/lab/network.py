"""The lab network: a topology running as Open vSwitch switches and Mininet hosts.

:class:`LabNetwork` is what ``cpn-lab``, ``cpn-demo``, the tests and the benchmarks drive: start
and (always) stop, bounded waits (``wait_until_connected``, ``wait_until_reachable``,
``wait_until_flow``, ``wait_until_rstp_converged``), pings and a ping matrix, link down/up and
switch stop/start/restart. Every public method takes the topology's names; the Mininet names
and port numbers come from :class:`controller.lab.plan.LabPlan`.

Cleanup: :meth:`LabNetwork.stop` deletes the lab's veths (one link group, one kernel batch)
and its bridges (one ``ovs-vsctl`` transaction), runs ``net.stop()`` and then removes whatever
of the lab's record is left (:mod:`controller.lab.cleanup`); starting a lab first removes what
dead labs left behind and refuses when another lab runs (OVS bridge names are global).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mininet.net import Mininet
from mininet.node import Host as MininetHost
from mininet.node import OVSSwitch

from controller.errors import LabError, NotFound
from controller.lab.build import BACKBONE_MTU, ControllerAddress, make_mininet
from controller.lab.cleanup import (
    OWNER_KEY,
    STATE_DIR,
    choose_link_group,
    cleanup_stale,
    delete_link_group,
    delete_links,
    ip_links,
    link_groups_in_use,
    live_labs,
    process_start_time,
    remove_recorded,
    remove_ssl_of,
)
from controller.lab.ovs import (
    LabEnvironment,
    ovsdb_list,
    probe_environment,
    require_root,
    run_command,
    set_ssl,
    ssl_config,
)
from controller.lab.ping import (
    PING_SCRIPT,
    PingMatrix,
    PingResult,
    parse_ping_lines,
    plan_ping_pairs,
)
from controller.lab.pki import PkiFiles
from controller.lab.plan import LabPlan
from controller.topology.model import Topology

__all__ = ["INACTIVITY_PROBE_MS", "BringUp", "LabNetwork"]

log = logging.getLogger(__name__)


INACTIVITY_PROBE_MS = 30_000
"""how long a switch waits for its controller's echo reply before it drops the connection"""


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


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

    ``tls``: the switches' key and certificate and the CA certificate they check the
    controller's against (``cpn-lab pki DIR``), set as Open vSwitch's SSL configuration
    (``ovs-vsctl set-ssl``) for ``ssl:`` controllers while the lab runs, and removed when it
    stops (or by :func:`~controller.lab.cleanup.cleanup_stale` after a crash).
    """

    def __init__(self, topology: Topology, *, controllers: Sequence[ControllerAddress] = (),
                 rstp: bool | None = None, env: LabEnvironment | None = None,
                 state_dir: Path = STATE_DIR, tls: PkiFiles | None = None) -> None:
        self.topology = topology
        self.plan = LabPlan.from_topology(topology)
        self.controllers = list(controllers)
        self.standalone = not self.controllers
        self.rstp = (self.plan.has_loop() if rstp is None else rstp) and self.standalone
        self.env = env
        self.state_dir = state_dir
        self.tls = tls
        if tls is not None:
            missing = [p.name for p in (tls.switch_key, tls.switch_cert, tls.ca_cert)
                       if not p.is_file()]
            if missing:
                raise LabError(f"--tls-dir {tls.dir}: {', '.join(missing)} missing (make them "
                               f"with 'cpn-lab pki {tls.dir}')")
        self.net: Mininet | None = None
        self.link_group: int | None = None
        """The link group of the switch ends of the lab's veths, chosen at start."""
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

    def start(self, timeout_s: float = 120.0, *, connected: bool = True) -> BringUp:
        """Build and start the network; wait (bounded) until it is ready.

        Ready means: every bridge exists with its ports up on the planned port numbers; with
        controllers, every switch connected to one (unless ``connected`` is False: a lab
        whose switches a controller is expected to refuse); with RSTP, every port forwarding
        or blocked by RSTP. Raises :class:`LabError` (after cleaning up) on failure.
        """
        require_root()
        if self.net is not None:
            raise LabError("this lab network was already started")
        if self.env is None:
            self.env = probe_environment()
        if self._own_record_is_live():
            raise LabError("a lab network is already running in this process "
                           f"({self._record_path}); stop it first")
        others = live_labs(self.state_dir)
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
            self.link_group = choose_link_group(os.getpid(), link_groups_in_use())
            self.net = self._make_net()
            self._write_record()
            if self.tls is not None:
                self._set_ssl(self.tls)
            self.net.build()
            self._write_record()
            self._set_backbone_mtu()
            t1 = time.monotonic()
            self.net.start()
            self.wait_until_connected(timeout_s=max(1.0, timeout_s - (time.monotonic() - t0)),
                                      controller=False)
            self._group_bridge_interfaces()
            self._attach_controllers(self.plan.switch_names.values())
            t2 = time.monotonic()
            remaining = max(1.0, timeout_s - (t2 - t0))
            self.wait_until_connected(timeout_s=remaining, controller=connected)
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
            if self.tls is not None:
                try:
                    remove_ssl_of(str(os.getpid()))
                except LabError as exc:  # the record's removal below tries again
                    log.warning("could not remove the lab's SSL configuration: %s", exc)
            if self._wrote_record and self._record_path.exists():
                try:
                    record = json.loads(self._record_path.read_text())
                    left = remove_recorded(record)
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

    def _attach_controllers(self, bridges: Iterable[str]) -> None:
        """Give ``bridges`` (created without) their controllers, in one ``ovs-vsctl``
        transaction once every bridge and port exists: switches that connect while
        ovs-vswitchd still creates hundreds of others answer seconds late (Kdl: barrier
        replies over 5 s). Each connection gets an inactivity probe of
        :data:`INACTIVITY_PROBE_MS` (Open vSwitch's default, 5 s, drops a connection whose
        echo request is not answered within 5 s; the Kdl lab lost 1,379 connections that way
        during bring-up, each one a reconnection and a resync)."""
        if self.standalone:
            return
        args = ["ovs-vsctl", "--timeout=120"]
        for i, bridge in enumerate(bridges):
            ids = []
            for k, c in enumerate(self.controllers):
                ids.append(f"@c{i}x{k}")
                args += ["--", f"--id={ids[-1]}", "create", "Controller", f'target="{c}"',
                         f"inactivity_probe={INACTIVITY_PROBE_MS}", "max_backoff=1000"]
            args += ["--", "set", "Bridge", bridge, f"controller=[{','.join(ids)}]"]
        res = run_command(args, timeout_s=240)
        if res.returncode != 0:
            raise LabError(f"could not attach the controllers: {res.stderr.strip()[-800:]}")

    def _set_ssl(self, tls: PkiFiles) -> None:
        """Open vSwitch's SSL configuration from ``tls``, marked as this lab's; one that
        cpn-lab did not make is not replaced."""
        current = ssl_config()
        if current is not None and OWNER_KEY not in current["external_ids"]:
            raise LabError(f"Open vSwitch has an SSL configuration cpn-lab did not make "
                           f"(key {current['private_key']}); remove it first (ovs-vsctl "
                           "del-ssl)")
        set_ssl(tls.switch_key, tls.switch_cert, tls.ca_cert, {OWNER_KEY: str(os.getpid())})

    def _group_bridge_interfaces(self) -> None:
        """Put the bridges' own interfaces in the lab's link group, on the userspace datapath
        (there they are tap devices ovs-vswitchd made when it created the bridges), so that
        teardown deletes them in the veths' kernel batch: ovs-vswitchd closing each tap as
        it deletes the bridge unregisters them one at a time. Best effort: a tap left out
        is deleted with its bridge."""
        if self.link_group is None or self.env is None or self.env.datapath != "user":
            return
        existing = set(ip_links())
        taps = [b for b in self.plan.switch_names.values() if b in existing]
        if not taps:
            return
        res = run_command(["ip", "-batch", "-"], timeout_s=120, input_text="".join(
            f"link set dev {tap} group {self.link_group}\n" for tap in taps))
        if res.returncode != 0:
            log.warning("could not put the bridges' interfaces in link group %d: %s",
                        self.link_group, res.stderr.strip()[-400:])

    def _remove_bridges_and_links(self) -> None:
        """Delete all veths and the bridges' taps at once (``ip link del group``), then all
        bridges in one ``ovs-vsctl`` call.

        Mininet's ``net.stop()`` deletes each veth through a node shell (two round trips per
        link), and one ``ip link del`` per veth, even in one ``ip -batch``, waits for the
        kernel to unregister each on its own (38 s for Kdl's 1,653 veths); the group is one
        batch in the kernel (3 s). Deleting the bridges is ovs-vswitchd removing each port
        from its one userspace datapath, which costs more the more ports that datapath
        holds (Kdl: 3,306 ports, 20 a second at first, 80 at the end). With the veths and
        taps already gone it has less to do: on Kdl 70 s instead of 96 s (its CPU time 38 s
        instead of 50 s). That part sets the pace of Kdl's teardown (76 s, as when the veths
        went one by one alongside it); the national backbone's takes 4-5 s instead of 8 s.
        Veths left out of the group (or in a group someone else's device joined) are
        deleted by name.
        """
        assert self.net is not None
        ifaces = self._switch_interfaces()
        if self.link_group is not None:
            delete_link_group(self.link_group,
                              ifaces + list(self.plan.switch_names.values()))
        bridges = [str(s) for s in self.net.switches]
        if bridges:
            run_command(["ovs-vsctl", "--timeout=300"] + [
                a for b in bridges for a in ("--", "--if-exists", "del-br", b)], timeout_s=330)
        delete_links(ifaces)
        self.net.links = []  # gone; net.stop() now only stops switches and hosts

    def _switch_interfaces(self) -> list[str]:
        """The switch ends of every veth of the lab: its links' both ends, its hosts' one."""
        return [i for ifs in self.plan.switch_interfaces().values() for i, _ in ifs]

    def _make_net(self) -> Mininet:
        assert self.env is not None
        return make_mininet(self.plan, self.env, self.controllers, rstp=self.rstp,
                            link_group=self.link_group)

    def _own_record_is_live(self) -> bool:
        """True when this process already runs a lab (a record from a dead process that had
        the same pid does not count: its start time differs)."""
        try:
            record = json.loads(self._record_path.read_text())
        except (OSError, ValueError):
            return False
        return record.get("start_time") == process_start_time(os.getpid())

    def _write_record(self) -> None:
        assert self.net is not None
        record = {
            "pid": os.getpid(),
            "start_time": process_start_time(os.getpid()),
            "topology": self.topology.name,
            "bridges": sorted(self.plan.switch_names.values()),
            "interfaces": self._switch_interfaces(),
            "link_group": self.link_group,
            "host_pids": [h.pid for h in self.net.hosts if getattr(h, "pid", None)],
            "ssl": self.tls is not None,
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
                + ", ".join(str(c) for c in self.controllers)
                + (f", TLS certificates from {self.tls.dir}" if self.tls is not None else ""))
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
    def _not_ready(self, switches: Iterable[str] | None = None,
                   controller: bool = True) -> list[str]:
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
            if not self.standalone and controller:
                uuids = _as_list(bridges[sw]["controller"])
                if not any(connected.get(u) for u in uuids):
                    problems.append(f"{label}: not connected to a controller")
        return problems

    def _link_is_down(self, iface: str) -> bool:
        return iface in self._admin_down

    def wait_until_connected(self, timeout_s: float = 30.0, poll_s: float = 0.2,
                             nodes: Iterable[str] | None = None, controller: bool = True
                             ) -> float:
        """Wait until the switches (all, or those of ``nodes``) are ready; return seconds.

        Ready: bridge present, every planned port on its port number and up, and (with
        controllers, unless ``controller`` is False) connected. :class:`LabError` naming
        what is missing on timeout.
        """
        switches = None if nodes is None else [self.plan.switch(n) for n in nodes]
        t0 = time.monotonic()
        problems: list[str] = []
        while True:
            problems = self._not_ready(switches, controller)
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
        return self.host(src).popen(["sh", "-c", PING_SCRIPT, "ping-matrix", *ips], env=env)

    def _collect(self, src: str, dsts: Sequence[str], proc: subprocess.Popen[bytes],
                 timeout_s: float) -> list[PingResult]:
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        parsed = parse_ping_lines(out.decode(errors="replace"))
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
        self._attach_controllers([self.plan.switch(node)])
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
