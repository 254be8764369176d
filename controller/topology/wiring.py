"""The expected wiring of a topology: which OpenFlow port of which switch each link and host uses.

The lab creates its Mininet links with exactly these port numbers and the controller knows every
port from the file, then checks the real wiring by LLDP (see :mod:`controller.network.state`).

The rule, deterministic for a given file:

* on each node, ports are numbered from 1;
* first come the links touching the node, in file order: link ``i`` takes the next free port on
  node ``a`` and then the next free port on node ``b`` (parallel links each get their own ports;
  a self-loop, should a file ever hold one, takes two ports on its node);
* then the node's hosts, in file order, one port each.

Example (``topologies/diamond.yaml``): s1 has links 0 (s1-s2) and 2 (s1-s3), so s1-s2 is port 1
and s1-s3 port 2, and host h1 is port 3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from controller.errors import NotFound, lookup

if TYPE_CHECKING:
    from controller.topology.model import Topology

__all__ = ["LinkPeer", "HostPeer", "Peer", "Wiring", "port_plan"]

LinkPeer = tuple[str, int, int, int]
"""``("link", link_index, other_dpid, other_port_no)``"""
HostPeer = tuple[str, str]
"""``("host", host_name)``"""
Peer = LinkPeer | HostPeer


@dataclass(frozen=True)
class Wiring:
    """Port numbers of every link end and host attachment. Build it with :func:`port_plan`."""

    node_dpid: Mapping[str, int]
    """node name -> dpid"""
    link_ports: tuple[tuple[int, int], ...]
    """``link_ports[i] = (port_on_a, port_on_b)`` for ``topology.links[i]``"""
    link_ends: tuple[tuple[str, str], ...]
    """``link_ends[i] = (a, b)``: node names of link ``i``"""
    host_port: Mapping[str, tuple[str, int]]
    """host name -> (node name, port_no)"""
    _peers: dict[tuple[int, int], Peer] = field(repr=False, compare=False,
                                                default_factory=dict)
    _ports: dict[int, list[int]] = field(repr=False, compare=False, default_factory=dict)

    @property
    def dpid_node(self) -> dict[int, str]:
        """dpid -> node name"""
        return {dpid: name for name, dpid in self.node_dpid.items()}

    def dpid(self, node: str) -> int:
        return lookup(self.node_dpid, node, "no node {!r} in the wiring")

    def peer(self, dpid: int, port_no: int) -> Peer | None:
        """What port ``port_no`` of switch ``dpid`` is wired to, or None if the file has no use
        for that port: ``("link", i, other_dpid, other_port_no)`` or ``("host", host_name)``."""
        return self._peers.get((dpid, port_no))

    def ports_of(self, dpid: int) -> list[int]:
        """The port numbers switch ``dpid`` uses, ascending (empty for an unknown dpid)."""
        return list(self._ports.get(dpid, ()))

    def link_port(self, link_index: int, node: str) -> int:
        """The port of link ``link_index`` on ``node`` (one of its ends)."""
        a, b = self.link_ends[link_index]
        if node == a:
            return self.link_ports[link_index][0]
        if node == b:
            return self.link_ports[link_index][1]
        raise NotFound(f"node {node!r} is not an end of link {link_index}")

    def link_peer(self, dpid: int, port_no: int) -> tuple[int, int, int] | None:
        """``(link_index, other_dpid, other_port_no)`` if the port is a link end, else None."""
        p = self._peers.get((dpid, port_no))
        if p is None or p[0] != "link":
            return None
        _, i, other_dpid, other_port = p  # type: ignore[misc]
        return i, other_dpid, other_port

    def is_link_port(self, dpid: int, port_no: int) -> bool:
        p = self._peers.get((dpid, port_no))
        return p is not None and p[0] == "link"


def port_plan(topology: Topology) -> Wiring:
    """The port numbering of ``topology`` (rule in the module docstring)."""
    node_dpid = {n.name: n.dpid for n in topology.nodes}
    next_port = dict.fromkeys(node_dpid, 1)
    ports: dict[int, list[int]] = {dpid: [] for dpid in node_dpid.values()}

    def take(node: str) -> int:
        if node not in next_port:
            raise NotFound(f"node {node!r} is not in topology {topology.name!r}")
        p = next_port[node]
        next_port[node] = p + 1
        ports[node_dpid[node]].append(p)
        return p

    link_ports: list[tuple[int, int]] = []
    for lk in topology.links:
        pa = take(lk.a)
        pb = take(lk.b)
        link_ports.append((pa, pb))
    host_port: dict[str, tuple[str, int]] = {}
    for h in topology.hosts:
        host_port[h.name] = (h.node, take(h.node))

    peers: dict[tuple[int, int], Peer] = {}
    for i, (lk, (pa, pb)) in enumerate(zip(topology.links, link_ports, strict=True)):
        da, db = node_dpid[lk.a], node_dpid[lk.b]
        peers[(da, pa)] = ("link", i, db, pb)
        peers[(db, pb)] = ("link", i, da, pa)
    for name, (node, p) in host_port.items():
        peers[(node_dpid[node], p)] = ("host", name)

    return Wiring(
        node_dpid=dict(node_dpid),
        link_ports=tuple(link_ports),
        link_ends=tuple((lk.a, lk.b) for lk in topology.links),
        host_port=host_port,
        _peers=peers,
        _ports=ports,
    )
