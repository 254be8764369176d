"""Topology files: the model, the YAML loader and the exporter.

A topology file is YAML (format documented in ``docs/topology.md``; JSON Schema in
``topologies/schema.json``). Loading has two steps:

1. the file is parsed and checked field by field against the ``*Entry`` pydantic models
   (``extra="forbid"``, strict types), which describe the file as written;
2. cross-references are checked (unknown nodes, duplicate names, ...) and everything the file
   leaves out is derived (dpids, hosts, IP/MAC addresses, latency from coordinates), giving a
   fully populated, immutable :class:`Topology`.

Every problem raises :class:`controller.errors.TopologyError` with the source, the 1-based line
(from the YAML node marks) and the dotted field (``links[3].b``; list indices are 0-based).
Loading keeps no global state: a bad file raises and nothing else happens.
"""

from __future__ import annotations

import ipaddress
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
)

from controller.errors import NotFound, TopologyError
from controller.topology.geo import DEFAULT_ROUTE_FACTOR, FIBER_MS_PER_KM, great_circle_km

if TYPE_CHECKING:
    import pathcore

__all__ = [
    "ComputeSite",
    "Host",
    "IntentSpec",
    "Link",
    "Match",
    "Node",
    "Topology",
    "TopologyDocument",
    "load_topology",
    "parse_topology",
    "topology_from_dict",
    "yaml_with_lines",
]

NodeKind = Literal[
    "national_hub", "dc_cluster", "direct_connection_point", "exchange_center", "city", "switch"
]
NODE_KINDS: tuple[str, ...] = NodeKind.__args__  # type: ignore[attr-defined]
ComputeKind = Literal["general", "intelligent", "hpc"]

MAX_DPID = 2**64 - 1
DEFAULT_BANDWIDTH_MBPS = 10_000.0
DEFAULT_COST = 1.0
DEFAULT_HOST_NETWORK = "10.0.0.0/8"
DEFAULT_INTENT_PRIORITY = 100
IP_PROTO_NAMES = {"icmp": 1, "tcp": 6, "udp": 17}

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_SITE_ID_RE = re.compile(r"^cs:[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")


# ---------------------------------------------------------------------------------------------
# The file as written (pydantic). Optional fields are the ones the loader can derive.
# ---------------------------------------------------------------------------------------------

def _check_name(value: Any) -> Any:
    if isinstance(value, str) and not _NAME_RE.match(value):
        raise ValueError(
            "names start with a letter or digit and use only letters, digits, '_', '.', '-'"
        )
    return value


def _check_text(value: Any) -> Any:
    if isinstance(value, str) and any(unicodedata.category(ch) in ("Cc", "Cs") for ch in value):
        raise ValueError("control characters are not allowed in text")
    return value


