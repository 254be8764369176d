"""Signed discovery: LLDP probes signed with an HMAC, and the checks every LLDP frame passes
before the core uses it (pure: the caller gives the key and the clocks; no I/O).

An unsigned LLDP frame is an open door: injected on a trunk port and naming another
neighbour, it makes the controller mark a healthy link miswired and route around it (a
Port-Amnesia-style denial of service). So, as ONOS does, every probe carries an HMAC-SHA256
(:func:`~controller.network.packets.lldp_mac`) over the sender's dpid and port, the signing
time and a nonce, keyed by the deployment's discovery secret, and a received frame is used
only if, in this order:

1. it did not arrive on a host-facing port (``host_port``; checked by the core, whatever the
   signature: a host has no business speaking LLDP to the backbone);
2. it is one of this controller's probes (``malformed`` otherwise: broken, or another
   LLDP speaker's);
3. it carries a signature (``unsigned``) whose MAC is right (``bad_mac``);
4. it was signed no more than ``max_age_s`` ago (by default three probe intervals) and not
   in the future, each with ``skew_s`` of allowance for the clocks of cluster members
   (``stale``);
5. it is the first copy of that probe to arrive (``replayed``).

Why a nonce cache (step 5): a probe leaves one port once and crosses one link, so it
arrives once. A copy arriving again at the port it reached first says nothing new; a copy
arriving at another port, inside the window, says a false thing (that the sender is that
port's neighbour) and would mark that port's link miswired just as a forged one would. The
cache remembers each probe (sender, time, nonce) until it is stale anyway, so it holds at
most the probes of one window (a few per port), and frames with a bad MAC never enter it.

With signing off (``auth`` None: interop with a peer that cannot sign; never in a cluster
whose members disagree), steps 3-5 are skipped and probes go out unsigned.
"""

from __future__ import annotations

import hmac
import itertools
from collections import deque
from dataclasses import dataclass

from controller.network import packets

__all__ = ["REASONS", "LldpAuth", "LldpGuard"]

REASONS = ("unsigned", "bad_mac", "stale", "replayed", "host_port", "malformed")
"""why an LLDP frame was dropped (the ``reason`` label of ``cpn_lldp_rejected_total``)"""

EVENT_INTERVAL_S = 10.0
"""at most one ``lldp_rejected`` event (and log line) per port this often; the counters
count every frame"""
MAX_REMEMBERED = 65536
"""hard bound of the nonce cache and of the per-port event clock (a flood of valid-looking
entries cannot grow either without bound)"""


@dataclass(frozen=True, slots=True)
class LldpAuth:
    """The discovery secret and the freshness window."""

    key: bytes
    max_age_s: float
    """a probe signed longer ago than this (plus ``skew_s``) is stale"""
    skew_s: float = 0.5
    """allowance for the difference between the clocks of the members of a cluster"""

    def __post_init__(self) -> None:
        if len(self.key) < 16:
            raise ValueError("the LLDP discovery secret must be at least 16 bytes")
        if not self.max_age_s > 0 or not self.skew_s >= 0:
            raise ValueError("max_age_s must be > 0 and skew_s >= 0")


class LldpGuard:
    """Signs outgoing probes and judges incoming LLDP frames (module docstring); counts the
    rejections by reason and paces the events about them."""

    def __init__(self, auth: LldpAuth | None = None, *, nonce_start: int = 1) -> None:
        self.auth = auth
        self.rejected: dict[str, int] = dict.fromkeys(REASONS, 0)
        """reason -> frames dropped since start"""
        self._nonces = itertools.count(nonce_start)
        self._seen: dict[tuple[int, int, int, int], tuple[int, int]] = {}
        """(sender dpid, sender port, time ms, nonce) -> (dpid, port) where it arrived"""
        self._expiry: deque[tuple[float, tuple[int, int, int, int]]] = deque()
        self._last_event: dict[tuple[int, int], tuple[float, int]] = {}
        """(dpid, port) -> (when its last event was recorded, frames dropped since)"""

    def probe(self, dpid: int, port_no: int, wall_s: float) -> bytes:
        """The probe to send out of ``(dpid, port_no)``, signed at ``wall_s`` (seconds since
        the epoch) when signing is on."""
        if self.auth is None:
            return packets.lldp_probe(dpid, port_no)
        time_ms = int(wall_s * 1000)
        nonce = next(self._nonces) & 0xFFFF_FFFF_FFFF_FFFF
        mac = packets.lldp_mac(self.auth.key, dpid, port_no, time_ms, nonce)
        return packets.lldp_probe(dpid, port_no,
                                  signature=packets.LldpSignature(time_ms, nonce, mac))

    def check(self, probe: packets.LldpProbe | None, dpid: int, port_no: int,
              wall_s: float) -> str | None:
        """Why the frame parsed as ``probe`` (None: not one of ours), arrived at ``(dpid,
        port_no)`` at ``wall_s``, must be dropped (one of :data:`REASONS`), or None to use
        it. A probe that passes is remembered (a later copy is ``replayed``)."""
        if probe is None:
            return "malformed"
        auth = self.auth
        if auth is None:
            return None
        sig = probe.signature
        if sig is None:
            return "unsigned"
        want = packets.lldp_mac(auth.key, probe.dpid, probe.port_no, sig.time_ms, sig.nonce)
        if not hmac.compare_digest(want, sig.mac):
            return "bad_mac"
        age_s = wall_s - sig.time_ms / 1000.0
        if age_s > auth.max_age_s + auth.skew_s or age_s < -auth.skew_s:
            return "stale"
        self._forget(wall_s)
        key = (probe.dpid, probe.port_no, sig.time_ms, sig.nonce)
        if key in self._seen:
            return "replayed"
        while len(self._seen) >= MAX_REMEMBERED:
            self._seen.pop(self._expiry.popleft()[1], None)
        self._seen[key] = (dpid, port_no)
        self._expiry.append((sig.time_ms / 1000.0 + auth.max_age_s + 2 * auth.skew_s, key))
        return None

    def _forget(self, wall_s: float) -> None:
        """Drop the probes that are stale by now (they are refused as stale before the cache
        is asked). Probes arrive about in the order they were signed, so the oldest expiry
        is at the left; one that arrives late expires a little late, which only keeps it
        longer."""
        while self._expiry and self._expiry[0][0] < wall_s:
            self._seen.pop(self._expiry.popleft()[1], None)

    def reject(self, reason: str, dpid: int, port_no: int, now: float) -> int | None:
        """Count one dropped frame. Returns None, or - when the port's last event is
        :data:`EVENT_INTERVAL_S` old or more (``now``: the core's clock) - how many frames
        the port dropped since its last event, this one included: record an event then."""
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        key = (dpid, port_no)
        last = self._last_event.get(key)
        if last is not None and now - last[0] < EVENT_INTERVAL_S:
            self._last_event[key] = (last[0], last[1] + 1)
            return None
        if len(self._last_event) >= MAX_REMEMBERED:
            self._last_event = {k: v for k, v in self._last_event.items()
                                if now - v[0] < EVENT_INTERVAL_S}
            if len(self._last_event) >= MAX_REMEMBERED:
                return None
        self._last_event[key] = (now, 0)
        return 1 + (last[1] if last is not None else 0)
