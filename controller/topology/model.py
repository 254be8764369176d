"""The topology model: fully populated, immutable records of a network, and their export.

A :class:`Topology` comes from a topology file through :mod:`.loader` (which checks the file
against :mod:`.schema` and derives what the file leaves out) or from a Topology Zoo map
through :mod:`.zoo`; :meth:`Topology.to_yaml` writes it back as a topology file.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

from controller.errors import NotFound, lookup
from controller.topology.geo import DEFAULT_ROUTE_FACTOR

if TYPE_CHECKING:
    import pathcore

__all__ = ["ComputeSite", "Host", "IntentSpec", "Link", "Match", "Node", "Topology"]

MAX_DPID = 2**64 - 1
DEFAULT_BANDWIDTH_MBPS = 10_000.0
DEFAULT_COST = 1.0
DEFAULT_HOST_NETWORK = "10.0.0.0/8"
DEFAULT_INTENT_PRIORITY = 100
IP_PROTO_NAMES = {"icmp": 1, "tcp": 6, "udp": 17}
MIN_MPLS_LABEL = 16
"""Labels 0-15 are reserved (RFC 3032)."""
MAX_MPLS_LABEL = 2**20 - 1
DEFAULT_SRGB_START = 16000
DEFAULT_SRGB_SIZE = 8000


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str
    dpid: int
    lat: float | None = None
    lon: float | None = None
    label: str | None = None
    router_id: str | None = None
    """segment routing: the node's IPv4 router id (None: not an SR node)"""
    srgb_start: int | None = None
    """segment routing: first label of the SRGB (None when the file gives none)"""
    srgb_size: int | None = None
    node_sid_index: int | None = None

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def node_sid(self) -> int | None:
        """The node SID as an MPLS label: the SRGB's start plus the index."""
        if self.node_sid_index is None:
            return None
        start = self.srgb_start if self.srgb_start is not None else DEFAULT_SRGB_START
        return start + self.node_sid_index


@dataclass(frozen=True, slots=True)
class Link:
    a: str
    b: str
    latency_ms: float
    bandwidth_mbps: float = DEFAULT_BANDWIDTH_MBPS
    cost: float = DEFAULT_COST
    route_factor: float | None = None
    """The per-link override as written in the file (None: the file's route_factor applies)."""
    latency_computed: bool = False
    """True when latency_ms was computed from coordinates rather than written in the file."""
    distance_km: float | None = None
    """Great-circle distance between the ends, when both have coordinates."""
    igp_metric: int | None = None
    """segment routing: the IGP metric (both directions)"""
    a_address: str | None = None
    b_address: str | None = None
    a_adj_sid: int | None = None
    """segment routing: the adjacency SID at ``a`` toward ``b``"""
    b_adj_sid: int | None = None


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    node: str
    ip: str
    mac: str
    prefix_len: int = 8

    @property
    def ip_with_prefix(self) -> str:
        """``10.0.0.1/8``: the form Mininet's ``ip=`` parameter takes."""
        return f"{self.ip}/{self.prefix_len}"


@dataclass(frozen=True, slots=True)
class ComputeSite:
    id: str
    node: str
    kind: str
    capacity: float
    unit: str = "PFLOPS"
    price: float = 0.0
    free_capacity: float | None = None
    host: str | None = None


@dataclass(frozen=True, slots=True)
class Match:
    ip_proto: int | None = None
    src_port: int | None = None
    dst_port: int | None = None
    dscp: int | None = None


@dataclass(frozen=True, slots=True)
class IntentSpec:
    src: str
    dst: str
    max_latency_ms: float
    min_bandwidth_mbps: float = 0.0
    name: str | None = None
    match: Match | None = None
    priority: int = DEFAULT_INTENT_PRIORITY
    protection: bool = False
    police: bool = False
    sla_reroute: bool = False
    """when its measured latency breaks the bound, route it on measured link delays"""