def _parse_dpid(value: Any) -> Any:
    """Accept an int or a hex string ("0x1a") and return an int (range checked by the field)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if not re.fullmatch(r"0x[0-9a-f]{1,16}", text):
            raise ValueError("dpid must be an integer or a hex string like '0x1a'")
        return int(text, 16)
    return value


def _check_dpid_range(value: int) -> int:
    if not 1 <= value <= MAX_DPID:
        raise ValueError("dpid must be between 1 and 2^64-1 (0xffffffffffffffff)")
    return value


def _parse_ip_proto(value: Any) -> Any:
    if isinstance(value, str):
        if value.lower() not in IP_PROTO_NAMES:
            names = sorted(IP_PROTO_NAMES)
            raise ValueError(f"ip_proto must be an integer 0-255 or one of {names}")
        return IP_PROTO_NAMES[value.lower()]
    return value


Text = Annotated[str, BeforeValidator(_check_text)]
Name = Annotated[str, BeforeValidator(_check_name), Field(min_length=1, max_length=64)]
Dpid = Annotated[
    int,
    BeforeValidator(_parse_dpid),
    AfterValidator(_check_dpid_range),
    WithJsonSchema({"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_DPID},
        {"type": "string", "pattern": "^0[xX][0-9a-fA-F]{1,16}$"},
    ]}),
]
NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
RouteFactor = Annotated[float, Field(ge=1.0, le=10.0)]


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class NodeEntry(_Entry):
    """A switch of the backbone. ``dpid`` defaults to the next free integer in file order."""

    name: Name
    kind: NodeKind = "switch"
    label: Text | None = Field(default=None, description="display name, free text")
    lat: float | None = Field(default=None, ge=-90, le=90, description="latitude, degrees")
    lon: float | None = Field(default=None, ge=-180, le=180, description="longitude, degrees")
    dpid: Dpid | None = Field(default=None, description="OpenFlow datapath id, 1 .. 2^64-1")


class LinkEntry(_Entry):
    """A bidirectional link. Without ``latency_ms`` both ends need coordinates."""

    a: Name
    b: Name
    latency_ms: NonNegFloat | None = Field(default=None, description="one-way latency, ms")
    bandwidth_mbps: PosFloat = DEFAULT_BANDWIDTH_MBPS
    cost: NonNegFloat = DEFAULT_COST
    route_factor: RouteFactor | None = Field(
        default=None, description="overrides the file's route_factor for this link"
    )


class HostEntry(_Entry):
    """An end host attached to ``node``; ``ip`` and ``mac`` are derived when omitted."""

    name: Name
    node: Name
    ip: str | None = Field(default=None, description="IPv4 address")
    mac: str | None = Field(default=None, description="MAC address aa:bb:cc:dd:ee:ff")
    prefix_len: int | None = Field(default=None, ge=0, le=32)


class ComputeSiteEntry(_Entry):
    """A compute site: capacity of some kind of computing at a node, at a price."""

    id: str = Field(description="stable identifier, e.g. cs:gansu-qingyang:ai-01")
    node: Name
    kind: ComputeKind = "general"
    capacity: PosFloat
    free_capacity: NonNegFloat | None = None
    unit: str = Field(default="PFLOPS", min_length=1)
    price: NonNegFloat = Field(default=0.0, description="price per unit of capacity per hour")
    host: Name | None = Field(default=None, description="host (at the same node) serving it")


class MatchEntry(_Entry):
    """Which of the traffic between the intent's hosts the intent applies to."""

    ip_proto: Annotated[int, BeforeValidator(_parse_ip_proto), Field(ge=0, le=255)] | None = None
    src_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    dst_port: Annotated[int, Field(ge=0, le=65535)] | None = None
    dscp: Annotated[int, Field(ge=0, le=63)] | None = None


class IntentEntry(_Entry):
    """A route request between two hosts with a latency bound."""

    name: Name | None = None
    src: Name
    dst: Name
    max_latency_ms: PosFloat
    min_bandwidth_mbps: NonNegFloat = 0.0
    match: MatchEntry | None = None
    priority: Annotated[int, Field(ge=0, le=65535)] = DEFAULT_INTENT_PRIORITY
    protection: bool = False
    police: bool = False
    """hold the intent's traffic to ``min_bandwidth_mbps`` with a meter at its ingress"""


