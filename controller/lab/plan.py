"""The lab's plan: Mininet names and port numbers, derived from the topology alone.

Names: Linux limits interface names to 15 characters and Mininet names them ``<node>-eth<port>``,
so Mininet nodes get short names (``s1``..``sN`` for switches in file order, ``h1``..``hM`` for
hosts) and :class:`LabPlan` keeps the mapping. Every public method of the lab takes the
topology's names.

Ports: fixed by :class:`LabPlan`, not by Mininet's order of creation, with the numbering of
``wiring.port_plan`` that the controller also uses: on each switch its links in file
order (port 1, 2, ...), then the hosts attached to it. Host interfaces are ``<host>-eth0``.

Nothing here needs Mininet or root, so the plan is unit-tested on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.errors import lookup
from controller.tables import format_table
from controller.topology.model import Topology
from controller.topology.wiring import port_plan

__all__ = ["LabPlan"]


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
        link_ports = [(pa, pb) for pa, pb in wiring.link_ports]
        host_ports = {h: port for h, (_node, port) in wiring.host_port.items()}
        plan = cls(topology, switch_names, host_names, link_ports, host_ports)
        plan._node_of_switch.update((v, k) for k, v in switch_names.items())
        plan._host_of_mn.update((v, k) for k, v in host_names.items())
        return plan

    def switch(self, node: str) -> str:
        """Mininet name of the switch for topology node ``node``."""
        return lookup(self.switch_names, node,
                      f"no node {{!r}} in topology {self.topology.name!r}")

    def host(self, host: str) -> str:
        """Mininet name of topology host ``host``."""
        return lookup(self.host_names, host,
                      f"no host {{!r}} in topology {self.topology.name!r}")

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
        return format_table(rows)