@dataclass(frozen=True)
class Topology:
    """A loaded topology. Build it with :func:`load_topology` / :func:`parse_topology`."""

    name: str
    nodes: list[Node]
    links: list[Link]
    hosts: list[Host]
    compute_sites: list[ComputeSite] = field(default_factory=list)
    intents: list[IntentSpec] = field(default_factory=list)
    route_factor: float = DEFAULT_ROUTE_FACTOR
    description: str | None = None
    host_network: str = DEFAULT_HOST_NETWORK
    _node_index: dict[str, Node] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)
    _host_index: dict[str, Host] = field(default_factory=dict, init=False, repr=False,
                                         compare=False)

    def __post_init__(self) -> None:
        self._node_index.update((n.name, n) for n in self.nodes)
        self._host_index.update((h.name, h) for h in self.hosts)

    # lookups -------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        """The node called ``name``; :class:`NotFound` if there is none."""
        return lookup(self._node_index, name, f"no node {{!r}} in topology {self.name!r}")

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`NotFound` if there is none."""
        return lookup(self._host_index, name, f"no host {{!r}} in topology {self.name!r}")

    def node_by_dpid(self, dpid: int) -> Node:
        for n in self.nodes:
            if n.dpid == dpid:
                return n
        raise NotFound(f"no node with dpid {dpid} in topology {self.name!r}")

    def compute_site(self, site_id: str) -> ComputeSite:
        for s in self.compute_sites:
            if s.id == site_id:
                return s
        raise NotFound(f"no compute site {site_id!r} in topology {self.name!r}")

    def nodes_of_kind(self, kind: str) -> list[Node]:
        return [n for n in self.nodes if n.kind == kind]

    def hosts_at(self, node: str) -> list[Host]:
        return [h for h in self.hosts if h.node == node]

    def neighbors(self, node: str) -> list[str]:
        """Names of the nodes linked to ``node`` (once each, in link order)."""
        self.node(node)
        seen: dict[str, None] = {}
        for link in self.links:
            if link.a == node:
                seen.setdefault(link.b)
            elif link.b == node:
                seen.setdefault(link.a)
        return list(seen)

    @property
    def total_bandwidth_mbps(self) -> float:
        """Sum of the capacities of all links (one direction each)."""
        return sum(link.bandwidth_mbps for link in self.links)

    # export --------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The topology as a file document (parses back to an equal Topology).

        Values the loader would derive identically are left out (computed latencies, default
        prefix lengths, default intent fields); dpids, hosts and addresses are always written.
        """
        net = ipaddress.IPv4Network(self.host_network)
        doc: dict[str, Any] = {"name": self.name}
        if self.description is not None:
            doc["description"] = self.description
        doc["route_factor"] = self.route_factor
        if self.host_network != DEFAULT_HOST_NETWORK:
            doc["host_network"] = self.host_network
        doc["nodes"] = [
            _drop_none({"name": n.name, "kind": n.kind, "label": n.label, "lat": n.lat,
                        "lon": n.lon, "dpid": n.dpid, "router_id": n.router_id,
                        "srgb": None if n.srgb_start is None else
                        {"start": n.srgb_start, "size": n.srgb_size},
                        "node_sid_index": n.node_sid_index})
            for n in self.nodes
        ]
        doc["links"] = [
            _drop_none({"a": lk.a, "b": lk.b,
                        "latency_ms": None if lk.latency_computed else lk.latency_ms,
                        "bandwidth_mbps": lk.bandwidth_mbps, "cost": lk.cost,
                        "route_factor": lk.route_factor, "igp_metric": lk.igp_metric,
                        "a_address": lk.a_address, "b_address": lk.b_address,
                        "a_adj_sid": lk.a_adj_sid, "b_adj_sid": lk.b_adj_sid})
            for lk in self.links
        ]
        doc["hosts"] = [
            _drop_none({"name": h.name, "node": h.node, "ip": h.ip, "mac": h.mac,
                        "prefix_len": None if h.prefix_len == net.prefixlen else h.prefix_len})
            for h in self.hosts
        ]
        if self.compute_sites:
            doc["compute_sites"] = [
                _drop_none({"id": s.id, "node": s.node, "kind": s.kind, "capacity": s.capacity,
                            "free_capacity": s.free_capacity, "unit": s.unit, "price": s.price,
                            "host": s.host})
                for s in self.compute_sites
            ]
        if self.intents:
            doc["intents"] = [_intent_dict(i) for i in self.intents]
        return doc

    def to_yaml(self, header: str | None = None) -> str:
        """YAML text of :meth:`to_dict`: block style, one flow mapping per list item.

        ``header`` (optional) is written first as ``#`` comment lines.
        """
        return _dump_yaml(self.to_dict(), header)

    def to_graph(self) -> tuple[pathcore.Graph, dict[int, int]]:
        """A ``pathcore.Graph`` of the nodes and links (each link bidirectional).

        Returns ``(graph, link_ids)`` where ``link_ids[i]`` is the pathcore link id (the a->b
        direction) of ``self.links[i]``. Graph nodes are named by node name.
        """
        import pathcore  # the engine is a compiled extension: import it only when needed

        graph = pathcore.Graph()
        graph.add_nodes([n.name for n in self.nodes])
        ids = graph.add_links(
            [(lk.a, lk.b, lk.latency_ms, lk.bandwidth_mbps, lk.cost) for lk in self.links],
            bidirectional=True,
        )
        return graph, dict(enumerate(ids))


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _intent_dict(i: IntentSpec) -> dict[str, Any]:
    d: dict[str, Any] = _drop_none({"name": i.name, "src": i.src, "dst": i.dst,
                                    "max_latency_ms": i.max_latency_ms})
    if i.min_bandwidth_mbps:
        d["min_bandwidth_mbps"] = i.min_bandwidth_mbps
    if i.match is not None:
        d["match"] = _drop_none({"ip_proto": i.match.ip_proto, "src_port": i.match.src_port,
                                 "dst_port": i.match.dst_port, "dscp": i.match.dscp})
    if i.priority != DEFAULT_INTENT_PRIORITY:
        d["priority"] = i.priority
    if i.protection:
        d["protection"] = True
    if i.police:
        d["police"] = True
    if i.sla_reroute:
        d["sla_reroute"] = True
    return d


class _FlowDict(dict[str, Any]):
    """Marks a mapping to be written in flow style."""


def _dump_yaml(doc: dict[str, Any], header: str | None) -> str:
    class Dumper(yaml.SafeDumper):  # type: ignore[misc]  # yaml ships no types: Any
        pass

    Dumper.add_representer(
        _FlowDict,
        lambda d, data: d.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True),
    )
    styled = {k: [_FlowDict(item) for item in v] if isinstance(v, list) else v
              for k, v in doc.items()}
    body = yaml.dump(styled, Dumper=Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=True, width=200)
    if header:
        lines = "".join(f"# {line}".rstrip() + "\n" for line in header.splitlines())
        return lines + body
    return body
