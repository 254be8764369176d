"""Which member masters which switch: a pure function of the switches, the live members and
who masters what now.

Every member computes :func:`assign` from the same etcd state, so they agree on who should
claim an orphaned switch; the claim itself is a create-if-absent transaction, so a member
acting on an older view can lose the race but never share a switch.

The assignment is **balanced** (every live member masters ``n // m`` or ``n // m + 1`` of the
``n`` switches) and **sticky**: a switch stays with its live master unless that master holds
more than its share, so a member's death moves only its own switches and a member joining
takes only the switches that bring it up to its share (ONOS's mastership balancing keeps the
same two rules).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

__all__ = ["assign", "quotas"]


def quotas(n_switches: int, members: Iterable[str],
           held: Mapping[str, int] | None = None) -> dict[str, int]:
    """How many switches each member should master: ``n // m`` each, and one more for the
    ``n % m`` members holding the most now (ties by id), so a balanced cluster stays as it
    is."""
    ms = sorted(set(members))
    if not ms:
        return {}
    base, extra = divmod(n_switches, len(ms))
    have = held or {}
    order = sorted(ms, key=lambda m: (-have.get(m, 0), m))
    return {m: base + (1 if i < extra else 0) for i, m in enumerate(order)}


def assign(dpids: Iterable[int], members: Iterable[str],
           current: Mapping[int, str]) -> dict[int, str]:
    """dpid -> member for every switch, over the live ``members`` (empty: nobody masters
    anything). ``current``: who masters what now (entries naming a member that is not live
    are orphans). Deterministic: the same arguments give the same answer on every member."""
    live = sorted(set(members))
    switches = sorted(set(dpids))
    if not live:
        return {}
    held = Counter(m for d, m in current.items() if m in live and d in switches)
    quota = quotas(len(switches), live, held)
    load: Counter[str] = Counter()
    out: dict[int, str] = {}
    for d in switches:  # keep: a live master under its share keeps its lowest dpids
        owner = current.get(d)
        if owner is not None and owner in quota and load[owner] < quota[owner]:
            out[d] = owner
            load[owner] += 1
    for d in switches:  # place the rest on the member with the most room left (ties by id)
        if d in out:
            continue
        target = min(live, key=lambda m: (load[m] - quota[m], m))
        out[d] = target
        load[target] += 1
    return out