class TopologyDocument(_Entry):
    """A topology file."""

    name: Name
    description: Text | None = None
    route_factor: RouteFactor = DEFAULT_ROUTE_FACTOR
    host_network: str = Field(
        default=DEFAULT_HOST_NETWORK,
        description="IPv4 network that derived host addresses come from",
    )
    nodes: list[NodeEntry] = Field(min_length=1)
    links: list[LinkEntry] = Field(default_factory=list)
    hosts: list[HostEntry] | None = Field(
        default=None, description="absent: one host per node; [] : no hosts"
    )
    compute_sites: list[ComputeSiteEntry] = Field(default_factory=list)
    intents: list[IntentEntry] = Field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# The loaded model: fully populated, immutable.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node:
    name: str
    kind: str
    dpid: int
    lat: float | None = None
    lon: float | None = None
    label: str | None = None

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None and self.lon is not None


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
        try:
            return self._node_index[name]
        except KeyError:
            raise NotFound(f"no node {name!r} in topology {self.name!r}") from None

    def host(self, name: str) -> Host:
        """The host called ``name``; :class:`NotFound` if there is none."""
        try:
            return self._host_index[name]
        except KeyError:
            raise NotFound(f"no host {name!r} in topology {self.name!r}") from None

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
                        "lon": n.lon, "dpid": n.dpid})
            for n in self.nodes
        ]
        doc["links"] = [
            _drop_none({"a": lk.a, "b": lk.b,
                        "latency_ms": None if lk.latency_computed else lk.latency_ms,
                        "bandwidth_mbps": lk.bandwidth_mbps, "cost": lk.cost,
                        "route_factor": lk.route_factor})
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
    return d


class _FlowDict(dict):  # type: ignore[type-arg]
    """Marks a mapping to be written in flow style."""


def _dump_yaml(doc: dict[str, Any], header: str | None) -> str:
    class Dumper(yaml.SafeDumper):
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


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology file. Raises :class:`TopologyError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read file: {exc.strerror or exc}", source=str(p)) from None
    except UnicodeDecodeError as exc:
        raise TopologyError(f"file is not UTF-8: {exc.reason}", source=str(p)) from None
    return parse_topology(text, source=str(p))


def parse_topology(text: str, source: str = "<string>") -> Topology:
    """Parse and validate topology YAML text. Raises :class:`TopologyError`."""
    data, lines = yaml_with_lines(text, source)
    return _resolve(data, lines, source)


def topology_from_dict(doc: Mapping[str, Any], source: str = "<dict>") -> Topology:
    """Validate a document already in Python form (e.g. built by an importer)."""
    return _resolve(doc, {}, source)


def yaml_with_lines(text: str, source: str) -> tuple[Any, dict[Path_, int]]:
    """Parse YAML into plain Python values plus a map from field path to 1-based line (of
    the key, for mapping entries). Raises :class:`TopologyError` naming ``source`` and the
    line for a syntax error, an empty document, a duplicate key or a merge key."""
    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader_cls)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or str(exc)
        raise TopologyError(f"YAML syntax error: {problem}", source=source,
                            line=mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"YAML error: {exc}", source=source) from None
    if root is None:
        raise TopologyError("the file is empty", source=source, line=1)
    constructor = yaml.constructor.SafeConstructor()
    lines: dict[Path_, int] = {}

    def convert(node: yaml.Node, path: Path_, depth: int) -> Any:
        if depth > 50:
            raise TopologyError("nesting too deep", source=source,
                                line=node.start_mark.line + 1, field=_field(path))
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise TopologyError("YAML merge keys ('<<') are not supported", source=source,
                                        line=key_node.start_mark.line + 1, field=_field(path))
                if not isinstance(key_node, yaml.ScalarNode):
                    raise TopologyError("mapping keys must be plain scalars", source=source,
                                        line=key_node.start_mark.line + 1, field=_field(path))
                key = constructor.construct_object(key_node)
                if not isinstance(key, str):
                    key = str(key)
                if key in out:
                    raise TopologyError(f"duplicate key {key!r}", source=source,
                                        line=key_node.start_mark.line + 1,
                                        field=_field(path + (key,)))
                lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = convert(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        try:
            return constructor.construct_object(node)
        except yaml.constructor.ConstructorError as exc:
            raise TopologyError(f"bad value: {exc.problem}", source=source,
                                line=node.start_mark.line + 1, field=_field(path)) from None

    return convert(root, (), 0), lines


def _field(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class _Ctx:
    """Error reporting for one load: field path -> line, and the source name."""

    def __init__(self, source: str, lines: dict[Path_, int]) -> None:
        self.source = source
        self.lines = lines

    def line(self, path: Path_) -> int | None:
        for cut in range(len(path), -1, -1):
            found = self.lines.get(path[:cut])
            if found is not None:
                return found
        return None

    def error(self, message: str, path: Path_) -> TopologyError:
        return TopologyError(message, source=self.source, line=self.line(path),
                             field=_field(path) or None)


_PYDANTIC_MESSAGES = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
    "finite_number": "must be a finite number (not NaN or infinity)",
}


def _resolve(data: Any, lines: dict[Path_, int], source: str) -> Topology:
    ctx = _Ctx(source, lines)
    if not isinstance(data, Mapping):
        raise ctx.error("the top level must be a mapping (name:, nodes:, links:, ...)", ())
    try:
        doc = TopologyDocument.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        errors.sort(key=lambda e: (ctx.line(tuple(e["loc"])) or 0))
        first = errors[0]
        path: Path_ = tuple(p for p in first["loc"] if isinstance(p, (str, int)))
        # Drop pydantic's internal step names (e.g. "function-before[...]") from the path.
        path = tuple(p for p in path if not (isinstance(p, str) and "[" in p))
        message = _PYDANTIC_MESSAGES.get(first["type"], first["msg"])
        if first["type"] == "extra_forbidden":
            message = f"unknown field {path[-1]!r}"
        elif first["type"] == "value_error":
            message = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        elif first["type"] not in _PYDANTIC_MESSAGES:
            message = f"{first['msg']} (got {first.get('input')!r})"
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})"
        raise ctx.error(message, path) from None
    return _build(doc, ctx)


def _build(doc: TopologyDocument, ctx: _Ctx) -> Topology:
    # Host network ------------------------------------------------------------------------------
    try:
        net = ipaddress.IPv4Network(doc.host_network, strict=True)
    except ValueError as exc:
        raise ctx.error(f"bad IPv4 network: {exc}", ("host_network",)) from None

    # Nodes: unique names, coordinates both-or-neither, dpids ------------------------------------
    node_pos: dict[str, int] = {}
    for i, n in enumerate(doc.nodes):
        if n.name in node_pos:
            raise ctx.error(f"duplicate node name {n.name!r} (first at nodes[{node_pos[n.name]}])",
                            ("nodes", i, "name"))
        node_pos[n.name] = i
        if (n.lat is None) != (n.lon is None):
            missing = "lon" if n.lon is None else "lat"
            raise ctx.error("give both lat and lon, or neither", ("nodes", i, missing))
    explicit: dict[int, int] = {}
    for i, n in enumerate(doc.nodes):
        if n.dpid is not None:
            if n.dpid in explicit:
                raise ctx.error(f"duplicate dpid {n.dpid} (also nodes[{explicit[n.dpid]}])",
                                ("nodes", i, "dpid"))
            explicit[n.dpid] = i
    # Derived dpids: the smallest positive integers not given explicitly, in file order. With no
    # explicit dpids this is the 1-based position of the node in the file.
    next_dpid = 1
    nodes: list[Node] = []
    for n in doc.nodes:
        dpid = n.dpid
        if dpid is None:
            while next_dpid in explicit:
                next_dpid += 1
            dpid = next_dpid
            next_dpid += 1
        nodes.append(Node(name=n.name, kind=n.kind, dpid=dpid, lat=n.lat, lon=n.lon,
                          label=n.label))
    by_name = {n.name: n for n in nodes}

    def need_node(name: str, path: Path_) -> Node:
        node = by_name.get(name)
        if node is None:
            raise ctx.error(f"unknown node {name!r}", path)
        return node

    # Links ---------------------------------------------------------------------------------------
    links: list[Link] = []
    for i, lk in enumerate(doc.links):
        na = need_node(lk.a, ("links", i, "a"))
        nb = need_node(lk.b, ("links", i, "b"))
        if lk.a == lk.b:
            raise ctx.error(f"self-loop: both ends are {lk.a!r}", ("links", i, "b"))
        distance_km = None
        if na.lat is not None and na.lon is not None and nb.lat is not None and nb.lon is not None:
            distance_km = great_circle_km(na.lat, na.lon, nb.lat, nb.lon)
        if lk.latency_ms is not None:
            latency_ms, computed = lk.latency_ms, False
        elif distance_km is not None:
            factor = lk.route_factor if lk.route_factor is not None else doc.route_factor
            latency_ms, computed = distance_km * factor * FIBER_MS_PER_KM, True
        else:
            bare = lk.a if not na.has_coordinates else lk.b
            raise ctx.error(f"no latency_ms, and node {bare!r} has no coordinates to compute it "
                            "from", ("links", i, "latency_ms"))
        links.append(Link(a=lk.a, b=lk.b, latency_ms=latency_ms, bandwidth_mbps=lk.bandwidth_mbps,
                          cost=lk.cost, route_factor=lk.route_factor, latency_computed=computed,
                          distance_km=distance_km))

    # Hosts -------------------------------------------------------------------------------------
    host_entries: list[tuple[HostEntry, Path_ | None]]
    if doc.hosts is None:
        host_entries = [(HostEntry(name=f"h-{n.name}", node=n.name), None) for n in doc.nodes]
    else:
        host_entries = [(h, ("hosts", i)) for i, h in enumerate(doc.hosts)]
    used_ips: dict[ipaddress.IPv4Address, int] = {}
    for i, (h, hpath) in enumerate(host_entries):
        if h.ip is not None and hpath is not None:
            try:
                addr = ipaddress.IPv4Address(h.ip)
            except ValueError:
                raise ctx.error(f"bad IPv4 address {h.ip!r}", hpath + ("ip",)) from None
            if addr in used_ips:
                raise ctx.error(f"duplicate IP {h.ip} (also hosts[{used_ips[addr]}])",
                                hpath + ("ip",))
            used_ips[addr] = i
    hosts: list[Host] = []
    host_pos: dict[str, int] = {}
    used_macs: dict[str, int] = {}
    # Derived addresses: network address + k for k = 1, 2, ... in host order, skipping the
    # addresses given explicitly. All hosts share one subnet by default, so hosts ARP directly.
    offset = 0
    for i, (h, hpath) in enumerate(host_entries):
        where: Path_ = hpath if hpath is not None else ("nodes", node_pos.get(h.node, 0))
        if h.name in host_pos:
            raise ctx.error(f"duplicate host name {h.name!r} (first at hosts[{host_pos[h.name]}])",
                            where + ("name",) if hpath else where)
        if h.name in by_name:
            raise ctx.error(f"host name {h.name!r} is also a node name",
                            where + ("name",) if hpath else where)
        host_pos[h.name] = i
        need_node(h.node, where + ("node",) if hpath else where)
        if h.ip is not None:
            addr = ipaddress.IPv4Address(h.ip)
        else:
            while True:
                offset += 1
                if offset >= net.num_addresses - 1:
                    raise ctx.error(f"host_network {net} has no room for {len(host_entries)} "
                                    "hosts", where)
                addr = net.network_address + offset
                if addr not in used_ips:
                    break
            used_ips[addr] = i
        if h.mac is not None:
            if not _MAC_RE.match(h.mac):
                raise ctx.error(f"bad MAC address {h.mac!r}", where + ("mac",))
            mac = h.mac.lower()
            if int(mac[:2], 16) & 1:
                raise ctx.error(f"MAC {h.mac} is a multicast address", where + ("mac",))
        else:
            mac = "02:00:" + ":".join(f"{b:02x}" for b in addr.packed)
        if mac in used_macs:
            raise ctx.error(f"duplicate MAC {mac} (also hosts[{used_macs[mac]}])",
                            where + ("mac",) if h.mac is not None else where)
        used_macs[mac] = i
        prefix_len = h.prefix_len if h.prefix_len is not None else net.prefixlen
        hosts.append(Host(name=h.name, node=h.node, ip=str(addr), mac=mac, prefix_len=prefix_len))
    hosts_by_name = {h.name: h for h in hosts}

    # Compute sites -----------------------------------------------------------------------------
    sites: list[ComputeSite] = []
    site_pos: dict[str, int] = {}
    for i, s in enumerate(doc.compute_sites):
        path: Path_ = ("compute_sites", i)
        if not _SITE_ID_RE.match(s.id):
            raise ctx.error(f"bad compute site id {s.id!r}: expected cs:<place>:<name>",
                            path + ("id",))
        if s.id in site_pos:
            raise ctx.error(f"duplicate compute site id {s.id!r} (first at "
                            f"compute_sites[{site_pos[s.id]}])", path + ("id",))
        site_pos[s.id] = i
        need_node(s.node, path + ("node",))
        if s.free_capacity is not None and s.free_capacity > s.capacity:
            raise ctx.error(f"free_capacity {s.free_capacity} exceeds capacity {s.capacity}",
                            path + ("free_capacity",))
        if s.host is not None:
            host = hosts_by_name.get(s.host)
            if host is None:
                raise ctx.error(f"unknown host {s.host!r}", path + ("host",))
            if host.node != s.node:
                raise ctx.error(f"host {s.host!r} is attached to {host.node!r}, not to the "
                                f"site's node {s.node!r}", path + ("host",))
        sites.append(ComputeSite(id=s.id, node=s.node, kind=s.kind, capacity=s.capacity,
                                 unit=s.unit, price=s.price, free_capacity=s.free_capacity,
                                 host=s.host))

    # Intents -----------------------------------------------------------------------------------
    intents: list[IntentSpec] = []
    intent_pos: dict[str, int] = {}
    for i, it in enumerate(doc.intents):
        path = ("intents", i)
        for end in ("src", "dst"):
            if getattr(it, end) not in hosts_by_name:
                raise ctx.error(f"unknown host {getattr(it, end)!r}", path + (end,))
        if it.src == it.dst:
            raise ctx.error("src and dst are the same host", path + ("dst",))
        if it.name is not None:
            if it.name in intent_pos:
                raise ctx.error(f"duplicate intent name {it.name!r} (first at "
                                f"intents[{intent_pos[it.name]}])", path + ("name",))
            intent_pos[it.name] = i
        match = None
        if it.match is not None:
            m = it.match
            if (m.src_port is not None or m.dst_port is not None) and m.ip_proto not in (6, 17):
                raise ctx.error("ports need ip_proto tcp (6) or udp (17)", path + ("match",))
            match = Match(ip_proto=m.ip_proto, src_port=m.src_port, dst_port=m.dst_port,
                          dscp=m.dscp)
        intents.append(IntentSpec(src=it.src, dst=it.dst, max_latency_ms=it.max_latency_ms,
                                  min_bandwidth_mbps=it.min_bandwidth_mbps, name=it.name,
                                  match=match, priority=it.priority, protection=it.protection,
                                  police=it.police))

    if not math.isfinite(doc.route_factor):  # pragma: no cover - pydantic already refuses
        raise ctx.error("route_factor must be finite", ("route_factor",))
    return Topology(name=doc.name, nodes=nodes, links=links, hosts=hosts, compute_sites=sites,
                    intents=intents, route_factor=doc.route_factor, description=doc.description,
                    host_network=doc.host_network)
