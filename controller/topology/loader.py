"""Loading topology files: YAML -> :class:`~.schema.TopologyDocument` -> :class:`~.model.Topology`.

Loading has two steps:

1. the file is parsed and checked field by field against the ``*Entry`` pydantic models of
   :mod:`.schema`, which describe the file as written;
2. cross-references are checked (unknown nodes, duplicate names, ...) and everything the file
   leaves out is derived (dpids, hosts, IP/MAC addresses, latency from coordinates), giving a
   fully populated, immutable :class:`~.model.Topology`.

Every problem raises :class:`controller.errors.TopologyError` with the source, the 1-based line
(from the YAML node marks) and the dotted field (``links[3].b``; list indices are 0-based).
Loading keeps no global state: a bad file raises and nothing else happens.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from controller.errors import TopologyError
from controller.topology.geo import fiber_latency_ms, great_circle_km
from controller.topology.model import (
    DEFAULT_SRGB_SIZE,
    DEFAULT_SRGB_START,
    MAX_MPLS_LABEL,
    ComputeSite,
    Host,
    IntentSpec,
    Link,
    Match,
    Node,
    Topology,
)
from controller.topology.schema import (
    MAC_RE,
    SITE_ID_RE,
    HostEntry,
    TopologyDocument,
)

__all__ = ["load_topology", "parse_topology", "topology_from_dict", "yaml_with_lines"]

Path_ = tuple[str | int, ...]

YAML_NODES_MAX = 100_000
"""Most values a topology file may expand to (the national backbone has about 2,000): an alias
bomb (nine aliases of nine aliases ...) is refused at once instead of expanding for ever."""


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
    except yaml.reader.ReaderError as exc:  # a character YAML refuses: no mark, a position
        raise TopologyError(f"YAML error: {exc.reason} (character {exc.character!r})",
                            source=source, line=text.count("\n", 0, exc.position) + 1) from None
    except yaml.YAMLError as exc:
        raise TopologyError(f"YAML error: {exc}", source=source) from None
    if root is None:
        raise TopologyError("the file is empty", source=source, line=1)
    constructor = yaml.constructor.SafeConstructor()
    lines: dict[Path_, int] = {}
    budget = [YAML_NODES_MAX]

    def convert(node: yaml.Node, path: Path_, depth: int) -> Any:
        if depth > 50:
            raise TopologyError("nesting too deep", source=source,
                                line=node.start_mark.line + 1, field=_field(path))
        budget[0] -= 1
        if budget[0] < 0:  # aliases repeat a node without repeating its text
            raise TopologyError(f"the document expands to more than {YAML_NODES_MAX:,} values "
                                "(aliases of aliases?)", source=source,
                                line=node.start_mark.line + 1, field=_field(path) or None)
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


def _check_segment_routing(doc: TopologyDocument, ctx: _Ctx) -> None:
    """A file that gives any segment routing field is an SR topology: every node needs a
    router id and a node-SID index inside its SRGB; SIDs, router ids and interface addresses
    are unique; adjacency SIDs lie outside their node's SRGB and come with both addresses."""
    sr_link_fields = ("igp_metric", "a_address", "b_address", "a_adj_sid", "b_adj_sid")
    if not any(n.router_id is not None or n.srgb is not None or n.node_sid_index is not None
               for n in doc.nodes) and not any(getattr(lk, f) is not None
                                               for lk in doc.links for f in sr_link_fields):
        return
    router_ids: dict[ipaddress.IPv4Address, int] = {}
    sid_indexes: dict[int, int] = {}
    srgb_of: dict[str, tuple[int, int]] = {}
    for i, n in enumerate(doc.nodes):
        path: Path_ = ("nodes", i)
        if n.router_id is None:
            raise ctx.error(f"missing router_id: node {n.name!r} of a segment routing "
                            "topology needs one", path + ("router_id",))
        try:
            rid = ipaddress.IPv4Address(n.router_id)
        except ValueError:
            raise ctx.error(f"bad IPv4 router id {n.router_id!r}", path + ("router_id",)) \
                from None
        if rid in router_ids:
            raise ctx.error(f"duplicate router_id {rid} (also nodes[{router_ids[rid]}])",
                            path + ("router_id",))
        router_ids[rid] = i
        start = n.srgb.start if n.srgb else DEFAULT_SRGB_START
        size = n.srgb.size if n.srgb else DEFAULT_SRGB_SIZE
        if start + size - 1 > MAX_MPLS_LABEL:
            raise ctx.error(f"SRGB {start} + {size} labels passes the last MPLS label "
                            f"{MAX_MPLS_LABEL}", path + ("srgb",))
        srgb_of[n.name] = (start, start + size - 1)
        if n.node_sid_index is None:
            raise ctx.error(f"missing node_sid_index: node {n.name!r} of a segment routing "
                            "topology needs one", path + ("node_sid_index",))
        if n.node_sid_index >= size:
            raise ctx.error(f"node SID index {n.node_sid_index} is outside the SRGB "
                            f"[{start}, {start + size - 1}] ({size} labels)",
                            path + ("node_sid_index",))
        if n.node_sid_index in sid_indexes:
            raise ctx.error(f"duplicate node SID index {n.node_sid_index} (also "
                            f"nodes[{sid_indexes[n.node_sid_index]}])",
                            path + ("node_sid_index",))
        sid_indexes[n.node_sid_index] = i
    addresses: dict[ipaddress.IPv4Address, str] = {}
    adj_sids: dict[tuple[str, int], str] = {}
    for i, lk in enumerate(doc.links):
        path = ("links", i)
        for end, node in (("a", lk.a), ("b", lk.b)):
            addr, sid = getattr(lk, f"{end}_address"), getattr(lk, f"{end}_adj_sid")
            where = f"links[{i}].{end}_address"
            if addr is not None:
                try:
                    ip = ipaddress.IPv4Address(addr)
                except ValueError:
                    raise ctx.error(f"bad IPv4 address {addr!r}", path + (f"{end}_address",)) \
                        from None
                if ip in addresses or ip in router_ids:
                    other = addresses.get(ip) or f"nodes[{router_ids[ip]}].router_id"
                    raise ctx.error(f"duplicate address {ip} (also {other})",
                                    path + (f"{end}_address",))
                addresses[ip] = where
            if sid is None:
                continue
            if lk.a_address is None or lk.b_address is None:
                missing = "a_address" if lk.a_address is None else "b_address"
                raise ctx.error("an adjacency SID needs both interface addresses (its NAI)",
                                path + (missing,))
            first, last = srgb_of[node]
            if first <= sid <= last:
                raise ctx.error(f"adjacency SID {sid} lies inside the SRGB [{first}, {last}] "
                                f"of {node!r} (node SIDs live there)",
                                path + (f"{end}_adj_sid",))
            if (node, sid) in adj_sids:
                raise ctx.error(f"duplicate adjacency SID {sid} at {node!r} (also "
                                f"{adj_sids[(node, sid)]})", path + (f"{end}_adj_sid",))
            adj_sids[(node, sid)] = f"links[{i}].{end}_adj_sid"


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
                          label=n.label, router_id=n.router_id,
                          srgb_start=n.srgb.start if n.srgb else None,
                          srgb_size=n.srgb.size if n.srgb else None,
                          node_sid_index=n.node_sid_index))
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
            latency_ms, computed = fiber_latency_ms(distance_km, factor), True
        else:
            bare = lk.a if not na.has_coordinates else lk.b
            raise ctx.error(f"no latency_ms, and node {bare!r} has no coordinates to compute it "
                            "from", ("links", i, "latency_ms"))
        links.append(Link(a=lk.a, b=lk.b, latency_ms=latency_ms, bandwidth_mbps=lk.bandwidth_mbps,
                          cost=lk.cost, route_factor=lk.route_factor, latency_computed=computed,
                          distance_km=distance_km, igp_metric=lk.igp_metric,
                          a_address=lk.a_address, b_address=lk.b_address,
                          a_adj_sid=lk.a_adj_sid, b_adj_sid=lk.b_adj_sid))
    _check_segment_routing(doc, ctx)

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
            if not MAC_RE.match(h.mac):
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
        if not SITE_ID_RE.match(s.id):
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
                                  police=it.police, sla_reroute=it.sla_reroute))

    if not math.isfinite(doc.route_factor):  # pragma: no cover - pydantic already refuses
        raise ctx.error("route_factor must be finite", ("route_factor",))
    return Topology(name=doc.name, nodes=nodes, links=links, hosts=hosts, compute_sites=sites,
                    intents=intents, route_factor=doc.route_factor, description=doc.description,
                    host_network=doc.host_network)
