"""MPLS tunnels: the label-switched paths unprotected intents ride, and the heads they enter by.

An unprotected intent whose path crosses switches rides a tunnel: its ingress flow pushes an
MPLS label and every later switch forwards by the label alone (the last one pops it and
delivers to the host). A tunnel is a chain of segments, one per switch after the ingress:
segment (switch, links from it to the egress, egress host port) has one flow at its switch
that matches its label, swaps it for the next segment's label and outputs toward the next
switch (the last segment pops the label and outputs to the host). Every intent whose path has
the same tail from some switch on shares the segments from there, so a detour that rejoins
the old path needs new segments only up to where it rejoins. Labels are a stable hash of the
segment, so a restarted controller computes the same ones. A segment lives while an intent's
tunnel starts there or a head or a segment swaps to it (reference counts), so a label a flow
swaps to never changes under it.

**Heads.** An intent's ingress flow does not push its tunnel's label itself: it pushes the
label of a *head* at its ingress switch and goes to table 3, where the head's one flow swaps
that label for the tunnel's first and outputs toward the next switch. The intents entering the
network at one switch for one destination host share a head (its label a stable hash of the
switch and the host), which points at the tunnel of the lowest-numbered of them; those of them
whose path differs push their tunnel's first label themselves and output toward the next
switch, and so does an intent whose head would serve it alone (a head for one intent is one
flow more and no message less). When a cut or a repair moves the intents of a head onto
another tunnel, the head's one flow is modified: a reroute of N intents between two cities
costs one FlowMod at their ingress, not N. Heads are a function of the intents and their
routes alone (not of their history), so a restarted controller computes the same ones and a
fresh plan equals the live one.

The table itself (segments, heads, reference counts, labels) is pathcore's ``TunnelTable``
(``pathcore/src/tunnels.rs``): a batch or a cut puts a thousand intents through it. This
module writes what it reports into the flow plan. ``tests/unit/test_tunnel_table.py`` holds it
to a pure-Python model of the table (``tests/unit/tunnels_reference.py``), change for change,
labels included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from controller.network.flows import (
    ETH_TYPE_IPV4,
    ETH_TYPE_MPLS,
    MPLS_LABEL_MIN,
    MPLS_LABEL_SPACE,
    OWNER_ID_BITS,
    OWNER_TUNNEL,
    PRIORITY_TUNNEL,
    TABLE_HEADS,
    TABLE_INTENTS,
    Action,
    FlowEntry,
    Instructions,
)
from controller.network.plan import OwnerPlan
from pathcore import TunnelTable

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from controller.network.intents import Intent
    from controller.network.state import NetworkState

__all__ = ["Tunnels"]

_SEGMENT, _HEAD, _DROP = 0, 1, 2
"""the kinds of the plan changes ``TunnelTable`` reports"""


class Tunnels:
    """The tunnel segments and heads in use, written into ``plan`` (owner: the label)."""

    def __init__(self, state: NetworkState, plan: OwnerPlan,
                 hop: Callable[[str, int], Action] | None = None) -> None:
        self.state = state
        self.plan = plan
        self._table = TunnelTable(hop if hop is not None else (
            lambda node, link_id: ("output", state.out_port(node, link_id))),
            MPLS_LABEL_MIN, MPLS_LABEL_SPACE)
        """the segments and heads; its ``hop`` (node, pathcore link id) gives the action
        sending a labelled packet over that link"""

    def update(self, changed: Iterable[Intent], removed: Iterable[int]) -> set[int]:
        """Put every intent of ``changed`` (its route or hosts may have changed) on its tunnel
        (segments made if new) and its head, and take the ``removed`` intents off theirs
        (:meth:`ingress` then tells each what its ingress pushes; an intent that rides no
        tunnel gets ``mpls_label`` None now). Returns the ids of other intents whose head
        changed with them (members of a shared head that now points elsewhere, or that is
        made or dropped): their ingress flows change too. Segments left without references
        are removed by :meth:`drop_idle`."""
        extra, events = self._table.update(changed, list(removed), self.state.hosts)
        self._write(events)
        return set(extra)

    def ingress(self, intent: Intent) -> tuple[int, Action | None] | None:
        """What ``intent``'s ingress flow does (after :meth:`update`): ``(label, None)``: push
        its head's label and go to table 3; ``(label, action)``: push its tunnel's first label
        and leave by ``action`` (output on a port, or its bypass group); None: it rides no
        tunnel. Sets the intent's ``mpls_label`` and ``mpls_labels``."""
        return self._table.ingress(intent)

    def head_target(self, label: int) -> int | None:
        """The first label of the tunnel head ``label`` points at (None: not a head)."""
        return self._table.head_target(label)

    def first_segment(self, label: int) -> int:
        """The first label of the tunnel a packet pushed with ``label`` rides: the target
        of a head, else ``label`` itself (an ingress that pushes its tunnel's label)."""
        return self._table.first_segment(label)

    def head_riders(self, label: int) -> set[int]:
        """The ids of the intents whose ingress pushes head ``label`` (a new set)."""
        return self._table.head_riders(label)

    def drop_idle(self) -> None:
        """Remove the segments nothing refers to any more; a removed segment lets go of the
        next one, which may go too."""
        self._write(self._table.drop_idle())

    def riders(self) -> dict[int, list[int]]:
        """label -> ids of the intents whose traffic carries it (a head: the intents whose
        ingress pushes it; a segment: those of every head whose tunnel crosses it and the
        intents that push a label of that tunnel themselves)."""
        return self._table.riders()

    def _write(self, events: Sequence[tuple[Any, ...]]) -> None:
        """Write the table's changes into the plan: a new segment's flow (swap to the next
        label and leave toward the next switch, or pop and deliver), a head's flow (swap to
        its tunnel's first label), a flow gone."""
        set_owner = self.plan.set_owner
        node_dpid = self.state.wiring.node_dpid
        kind_bits = OWNER_TUNNEL << OWNER_ID_BITS  # make_cookie, inlined: labels fit
        for ev in events:
            kind, label = ev[0], ev[1]
            cookie = kind_bits | label
            if kind == _DROP:
                set_owner(cookie, {})
                continue
            match = (("eth_type", ETH_TYPE_MPLS), ("mpls_label", label))
            if kind == _SEGMENT:
                _, _, node, nxt, action, egress_port = ev
                inst: Instructions = (("pop_mpls", ETH_TYPE_IPV4), ("output", egress_port)) \
                    if nxt is None else (("set_field", ("mpls_label", nxt)), action)
                flow = FlowEntry(TABLE_INTENTS, PRIORITY_TUNNEL, match, inst, cookie)
            else:
                _, _, node, first, action = ev
                flow = FlowEntry(TABLE_HEADS, PRIORITY_TUNNEL, match,
                                 (("set_field", ("mpls_label", first)), action), cookie)
            set_owner(cookie, {node_dpid[node]: frozenset((flow,))})
