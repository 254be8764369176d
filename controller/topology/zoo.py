"""Import carrier maps (Internet Topology Zoo GML, GraphML) into the topology model.

- Every node becomes a ``switch`` node named after its label, made unique and YAML-friendly
  (ASCII, lower case, ``-`` for anything else; ``-2``, ``-3`` ... for repeated labels; ``n<id>``
  when there is no usable label). The original label is kept in ``label``; ``Latitude`` and
  ``Longitude`` become ``lat``/``lon``.
- Every edge record becomes a link; parallel links are kept (several Zoo files list a pair
  twice without declaring ``multigraph 1``: they are read as multigraphs all the same).
  Self-loops carry no traffic between switches and are dropped (none of the shipped files has one).
- Latency: computed from coordinates (great-circle km x route factor x 0.0049 ms/km) when both
  ends have them. A link with an end lacking coordinates gets the **median** of the file's
  computed link latencies, written explicitly; a file with no coordinates at all (Internet2.gml)
  gets :data:`DEFAULT_LATENCY_MS` per link. GraphML edges may carry ``latency_ms`` themselves.
- Bandwidth: ``LinkSpeedRaw`` (bit/s) when present, else ``bandwidth_mbps`` (GraphML), else the
  model default (10 Gbps). Cost: ``cost`` when present, else 1 per link.
- Hosts: one per node, derived by the loader (``h-<node>``, 10.0.0.0/8).

The result goes through the same validation as a YAML file and exports with ``to_yaml()``.
networkx parses both formats. ``cpn-topo`` takes a file or ``zoo:NAME``, one of the maps
shipped in ``topologies/zoo/`` (:mod:`controller.topology.files`).
"""

from __future__ import annotations

import argparse
import logging
import math
import re
import statistics
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.errors import TopologyError
from controller.topology.files import ZOO_PREFIX, zoo_file, zoo_names
from controller.topology.geo import DEFAULT_ROUTE_FACTOR, fiber_latency_ms, great_circle_km
from controller.topology.loader import topology_from_dict
from controller.topology.model import Topology

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["DEFAULT_LATENCY_MS", "graph_to_topology", "import_file", "import_gml",
           "import_graphml", "main", "unique_names"]

log = logging.getLogger(__name__)

DEFAULT_LATENCY_MS = 1.0
"""Per-link latency when a file has no coordinates at all (stated, not measured)."""

_MAX_NAME = 60


def _networkx() -> Any:
    try:
        import networkx
    except ImportError as exc:  # pragma: no cover - networkx is a dependency
        raise TopologyError("importing GML/GraphML needs networkx (pip install networkx)") from exc
    return networkx


