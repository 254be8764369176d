"""Building the Mininet network of a lab from its plan: the Mininet topology, the switch
class, and the OpenFlow controllers the switches connect to.

Switch modes: with controllers, ``fail_mode=secure`` (nothing forwards until a controller
programs it); without, ``fail_mode=standalone`` (OVS acts as a MAC-learning switch). A
learning switch floods, so a topology with a loop would storm; in standalone mode the lab
enables RSTP on every bridge when the topology has a loop (ports facing hosts are marked as
edge ports, so they forward at once). RSTP on userspace OVS here settles in a few seconds
(classic STP needs ~30 s: listening + learning at 15 s forward delay each).

Every bridge is marked as the lab's (``external_ids:cpn-lab-owner=<pid>``) so that cleanup
removes only what a lab created (:mod:`controller.lab.cleanup`).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mininet.link import Link as MininetLink
from mininet.link import TCLink
from mininet.net import Mininet
from mininet.node import Host as MininetHost
from mininet.node import OVSSwitch, RemoteController
from mininet.topo import Topo
from mininet.util import errRun

from controller.errors import LabError
from controller.lab.cleanup import OWNER_KEY
from controller.lab.ovs import LabEnvironment
from controller.lab.plan import LabPlan

__all__ = ["BACKBONE_MTU", "BatchLink", "ControllerAddress", "LabController", "LabMininet",
           "LabSwitch", "LabTopo", "make_mininet", "parse_controller"]

log = logging.getLogger(__name__)

RSTP_DEFAULT_MAX_AGE = 20
NODE_START_THREADS = 8
"""How many hosts' and switches' shells the lab starts at once."""
BACKBONE_MTU = 1600
"""MTU of the switch-to-switch interfaces: room for the controller's MPLS label (4 bytes)
on a full 1500-byte host packet, with headroom, as MPLS backbones are configured"""


@dataclass(frozen=True, slots=True)
class ControllerAddress:
    """An OpenFlow controller the switches connect to, e.g. ``tcp:127.0.0.1:6653`` (or
    ``ssl:...``: over TLS, with the certificates of the lab's ``tls``)."""

    ip: str
    port: int = 6653
    protocol: str = "tcp"

    def __str__(self) -> str:
        return f"{self.protocol}:{self.ip}:{self.port}"


def parse_controller(text: str) -> ControllerAddress:
    """Parse ``tcp:HOST:PORT`` or ``ssl:HOST:PORT`` (or ``HOST:PORT``, ``HOST``: TCP);
    :class:`LabError` if malformed."""
    parts = text.strip().split(":")
    if parts and parts[0] in ("tcp", "ssl"):
        protocol, parts = parts[0], parts[1:]
    else:
        protocol = "tcp"
    if not 1 <= len(parts) <= 2 or not parts[0]:
        raise LabError(f"bad controller address {text!r}: expected tcp:HOST:PORT or "
                       "ssl:HOST:PORT")
    port = 6653
    if len(parts) == 2:
        if not parts[1].isdigit() or not 0 < int(parts[1]) < 65536:
            raise LabError(f"bad controller port in {text!r}: expected 1..65535")
        port = int(parts[1])
    return ControllerAddress(ip=parts[0], port=port, protocol=protocol)


class LabController(RemoteController):  # type: ignore[misc]  # mininet ships no types: Any
    """Mininet's ``RemoteController``, without its plain-TCP probe of an ``ssl:`` controller:
    the probe (``telnet``) would be a refused TLS handshake in the controller's events and
    metrics, and proves nothing about a TLS listener."""

    def checkListening(self) -> None:  # noqa: N802 (Mininet's name)
        if self.protocol != "ssl":
            super().checkListening()


class LabTopo(Topo):  # type: ignore[misc]  # mininet ships no types: Any
    """Mininet topology built from a :class:`LabPlan` (one switch per node, hosts, links)."""

    def build(self, plan: LabPlan, link_delays: bool = False) -> None:
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


class BatchLink(MininetLink):  # type: ignore[misc]  # mininet ships no types: Any
    """A veth link whose pair :class:`LabMininet` makes, with every other link's, in one
    ``ip -batch`` after the nodes exist, and whose interfaces it brings up there too.

    Mininet makes each pair with a command through a node's shell and then runs one or two
    more per interface (``ifconfig up``): on Kdl (1,653 links) 51 s of the lab's build went
    to those round trips."""

    def __init__(self, node1: Any, node2: Any, **params: Any) -> None:
        for side in ("params1", "params2"):
            params[side] = {**(params.get(side) or {}), "up": None}  # no per-interface command
        super().__init__(node1, node2, **params)

    @staticmethod
    def makeIntfPair(*_args: Any, **_kwargs: Any) -> None:  # noqa: N802 (Mininet's name)
        """Nothing here: :meth:`LabMininet.buildFromTopo` makes every pair at once."""


class LabMininet(Mininet):  # type: ignore[misc]  # mininet ships no types: Any
    """Mininet whose build does in batches what Mininet does one shell command at a time: the
    hosts' and switches' shells started :data:`NODE_START_THREADS` at a time, the veth pairs of
    every :class:`BatchLink` in one ``ip -batch`` (host ends made in their hosts' namespaces,
    switch ends brought up), and each host's addresses in one command, sent to every host's
    shell before the answers are read.

    ``link_group``: the link group the switch ends of the veths are made in (the lab deletes
    them all with one ``ip link del group``, :mod:`controller.lab.cleanup`); None: group 0."""

    host: Any
    switch: Any

    def __init__(self, *args: Any, link_group: int | None = None, **kwargs: Any) -> None:
        self.link_group = link_group
        self._premade: dict[str, Any] = {}
        super().__init__(*args, **kwargs)
        self.host, self.switch = self._premade_or(self.host), self._premade_or(self.switch)

    def _premade_or(self, make: Any) -> Any:
        """``make``, unless :meth:`_premake_nodes` already made the node of that name."""
        def node(name: str, **params: Any) -> Any:
            premade = self._premade.pop(name, None)
            return premade if premade is not None else make(name, **params)

        return node

    def _premake_nodes(self, topo: Any) -> None:
        """Make every host and switch of ``topo`` before Mininet asks for them, several at
        once: each is a shell Mininet starts and then waits for (bash's prompt, one command),
        13 ms apiece for Kdl's 1,508 nodes, 20 s one after another. Mininet's own
        ``addHost`` and ``addSwitch`` then take them (:meth:`_premade_or`) with the same
        parameters they would have been made with."""
        # What addHost and addSwitch add to the topology's parameters: a host's default
        # address (hosts without their own are left to Mininet), a switch's namespace and
        # listening port (switches are left to Mininet when it numbers listening ports).
        # Nodes of a class of their own ("cls") are left to Mininet too.
        jobs = [(name, self.host, topo.nodeInfo(name)) for name in topo.hosts()
                if "ip" in topo.nodeInfo(name) and "cls" not in topo.nodeInfo(name)]
        if not self.listenPort:
            jobs += [(name, self.switch, {"listenPort": self.listenPort,
                                          "inNamespace": self.inNamespace, "batch": True,
                                          **topo.nodeInfo(name)})
                     for name in topo.switches() if "cls" not in topo.nodeInfo(name)]
        if not jobs:
            return
        # The first node of each class runs its class's one-time setup: not concurrently.
        first = {id(make): (name, make, params) for name, make, params in reversed(jobs)}
        for name, make, params in first.values():
            self._premade[name] = make(name, **params)
        with ThreadPoolExecutor(max_workers=NODE_START_THREADS) as pool:
            futures = [(name, pool.submit(make, name, **params)) for name, make, params in jobs
                       if name not in self._premade]
        failure: BaseException | None = None
        for name, future in futures:
            error = future.exception()
            if error is None:
                self._premade[name] = future.result()
            elif failure is None:
                failure = error
        if failure is not None:
            raise failure

    def buildFromTopo(self, topo: Any = None) -> None:  # noqa: N802 (Mininet's name)
        try:
            self._premake_nodes(topo)
            super().buildFromTopo(topo)
        finally:
            # made but not taken (a node failed to start): their shells are no one's to stop
            for node in self._premade.values():
                node.terminate()
            self._premade.clear()
        lines = []
        for link in self.links:
            if not isinstance(link, BatchLink):
                continue
            a, b = link.intf1, link.intf2
            # A host end is made in its host's namespace (moving it there afterwards
            # unregisters and registers it again, 25 ms each), a switch end in the lab's group.
            ends = [f" netns {intf.node.pid}" if intf.node.inNamespace
                    else f" group {self.link_group}" if self.link_group is not None else ""
                    for intf in (a, b)]
            lines.append(f"link add name {a.name}{ends[0]} type veth "
                         f"peer name {b.name}{ends[1]}\n")
            lines.extend(f"link set dev {intf.name} up\n" for intf in (a, b)
                         if not intf.node.inNamespace)
        if not lines:
            return
        r = subprocess.run(["ip", "-batch", "-"], input="".join(lines), text=True,
                           capture_output=True, timeout=600, check=False)
        if r.returncode != 0:
            raise LabError(f"could not make the lab's links: {r.stderr.strip()[-800:]}")

    def configHosts(self) -> None:  # noqa: N802 (Mininet's name)
        """Loopback up, MAC, address and link up of every host in one command each, sent to
        all hosts' shells first and read back after (Mininet: four commands per host, one
        after another)."""
        sent = []
        for host in self.hosts:
            intf = host.defaultIntf()
            ip, mac = host.params.get("ip"), host.params.get("mac")
            if intf is None or ip is None or mac is None:
                host.configDefault()
                continue
            host.sendCmd(f"ip link set lo up && ip link set dev {intf} address {mac} && "
                         f"ip addr add {ip} dev {intf} && ip link set dev {intf} up")
            sent.append((host, intf, ip, mac))
        for host, intf, ip, mac in sent:
            out = host.waitOutput().strip()
            if out:
                raise LabError(f"could not configure host {host.name}: {out[-400:]}")
            addr, _, prefix = ip.partition("/")
            intf.ip, intf.prefixLen, intf.mac = addr, int(prefix or 8), mac


class LabSwitch(OVSSwitch):  # type: ignore[misc]  # mininet ships no types: Any
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

    def start(self, controllers: Any) -> None:
        """Create the bridge without its controllers: :class:`LabNetwork
        <controller.lab.network.LabNetwork>` attaches them to every bridge at once when all
        exist (a switch that connects while ovs-vswitchd is still creating hundreds of others
        answers its controller seconds late)."""
        super().start([])

    @classmethod
    def batchStartup(cls, switches: Any, run: Any = errRun) -> Any:  # noqa: N802
        """Mininet's batch start (a few ``ovs-vsctl`` calls for all switches), not waiting
        for ovs-vswitchd to apply each call: :meth:`LabNetwork.wait_until_connected
        <controller.lab.network.LabNetwork.wait_until_connected>` waits for what matters
        (bridges, ports on their numbers, connections)."""
        def no_wait(cmd: str, **kwargs: Any) -> Any:
            return run(cmd.replace("ovs-vsctl", "ovs-vsctl --no-wait", 1), **kwargs)

        return super().batchStartup(switches, run=no_wait)

    def intfOpts(self, intf: Any) -> str:  # noqa: N802 (Mininet's name)
        opts = super().intfOpts(intf)
        link = getattr(intf, "link", None)
        if self.rstp and link is not None:
            peer = link.intf2 if link.intf1 is intf else link.intf1
            if not isinstance(peer.node, OVSSwitch):
                opts += f" -- set Port {intf} other_config:rstp-port-admin-edge=true"
        return opts


def make_mininet(plan: LabPlan, env: LabEnvironment, controllers: Sequence[ControllerAddress],
                 *, rstp: bool, link_group: int | None = None) -> Mininet:
    """The (unbuilt) Mininet network of ``plan``: secure switches speaking OpenFlow 1.3 to
    ``controllers``, or standalone learning switches (with RSTP when ``rstp``) when there are
    none; link delays applied where the kernel has netem; the switch ends of the veths in
    link group ``link_group``."""
    standalone = not controllers
    max_age = RSTP_DEFAULT_MAX_AGE
    if rstp:
        hops = plan.diameter_hops()
        max_age = min(40, max(RSTP_DEFAULT_MAX_AGE, hops + 2))
        if hops + 2 > 40:
            log.warning("diameter %d hops exceeds what RSTP covers (max age 40): "
                        "distant switches may stay partitioned", hops)
    switch_params = dict(
        datapath=env.datapath, protocols="OpenFlow13",
        failMode="standalone" if standalone else "secure",
        rstp=rstp, rstp_max_age_s=max_age, batch=True)

    def make_switch(name: str, **params: Any) -> LabSwitch:
        return LabSwitch(name, **{**switch_params, **params})

    topo = LabTopo(plan=plan, link_delays=env.netem)
    net = LabMininet(topo=topo, switch=make_switch, host=MininetHost, link=BatchLink,
                  controller=None, build=False, autoSetMacs=False, waitConnected=False,
                  link_group=link_group)
    for i, c in enumerate(controllers):
        net.addController(f"c{i}", controller=LabController, ip=c.ip, port=c.port,
                          protocol=c.protocol)
    return net
