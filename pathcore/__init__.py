"""pathcore: latency-bounded path computation for the CPN controller (Rust, via PyO3).

`Graph` holds named nodes and directed links (latency, bandwidth, residual bandwidth,
cost, up/down) and answers path queries; `Path` is an immutable query result and `Link`
an immutable record of one directed link (`Graph.link(id)`, `Graph.links()`);
`ReverseTrees` keeps a graph's reverse shortest-path trees toward many roots up to date and
answers only the next hops that moved.
Unknown node names and link ids raise `KeyError`; bad numbers and arguments raise
`ValueError`; "no (feasible) path" is `None` (or an empty list for `k_shortest_paths`).
A latency bound (`max_latency_ms`) of `math.inf` means unbounded.

Beside the engine, `pack_bundle_flowmod`, `pack_match` and `pack_oxm` give the OpenFlow 1.3
wire bytes of the controller's FlowMods (a FlowMod in an ONF bundle-add, a match, one OXM
field) for the fields and forms they know, and None for the rest (os-ken serialises those).
`TunnelTable` is the controller's MPLS tunnel table (segments, heads, labels), the
bookkeeping a batch or a cut puts every moved intent through.
"""

from pathcore._pathcore import (
    Graph,
    Link,
    Path,
    ReverseTrees,
    TunnelTable,
    pack_bundle_flowmod,
    pack_match,
    pack_oxm,
)

__all__ = ["Graph", "Link", "Path", "ReverseTrees", "TunnelTable", "pack_bundle_flowmod",
           "pack_match", "pack_oxm"]