def slug(text: str) -> str:
    """ASCII, lower-case, ``-``-separated form of ``text`` ('' when nothing usable is left)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:_MAX_NAME].strip("-")


def unique_names(labels: Sequence[tuple[Any, Any]]) -> dict[Any, str]:
    """Map node ids to unique names from their labels (pairs ``(id, label or None)``).

    In input order: the slug of the label; ``n<id>`` (slugged) if that is empty; a repeated name
    gets ``-2``, ``-3``, ... (skipping names already taken).
    """
    taken: set[str] = set()
    out: dict[Any, str] = {}
    for node_id, label in labels:
        base = slug(str(label)) if label is not None else ""
        if not base:
            base = slug(f"n{node_id}") or "n"
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name)
        out[node_id] = name
    return out


def _coordinate(attrs: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = attrs.get(key)
        if value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return number if math.isfinite(number) else None
    return None


def _positive(attrs: dict[str, Any], key: str, scale: float = 1.0) -> float | None:
    value = attrs.get(key)
    try:
        number = float(value) * scale if value is not None else None
    except (TypeError, ValueError):
        return None
    if number is None or not math.isfinite(number) or number <= 0:
        return None
    return number


def graph_to_topology(graph: nx.Graph, name: str, *, source: str = "<graph>",
                      description: str | None = None,
                      route_factor: float = DEFAULT_ROUTE_FACTOR) -> Topology:
    """Build a validated :class:`Topology` from a networkx (multi)graph (rules: module doc)."""
    if not (math.isfinite(route_factor) and 1.0 <= route_factor <= 10.0):
        raise TopologyError(f"route_factor must be between 1 and 10, not {route_factor:g}",
                            source=source, field="route_factor")
    node_ids = list(graph.nodes)
    names = unique_names([(n, graph.nodes[n].get("label")) for n in node_ids])
    coords: dict[Any, tuple[float, float] | None] = {}
    nodes = []
    for n in node_ids:
        attrs = graph.nodes[n]
        lat = _coordinate(attrs, "Latitude", "latitude", "lat")
        lon = _coordinate(attrs, "Longitude", "longitude", "lon")
        ok = lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180
        coords[n] = (lat, lon) if ok else None  # type: ignore[assignment]
        doc: dict[str, Any] = {"name": names[n], "kind": "switch"}
        label = attrs.get("label")
        if label is not None and str(label) != names[n]:
            doc["label"] = str(label)
        if ok:
            doc["lat"], doc["lon"] = lat, lon
        nodes.append(doc)

    edges = graph.edges(keys=True, data=True) if graph.is_multigraph() else \
        ((u, v, None, d) for u, v, d in graph.edges(data=True))
    links = []
    needs_fallback: list[dict[str, Any]] = []
    computed: list[float] = []
    dropped = 0
    for u, v, _key, attrs in edges:
        if u == v:
            dropped += 1
            continue
        link: dict[str, Any] = {"a": names[u], "b": names[v]}
        latency = attrs.get("latency_ms")
        cu, cv = coords[u], coords[v]
        if latency is not None:
            link["latency_ms"] = float(latency)
        elif cu is not None and cv is not None:
            computed.append(fiber_latency_ms(great_circle_km(*cu, *cv), route_factor))
        else:
            needs_fallback.append(link)
        bandwidth = _positive(attrs, "LinkSpeedRaw", 1e-6) or _positive(attrs, "bandwidth_mbps")
        if bandwidth is not None:
            link["bandwidth_mbps"] = bandwidth
        cost = attrs.get("cost")
        if cost is not None:
            link["cost"] = float(cost)
        links.append(link)
    if dropped:
        log.warning("%s: dropped %d self-loop edge(s)", source, dropped)
    fallback_ms = statistics.median(computed) if computed else DEFAULT_LATENCY_MS
    for link in needs_fallback:
        link["latency_ms"] = fallback_ms

    doc = {"name": slug(name) or "imported", "route_factor": route_factor, "nodes": nodes,
           "links": links}
    if description:
        doc["description"] = description
    host_names = {f"h-{n['name']}" for n in nodes}
    if host_names & {n["name"] for n in nodes}:
        # A derived host name would clash with a node name: name the hosts explicitly.
        taken = {n["name"] for n in nodes}
        hosts = []
        for n in nodes:
            hname, k = f"h-{n['name']}", 1
            while hname in taken:
                k += 1
                hname = f"h-{n['name']}-{k}"
            taken.add(hname)
            hosts.append({"name": hname, "node": n["name"]})
        doc["hosts"] = hosts
    return topology_from_dict(doc, source=source)


def _read_gml(path: Path) -> nx.MultiGraph:
    nx = _networkx()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopologyError(f"cannot read file: {exc.strerror or exc}", source=str(path)) from None
    # Zoo files repeat edges without declaring a multigraph: declare it (in memory only).
    if not re.search(r"^\s*multigraph\s+1\s*$", text, re.M):
        text, count = re.subn(r"^(\s*graph\s*\[)", r"\1\n  multigraph 1", text, count=1,
                              flags=re.M)
        if count == 0:
            raise TopologyError("not a GML graph: no 'graph [' found", source=str(path), line=1)
    try:
        graph = nx.parse_gml(text, label="id")
    except (nx.NetworkXError, ValueError) as exc:
        raise TopologyError(f"bad GML: {exc}", source=str(path)) from None
    if not graph.is_multigraph():
        graph = nx.MultiGraph(graph)
    return graph


def _description(graph: nx.Graph, path: Path, *, zoo: bool) -> str:
    meta = graph.graph
    parts = [str(meta.get("Network") or meta.get("label") or path.stem)]
    if meta.get("GeoLocation"):
        parts.append(f"({meta['GeoLocation']})")
    if meta.get("NetworkDate") or meta.get("DateYear"):
        parts.append(f"{meta.get('NetworkDate') or meta.get('DateYear')}")
    credit = " (Internet Topology Zoo, Knight et al., IEEE JSAC 2011, CC BY 4.0)" if zoo else ""
    return " ".join(parts) + f"; imported from {path.name}{credit} by controller.topology.zoo"


def import_gml(path: str | Path, *, name: str | None = None,
               route_factor: float = DEFAULT_ROUTE_FACTOR) -> Topology:
    """Import a Topology Zoo GML file. Raises :class:`TopologyError`."""
    p = Path(path)
    graph = _read_gml(p)
    return graph_to_topology(graph, name or p.stem, source=str(p),
                             description=_description(graph, p, zoo=True),
                             route_factor=route_factor)


def import_graphml(path: str | Path, *, name: str | None = None,
                   route_factor: float = DEFAULT_ROUTE_FACTOR) -> Topology:
    """Import a GraphML file (Zoo attribute names or lat/lon/latency_ms/bandwidth_mbps/cost)."""
    nx = _networkx()
    p = Path(path)
    try:
        graph = nx.read_graphml(p, force_multigraph=True)
    except OSError as exc:
        raise TopologyError(f"cannot read file: {exc.strerror or exc}", source=str(p)) from None
    except Exception as exc:  # networkx raises several kinds (NetworkXError, ParseError, ...)
        raise TopologyError(f"bad GraphML: {exc}", source=str(p)) from None
    graph = nx.MultiGraph(graph)  # links are bidirectional in the model
    return graph_to_topology(graph, name or p.stem, source=str(p),
                             description=_description(graph, p, zoo=False),
                             route_factor=route_factor)


def import_file(path: str | Path, **kwargs: Any) -> Topology:
    """Import by extension: ``.gml`` or ``.graphml``."""
    suffix = Path(path).suffix.lower()
    if suffix == ".gml":
        return import_gml(path, **kwargs)
    if suffix in (".graphml", ".xml"):
        return import_graphml(path, **kwargs)
    raise TopologyError(f"unknown file type {suffix!r}: expected .gml or .graphml",
                        source=str(path))


def main(argv: Sequence[str] | None = None) -> int:
    """``cpn-topo FILE|zoo:NAME [-o OUT.yaml] [--name NAME] [--route-factor F]``."""
    parser = argparse.ArgumentParser(
        prog="cpn-topo",
        description="Convert an Internet Topology Zoo GML or a GraphML file to a topology YAML.",
        epilog=f"Shipped Zoo maps ({ZOO_PREFIX}NAME): {', '.join(zoo_names())}")
    parser.add_argument("file", help=f"input .gml or .graphml, or {ZOO_PREFIX}NAME for a "
                                     "shipped Topology Zoo map")
    parser.add_argument("-o", "--output", type=Path, help="output YAML (default: stdout)")
    parser.add_argument("--name", help="topology name (default: the file name)")
    parser.add_argument("--route-factor", type=float, default=DEFAULT_ROUTE_FACTOR,
                        help=f"fibre route factor (default {DEFAULT_ROUTE_FACTOR})")
    args = parser.parse_args(argv)
    try:
        path = Path(args.file)
        if args.file.startswith(ZOO_PREFIX):
            path = zoo_file(args.file[len(ZOO_PREFIX):])
        topo = import_file(path, name=args.name, route_factor=args.route_factor)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    text = topo.to_yaml(header=f"Generated by cpn-topo from {path.name}")
    if args.output:
        args.output.write_text(text, encoding="utf-8")
        print(f"wrote {args.output}: {len(topo.nodes)} nodes, {len(topo.links)} links",
              file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
