"""pathcore: latency-bounded path computation for the CPN controller (Rust, via PyO3).

`Graph` holds named nodes and directed links (latency, bandwidth, residual bandwidth,
cost, up/down) and answers path queries; `Path` is an immutable query result and `Link`
an immutable record of one directed link (`Graph.link(id)`, `Graph.links()`);
`ReverseTrees` keeps a graph's reverse shortest-path trees toward many roots up to date and
answers only the next hops that moved.
Unknown node names and link ids raise `KeyError`; bad numbers and arguments raise
`ValueError`; "no (feasible) path" is `None` (or an empty list for `k_shortest_paths`).
A latency bound (`max_latency_ms`) of `math.inf` means unbounded.
"""

from pathcore._pathcore import Graph, Link, Path, ReverseTrees

__all__ = ["Graph", "Link", "Path", "ReverseTrees"]
