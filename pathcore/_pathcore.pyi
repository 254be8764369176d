"""Type stub for the pathcore extension module (hand-written; checked by mypy.stubtest)."""

from collections.abc import Iterable
from typing import Any, final

__all__ = ["Graph", "Link", "Path", "ReverseTrees", "pack_bundle_flowmod", "pack_match",
           "pack_oxm"]

@final
class Path:
    """An immutable path: node names, directed link ids and totals."""

    @property
    def nodes(self) -> list[str]: ...
    @property
    def links(self) -> list[int]: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def cost(self) -> float: ...
    @property
    def hops(self) -> int: ...
    @property
    def bottleneck_mbps(self) -> float: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __len__(self) -> int: ...

@final
class Link:
    """A directed link as the graph held it when read (a snapshot): id, end nodes, values."""

    @property
    def id(self) -> int: ...
    @property
    def u(self) -> str: ...
    @property
    def v(self) -> str: ...
    @property
    def latency_ms(self) -> float: ...
    @property
    def bandwidth_mbps(self) -> float: ...
    @property
    def residual_mbps(self) -> float: ...
    @property
    def cost(self) -> float: ...
    @property
    def up(self) -> bool: ...
    @property
    def reverse(self) -> int | None: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

@final
class Graph:
    """Directed multigraph of named nodes and links, with path queries.

    Every ``max_latency_ms`` accepts ``math.inf``, meaning unbounded."""

    def __new__(cls) -> Graph: ...
    def add_node(self, name: str) -> int: ...
    def add_nodes(self, names: Iterable[str]) -> list[int]: ...
    def has_node(self, name: str) -> bool: ...
    def __contains__(self, key: str, /) -> bool: ...
    @property
    def node_count(self) -> int: ...
    @property
    def link_count(self) -> int: ...
    def nodes(self) -> list[str]: ...
    def add_link(
        self,
        u: str,
        v: str,
        latency_ms: float,
        bandwidth_mbps: float,
        cost: float = 1.0,
        bidirectional: bool = True,
    ) -> int: ...
    def add_links(
        self,
        links: Iterable[tuple[str, str, float, float] | tuple[str, str, float, float, float]],
        bidirectional: bool = True,
    ) -> list[int]: ...
    def link(self, link_id: int) -> Link: ...
    def links(self) -> list[Link]: ...
    def reverse_link(self, link_id: int) -> int | None: ...
    def links_between(self, u: str, v: str) -> list[int]: ...
    def set_link_up(self, link_id: int, up: bool, *, both_directions: bool = False) -> None: ...
    def set_residual_bandwidth(
        self, link_id: int, residual_mbps: float, *, both_directions: bool = False
    ) -> None: ...
    def set_link_bandwidth(
        self, link_id: int, bandwidth_mbps: float, *, both_directions: bool = False
    ) -> None: ...
    def set_link_latency(
        self, link_id: int, latency_ms: float, *, both_directions: bool = False
    ) -> None: ...
    def set_link_cost(
        self, link_id: int, cost: float, *, both_directions: bool = False
    ) -> None: ...
    def shortest_path(
        self,
        src: str,
        dst: str,
        weight: str = "latency",
        *,
        exclude_nodes: Iterable[str] | None = None,
        exclude_links: Iterable[int] | None = None,
    ) -> Path | None: ...
    def shortest_path_tree(self, target: str, weight: str = "latency") -> dict[str, int]: ...
    def shortest_path_arrays(
        self, root: str, weight: str = "latency", *, reverse: bool = False
    ) -> tuple[list[float], list[int]]: ...
    def constrained_path(
        self,
        src: str,
        dst: str,
        *,
        max_latency_ms: float,
        min_bandwidth_mbps: float = 0.0,
        weight: str = "cost",
        exclude_nodes: Iterable[str] | None = None,
        exclude_links: Iterable[int] | None = None,
    ) -> Path | None: ...
    def k_shortest_paths(
        self,
        src: str,
        dst: str,
        k: int,
        *,
        weight: str = "latency",
        max_latency_ms: float | None = None,
    ) -> list[Path]: ...
    def disjoint_paths(
        self, src: str, dst: str, *, weight: str = "latency", node_disjoint: bool = False
    ) -> tuple[Path, Path] | None: ...
    def within_latency(self, src: str, max_latency_ms: float) -> dict[str, float]: ...
    def latency_matrix(
        self, nodes: Iterable[str] | None = None
    ) -> tuple[list[str], list[list[float]]]: ...
    def batch_constrained_paths(
        self,
        requests: Iterable[tuple[str, str, float] | tuple[str, str, float, float]],
        *,
        weight: str = "cost",
    ) -> list[Path | None]: ...
    def batch_routes(
        self,
        requests: Iterable[tuple[str, str, float] | tuple[str, str, float, float]],
        *,
        weight: str = "cost",
    ) -> tuple[list[int], list[tuple[tuple[str, ...], tuple[int, ...], float, float]]]:
        """batch_constrained_paths' answers with each distinct path once: (index, routes);
        index[i] is the position in routes of request i's path (-1: none), a route is
        (nodes, links, latency_ms, cost); requests on one path share its tuples."""

@final
class ReverseTrees:
    """Reverse least-weight trees of one Graph toward many roots, kept up to date as its
    links go up and down; each update answers only the next hops that moved."""

    def __new__(cls, graph: Graph, weight: str = "latency") -> ReverseTrees: ...
    def update(self, roots: Iterable[str]) -> list[tuple[str, list[tuple[int, int]]]]: ...
    def next_hops(self, root: str) -> list[int]: ...
    def roots(self) -> list[str]: ...

def pack_oxm(name: str, value: Any) -> bytes | None:
    """The OXM TLV of one unmasked match field; None when os-ken must encode it."""

def pack_match(fields: Any) -> bytes | None:
    """The ``ofp_match`` of a tuple of (name, value) pairs; None when os-ken must encode
    it."""

def pack_bundle_flowmod(xid: int, bundle_id: int, bundle_flags: int, fixed: bytes,
                        fields: Any, instructions: bytes) -> bytes | None:
    """A FlowMod (header ``xid``, its 40 ``fixed`` bytes, the match of ``fields``, its
    ``instructions`` bytes) inside an ONF bundle-add; None when os-ken must serialise it."""
