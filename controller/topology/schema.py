"""The topology file as written: pydantic models of every entry, checked field by field.

``extra="forbid"`` and strict types: a misspelt key or a string where a number belongs is an
error naming its field; the loader (:mod:`.loader`) adds the line. Optional fields are the ones
the loader can derive. The JSON Schema in ``topologies/schema.json`` is generated from
:class:`TopologyDocument`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

from controller.topology.geo import DEFAULT_ROUTE_FACTOR
from controller.topology.model import (
    DEFAULT_BANDWIDTH_MBPS,
    DEFAULT_COST,
    DEFAULT_HOST_NETWORK,
    DEFAULT_INTENT_PRIORITY,
    IP_PROTO_NAMES,
    MAX_DPID,
    MAX_MPLS_LABEL,
    MIN_MPLS_LABEL,
)

__all__ = ["NODE_KINDS", "TopologyDocument"]

NodeKind = Literal[
    "national_hub", "dc_cluster", "direct_connection_point", "exchange_center", "city", "switch"
]
NODE_KINDS: tuple[str, ...] = NodeKind.__args__  # type: ignore[attr-defined]
ComputeKind = Literal["general", "intelligent", "hpc"]

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
SITE_ID_RE = re.compile(r"^cs:[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")


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


MplsLabel = Annotated[int, Field(ge=MIN_MPLS_LABEL, le=MAX_MPLS_LABEL)]


class SrgbEntry(_Entry):
    """A segment routing global block: labels ``start`` .. ``start + size - 1``."""

    start: MplsLabel
    size: Annotated[int, Field(ge=1, le=MAX_MPLS_LABEL)]


class NodeEntry(_Entry):
    """A switch of the backbone. ``dpid`` defaults to the next free integer in file order."""

    name: Name
    kind: NodeKind = "switch"
    label: Text | None = Field(default=None, description="display name, free text")
    lat: float | None = Field(default=None, ge=-90, le=90, description="latitude, degrees")
    lon: float | None = Field(default=None, ge=-180, le=180, description="longitude, degrees")
    dpid: Dpid | None = Field(default=None, description="OpenFlow datapath id, 1 .. 2^64-1")
    router_id: str | None = Field(default=None, description="segment routing: IPv4 router id")
    srgb: SrgbEntry | None = Field(
        default=None, description="segment routing global block (default 16000, size 8000)")
    node_sid_index: Annotated[int, Field(ge=0, le=MAX_MPLS_LABEL)] | None = Field(
        default=None, description="segment routing: node-SID index into the SRGB")


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
    igp_metric: Annotated[int, Field(ge=1, le=16_777_215)] | None = Field(
        default=None, description="segment routing: the IGP metric of both directions")
    a_address: str | None = Field(default=None, description="IPv4 address of a's interface")
    b_address: str | None = Field(default=None, description="IPv4 address of b's interface")
    a_adj_sid: MplsLabel | None = Field(
        default=None, description="adjacency SID (label) at a for the direction a -> b")
    b_adj_sid: MplsLabel | None = Field(
        default=None, description="adjacency SID (label) at b for the direction b -> a")


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
    sla_reroute: bool = False
    """when the measured latency of its path breaks the bound, route it on measured delays"""


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
