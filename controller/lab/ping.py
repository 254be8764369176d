"""Ping results and the choice of pairs for a ping matrix (running the pings is
:meth:`controller.lab.network.LabNetwork.ping_matrix`).

Up to :data:`ALL_PAIRS_MAX_HOSTS` hosts a matrix covers every ordered pair; above, a bounded
sample (:func:`plan_ping_pairs`). Each source host runs :data:`PING_SCRIPT`, which pings all its
destinations in parallel and prints one ``@@`` summary line per destination
(:func:`parse_ping_lines` reads them).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from controller.lab.plan import LabPlan
from controller.tables import format_table

__all__ = ["ALL_PAIRS_MAX_HOSTS", "PING_SCRIPT", "SAMPLE_PAIRS", "PingMatrix", "PingResult",
           "parse_ping_lines", "plan_ping_pairs"]

ALL_PAIRS_MAX_HOSTS = 16
"""Up to this many hosts the ping matrix covers every ordered pair; above, a sample."""
SAMPLE_PAIRS = 200
"""Size of the sampled ping matrix for big networks."""


@dataclass(frozen=True, slots=True)
class PingResult:
    """Echo requests from ``src`` to ``dst`` (topology host names)."""

    src: str
    dst: str
    sent: int
    received: int
    avg_rtt_ms: float | None

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.received == self.sent


@dataclass(frozen=True)
class PingMatrix:
    """The results of a ping matrix and how its pairs were chosen."""

    results: list[PingResult]
    description: str
    hosts: list[str]

    @property
    def sent(self) -> int:
        return sum(r.sent for r in self.results)

    @property
    def received(self) -> int:
        return sum(r.received for r in self.results)

    @property
    def loss_percent(self) -> float:
        return 0.0 if self.sent == 0 else 100.0 * (self.sent - self.received) / self.sent

    @property
    def failed(self) -> list[PingResult]:
        return [r for r in self.results if not r.ok]

    def summary_table(self, plan: LabPlan | None = None) -> str:
        """Per source host: pairs, echo requests sent and answered, loss, mean RTT."""
        rows: list[tuple[str, ...]] = [
            ("source", "lab", "address", "pairs", "sent", "recv", "loss", "avg rtt")]
        by_src: dict[str, list[PingResult]] = {}
        for r in self.results:
            by_src.setdefault(r.src, []).append(r)
        for src in self.hosts:
            rs = by_src.get(src)
            if not rs:
                continue
            rows.append(self._row(src, rs, plan))
        rows.append(self._row("total", self.results, None))
        return format_table(rows, right_from=3)

    def _row(self, label: str, rs: list[PingResult], plan: LabPlan | None) -> tuple[str, ...]:
        sent = sum(r.sent for r in rs)
        recv = sum(r.received for r in rs)
        rtts = [r.avg_rtt_ms for r in rs if r.avg_rtt_ms is not None]
        loss = 0.0 if sent == 0 else 100.0 * (sent - recv) / sent
        lab = plan.host(label) if plan is not None else ""
        addr = plan.topology.host(label).ip if plan is not None else ""
        rtt = f"{sum(rtts) / len(rtts):.3f} ms" if rtts else "-"
        return (label, lab, addr, str(len(rs)), str(sent), str(recv), f"{loss:.0f}%", rtt)

    def matrix_table(self) -> str:
        """Source x destination grid: ``ok``, ``LOSS`` or blank (pair not tried)."""
        cell = {(r.src, r.dst): ("ok" if r.ok else "LOSS") for r in self.results}
        rows: list[tuple[str, ...]] = [("from \\ to", *self.hosts)]
        for s in self.hosts:
            rows.append((s, *[("-" if s == d else cell.get((s, d), "")) for d in self.hosts]))
        return format_table(rows)


def plan_ping_pairs(hosts: Sequence[str], *, all_pairs_max_hosts: int = ALL_PAIRS_MAX_HOSTS,
                    sample_pairs: int = SAMPLE_PAIRS, seed: int = 0,
                    force_all: bool = False) -> tuple[list[tuple[str, str]], str]:
    """Ordered host pairs for a ping matrix, and a sentence saying how they were chosen.

    Every ordered pair up to ``all_pairs_max_hosts`` hosts (or with ``force_all``). Above, a
    bounded sample: each host pings its successor and the host half-way round the list (so every
    host sends and receives), topped up with pairs drawn at random (``seed``) to
    ``sample_pairs``.
    """
    n = len(hosts)
    total = n * (n - 1)
    if n < 2:
        return [], "no pairs: fewer than two hosts"
    if force_all or n <= all_pairs_max_hosts or total <= sample_pairs:
        pairs = [(a, b) for a in hosts for b in hosts if a != b]
        return pairs, f"all {total} ordered pairs of {n} hosts"
    chosen: dict[tuple[str, str], None] = {}
    for i, a in enumerate(hosts):
        for step in (1, n // 2):
            b = hosts[(i + step) % n]
            if a != b:
                chosen.setdefault((a, b))
    rng = random.Random(seed)
    budget = max(sample_pairs, len(chosen))
    attempts = 0
    while len(chosen) < budget and attempts < 50 * budget:
        attempts += 1
        a, b = rng.sample(list(hosts), 2)
        chosen.setdefault((a, b))
    pairs = list(chosen)
    return pairs, (f"a sample of {len(pairs)} of {total} ordered pairs of {n} hosts "
                   f"(each host to its successor and to the host half-way round, "
                   f"plus random pairs, seed {seed}); --all-pairs for every pair")


PING_SCRIPT = r"""
for ip in "$@"; do
  (
    if out=$(ping -n -q -c "$PING_COUNT" -i "$PING_INTERVAL" -W "$PING_WAIT" "$ip" 2>&1);
    then rc=0; else rc=$?; fi
    echo "@@ $ip $rc $(printf '%s\n' "$out" | grep -E 'transmitted|rtt' | tr '\n' ' ')"
  ) &
done
wait
"""
_TX_RE = re.compile(r"(\d+) packets transmitted, (\d+) (?:packets )?received")
_RTT_RE = re.compile(r"= [\d.]+/([\d.]+)/")


def parse_ping_lines(output: str) -> dict[str, tuple[int, int, float | None]]:
    """Destination address -> (sent, received, mean RTT ms or None) from the ``@@`` lines of
    :data:`PING_SCRIPT`."""
    out: dict[str, tuple[int, int, float | None]] = {}
    for line in output.splitlines():
        if not line.startswith("@@ "):
            continue
        _, ip, _rc, *rest = line.split(" ")
        text = " ".join(rest)
        tx = _TX_RE.search(text)
        rtt = _RTT_RE.search(text)
        sent, recv = (int(tx.group(1)), int(tx.group(2))) if tx else (0, 0)
        out[ip] = (sent, recv, float(rtt.group(1)) if rtt else None)
    return out
