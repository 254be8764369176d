"""The sender: one thread that sends each Change to the switches, make-before-break,
without one switch's wait holding back the others.

Each Change goes out in its phases (``change.phases()``): phase 0 on every switch (each
switch's messages as one OpenFlow bundle ending with a barrier), phase 1 (the ingress flows
and heads onto tunnels phase 0 made, when there are any) to a switch once the phase-0
barriers of the switches its flows' traffic crosses (``change.phase1_after``) are answered
(or given up, below), without waiting for the rest of phase 0; phase 2 (deletes) once every
phase-0 and phase-1 barrier is (and, with ``delete_delay_s``, that much later: see below),
then the service's confirm (``core.confirm``). Each Change
leaves a :class:`ChangeRecord` of its timings. Switches are reached through a
:class:`Transport` (the os-ken app implements it; tests fake it).

Ordering is per switch. Every Change queues its messages for a switch, phase by phase, behind
those of the Changes submitted before it, and a switch is sent its next phase only once it
has answered the barrier of the one before (one phase outstanding per switch): on each switch
the messages of Change *n* are applied before those of Change *n+1*, in submission order, and
a bundle the switch refuses is sent again one by one before anything later. Changes are not
otherwise ordered among themselves: while a slow switch has not answered Change *n*, Change
*n+1* goes out to, is answered by and is confirmed on every switch that Change *n* is done
with. A Change that needs the slow switch, or a switch whose queue holds a later phase of
Change *n*, waits for it. Confirming is held back the same way: a Change confirmed while an
earlier one is still in flight does not mark ``installed`` an intent whose path crosses a
switch the earlier one is not done with; that intent is confirmed when the earlier one ends.
:meth:`ChangeSender.backlog` says which switches are behind and since when (the API's
``pending_changes`` and ``behind_s`` of a switch).

A software switch answers a barrier once its flow tables hold the change, but Open vSwitch
moves packets by a cache of datapath flows that its revalidator threads bring up to date
after that, in the background: deleting the old flows right after the new ones are confirmed
drops the packets the cache still sends the old way (on the 197-switch Cogentco lab, 4-57
pings at 10 ms a cut, against 1-3 with the deletes held 500 ms). ``delete_delay_s`` holds
each Change's deletes that long after its makes are answered; 0 sends them at once. The hold
never delays another Change: a switch whose queue holds a later Change behind the held
deletes is sent them at once (the order on the switch stays that of submission), so a link
flapping ten times a second costs no more than without the hold, and only a quiet switch
keeps its old flows that long.

How long a barrier may take follows each switch's measured round trips
(:class:`~controller.network.rtt.RoundTrips`: smoothed round trip plus four deviations, at
least ``barrier_timeout_s``, at most ``barrier_timeout_max_s``, doubled after a wait that ran
out): a switch that is slow because the whole control channel is loaded is waited for, not
given up on and read again, which would load it more. A switch whose barrier does not come
back within that wait is *stalled*: the service
forgets its flow table (``core.desync``, so no intent through it is confirmed) and reads it
again until it answers; meanwhile the sender sends it nothing and waits for it no more (one
stuck switch costs the Changes that need it one barrier timeout, not one per phase and
change). The Change it stalled is confirmed for the switches that answered. The Change that
reconciles the switch's table once read (``Ticket.unstall``) ends the stall, and what earlier
Changes still queued for the switch is dropped (the reconciliation supersedes it). A switch
that answers the barrier but refused a FlowMod before it (a full table, an unsupported match)
is treated the same: what it holds is not the plan, so it is read and reconciled until it
takes the change.

Every write to a switch passes a :class:`WriteGate`. A standalone controller's gate lets
everything through; a cluster member's lets writes reach only the connections the service
opened it for (switches that confirmed this member as master). Messages for a switch the gate
holds shut are dropped silently: the core's view of a standby switch is its plan, so its
intents are confirmed as the master installs them.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from controller.network.change import Change, ChangeKind
from controller.network.rtt import RoundTrips

if TYPE_CHECKING:
    from controller.network.flows import FlowEntry
    from controller.network.intents import Intent
    from controller.network.service import ControllerService

__all__ = ["BARRIER_TIMEOUT_MAX_S", "BARRIER_TIMEOUT_S", "Barrier", "ChangeRecord",
           "ChangeSender", "Reply", "Ticket", "Transport", "WriteGate"]

log = logging.getLogger("controller.network.service")
"""The sender logs under the service's name: it is the service's thread."""

BARRIER_TIMEOUT_S = 5.0
"""The least the sender waits for a switch's barrier reply before giving up on it; it waits
longer for a switch whose replies take longer (:class:`~controller.network.rtt.RoundTrips`)."""

BARRIER_TIMEOUT_MAX_S = 60.0
"""The most the sender waits for one barrier reply, however slow the switch has been."""


class Barrier(Protocol):
    """The wait for one barrier: ``wait`` is True once answered with everything before it
    applied; False on timeout, a lost connection, or a refused FlowMod (then ``error``, if
    the waiter has one, says which). A waiter may also offer ``notify(callback)``: the
    callback runs (in any thread) once the wait is over, so the sender need not poll it."""

    def wait(self, timeout: float | None = None) -> bool: ...


class Reply(Protocol):
    """A multipart reply being collected. ``wait`` is True once complete: every part is in
    ``parts`` (``error`` None), or the request failed (``error`` says why)."""

    parts: list[Any]
    error: str | None

    def wait(self, timeout: float | None = None) -> bool: ...

    def cancel(self) -> None: ...


class Transport(Protocol):
    """How the service reaches switches. ``handle`` is whatever the app uses for one switch
    connection (an os-ken ``Datapath``)."""

    def send(self, handle: Any, msgs: Sequence[Any]) -> Barrier | None:
        """Send ``msgs`` in order on ``handle``; return a waiter for the barrier that ends
        them (None when the list has no barrier or the connection is gone)."""

    def alive(self, handle: Any) -> bool: ...

    def request(self, handle: Any, msg: Any) -> Reply | None:
        """Send the multipart request ``msg``; the reply collects every part (matched by
        xid). None when the connection is gone."""


class WriteGate:
    """The one place writes to switches pass (FlowMods, meter and group mods, packet-outs).

    Not ``enforced`` (a standalone controller): every connection may be written. ``enforced``
    (a cluster member): only the connection :meth:`open` named for a switch, until
    :meth:`close`. :meth:`send` checks and hands the messages to the transport under a lock
    of the switch, so after :meth:`close` and :meth:`drain` return nothing more leaves for
    it (a write that passed the check before the close is handed over before ``drain``
    returns). Opening, closing and checking are dict operations, atomic under the GIL."""

    def __init__(self, enforced: bool) -> None:
        self.enforced = enforced
        self._open: dict[int, Any] = {}
        """dpid -> the connection (handle) writes may go to"""
        self._locks: dict[int, threading.Lock] = {}

    def _lock(self, dpid: int) -> threading.Lock:
        lock = self._locks.get(dpid)
        if lock is None:
            lock = self._locks.setdefault(dpid, threading.Lock())  # atomic: one lock wins
        return lock

    def allows(self, dpid: int, handle: Any) -> bool:
        """Writes to connection ``handle`` of switch ``dpid`` may leave now."""
        return not self.enforced or (handle is not None and self._open.get(dpid) is handle)

    def open(self, dpid: int, handle: Any) -> None:
        """Let writes reach ``handle`` (the switch confirmed this controller as master)."""
        self._open[dpid] = handle

    def close(self, dpid: int) -> bool:
        """Stop writes to switch ``dpid``; True when they were allowed until now. Call
        :meth:`drain` (outside any lock a sender might wait for) to wait for a write that
        passed the check just before."""
        return self._open.pop(dpid, None) is not None

    def drain(self, dpids: Sequence[int], timeout_s: float) -> list[int]:
        """Wait (at most ``timeout_s`` for all) until no write to ``dpids`` is being handed
        over; the dpids still busy at the deadline (a switch whose send queue is full)."""
        deadline = time.monotonic() + timeout_s
        late = []
        for dpid in dpids:
            lock = self._locks.get(dpid)
            if lock is None:
                continue  # never written to
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                lock.release()
            else:
                late.append(dpid)
        return late

    def send(self, transport: Transport, dpid: int, handle: Any, msgs: Sequence[Any]
             ) -> tuple[bool, Barrier | None]:
        """Send ``msgs`` to ``handle`` if the gate allows it: (sent, the barrier waiter
        ``transport.send`` returned)."""
        if not self.enforced:
            return True, transport.send(handle, msgs)
        with self._lock(dpid):
            if not self.allows(dpid, handle):
                return False, None
            return True, transport.send(handle, msgs)


@dataclass
class ChangeRecord:
    """Timings of one Change, as logged (``event=change``) and kept for benchmarks."""

    token: int
    cause: str
    messages: int
    switches: int
    compute_ms: float
    kind: ChangeKind = ChangeKind.TICK
    prepare_ms: float = 0.0
    """from the event to the compute's start (a batch from the API: registering its
    intents); 0 when the Change was not computed by the core's replanning"""
    """what set the Change off (``kind.restoration``: it restores routes after a failure)"""
    queued_ms: float = 0.0
    phase0_ms: float = 0.0
    """the makes that depend on nothing else in the change (new tunnels, destinations,
    intents whose old path broke, intents on tunnels already there)"""
    phase1_ms: float = 0.0
    """ingress flows and heads moving live traffic onto tunnels made in phase 0 (0 when
    none): from the last phase-0 barrier reply to the last phase-1 one (a switch whose
    phase-0 switches answered earlier was sent its phase 1 and may have answered it within
    phase 0)"""
    phase2_ms: float = 0.0
    event_to_phase1_ms: float = 0.0
    """from the event that caused it (port status, API call) to every phase-1 barrier
    reply (phase 0 included): the new flows are in place and traffic runs on them"""
    event_to_confirm_ms: float = 0.0
    """from the event that caused it to confirm (old flows removed too)"""
    confirm_ms: float = 0.0
    """the confirmation itself, once every barrier is answered (marking the intents
    installed), within ``event_to_confirm_ms``"""
    confirmed: tuple[int, ...] = ()
    timed_out: tuple[int, ...] = ()
    """dpids whose barrier did not come back within the bound"""


@dataclass
class Ticket:
    change: Change
    handles: dict[int, Any]
    t_event: float
    t_queued: float
    done: threading.Event = field(default_factory=threading.Event)
    record: ChangeRecord | None = None
    unstall: Mapping[int, Any] = field(default_factory=dict)
    """dpid -> connection whose stall this Change ends (it reconciles the table read from
    the switch once it answered again)"""
    queued_at: float = field(default_factory=time.monotonic)
    """``time.monotonic()`` of the submission (how long a switch is behind)"""


class _Flight:
    """One Change being sent: which phase it is in and what that phase still waits for."""

    __slots__ = ("after", "early", "hold_until", "late", "made", "phase_index", "phase_t0",
                 "phases", "rec", "skip", "ticket", "unsent", "waiting", "waiting_next")

    def __init__(self, ticket: Ticket, rec: ChangeRecord) -> None:
        self.ticket = ticket
        self.rec = rec
        self.phases = ticket.change.phases()
        self.phase_index = -1
        self.phase_t0 = 0.0
        self.unsent: set[int] = set()
        """dpids of the current phase not sent yet (queued behind an earlier Change)"""
        self.waiting: set[int] = set()
        """dpids of the current phase sent, their barrier not answered yet"""
        self.skip: set[int] = set()
        """dpids whose queued messages were dropped (a reconciliation superseded them)"""
        self.late: set[int] = set()
        """dpids that timed out or refused in any phase so far"""
        self.made = False
        """every phase before the deletes is answered (the new flows carry traffic)"""
        self.after = ticket.change.phase1_after
        """phase-1 dpid -> the phase-0 dpids it waits for (absent: all of them)"""
        self.early: set[int] = set()
        """dpids of the next phase (phase 1) sent while the current one (phase 0) is not
        over: their phase-0 switches were done"""
        self.waiting_next: set[int] = set()
        """dpids of ``early`` whose barrier is not answered yet"""
        self.hold_until = 0.0
        """``time.monotonic()`` before which the current phase (the deletes) is not sent"""

    @property
    def token(self) -> int:
        return self.ticket.change.token

    def dpids_ahead(self) -> set[int]:
        """Switches this Change is not done with (this phase and the ones after)."""
        out = self.unsent | self.waiting | self.waiting_next
        for k, (_, phase) in enumerate(self.phases[self.phase_index + 1:]):
            out.update(d for d in phase if d not in self.skip
                       and not (k == 0 and d in self.early))
        return out

    def ready(self, dpid: int, pi: int, pressed: bool = False) -> bool:
        """Phase ``pi`` of this Change may go to ``dpid`` now (its earlier phases there are
        answered: the switch's queue is in order): ``pi`` is the current phase (held deletes
        once their hold is over, or at once when ``pressed``: a later Change waits behind
        them), or it is phase 1 while phase 0 is current and every phase-0 switch ``dpid``
        waits for is done (sent and answered, given up, or skipped)."""
        current = self.phase_index
        if pi == current:
            return pressed or self.hold_until <= time.monotonic()
        if pi != current + 1 or current < 0 or self.phases[pi][0] != "phase1" \
                or self.phases[current][0] != "phase0":
            return False
        after = self.after.get(dpid)
        return after is not None and after.isdisjoint(self.unsent) \
            and after.isdisjoint(self.waiting)


@dataclass
class _Outstanding:
    """The one phase a switch has been sent and not answered yet."""

    flight: _Flight
    barrier: Barrier
    deadline: float
    handle: Any
    sent_at: float
    phase: int
    """its index in ``flight.phases``"""


class ChangeSender:
    """One thread that sends Changes make-before-break, in order on each switch, without one
    switch's wait holding back the others (see the module doc)."""

    def __init__(self, service: ControllerService, transport: Transport,
                 barrier_timeout_s: float = BARRIER_TIMEOUT_S, keep: int = 10_000,
                 gate: WriteGate | None = None,
                 barrier_timeout_max_s: float = BARRIER_TIMEOUT_MAX_S,
                 delete_delay_s: float = 0.0) -> None:
        if delete_delay_s < 0:
            raise ValueError(f"delete_delay_s must be >= 0, not {delete_delay_s!r}")
        self._service = service
        self.delete_delay_s = delete_delay_s
        """how long a Change's deletes wait after its makes are answered (module doc)"""
        self._transport = transport
        self._gate = gate if gate is not None else WriteGate(enforced=False)
        self.round_trips = RoundTrips(barrier_timeout_s,
                                      max(barrier_timeout_s, barrier_timeout_max_s))
        """each switch's barrier round trips: how long its next barrier is waited for"""
        self._inbox: collections.deque[Ticket] = collections.deque()
        self._inbox_lock = threading.Lock()
        self._wake = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Condition()
        self.records: collections.deque[ChangeRecord] = collections.deque(maxlen=keep)
        self._stalled: dict[int, Any] = {}
        """dpid -> the connection that did not answer a barrier in time: sent nothing until
        a ticket unstalls it (only the sender thread touches it)"""
        self._flights: list[_Flight] = []
        """Changes being sent, in submission order (sender thread only, as below)"""
        self._queues: dict[int, collections.deque[tuple[_Flight, int]]] = {}
        """dpid -> (Change, phase index) still to send it, in the order they go"""
        self._outstanding: dict[int, _Outstanding] = {}
        """dpid -> the phase sent to it whose barrier is not answered yet (at most one)"""
        self._partial: list[_Flight] = []
        """done Changes confirmed while an earlier one was in flight: confirmed again when
        one ends (intents through the switches it was not done with were held back)"""
        self._backlog: dict[int, tuple[int, float]] = {}
        """see :meth:`backlog` (replaced whole by the sender thread; read from any thread)"""
        self._stopping = threading.Event()
        """set by :meth:`stop`: nothing more is sent and no barrier is waited for"""
        self._thread = threading.Thread(target=self._run, name="cpn-change-sender", daemon=True)
        self._thread.start()

    def submit(self, change: Change, handles: dict[int, Any], t_event: float,
               unstall: Mapping[int, Any] | None = None) -> Ticket:
        """Queue ``change`` (``handles``: dpid -> connection, as they were when it was
        computed). ``unstall``: switches whose stall ends when this Change starts."""
        ticket = Ticket(change, handles, t_event, time.perf_counter(),
                        unstall=dict(unstall or {}))
        with self._inbox_lock:
            if self._stopping.is_set():
                ticket.done.set()  # never sent: the controller is stopping
                return ticket
            with self._busy_lock:
                self._busy += 1
            self._inbox.append(ticket)
        self._wake.set()
        return ticket

    def idle(self, timeout_s: float) -> bool:
        """Wait until every submitted Change is done; False on timeout."""
        with self._busy_lock:
            return self._busy_lock.wait_for(lambda: self._busy == 0, timeout=timeout_s)

    def backlog(self) -> dict[int, tuple[int, float]]:
        """The switches behind: dpid -> (how many phases of Changes in flight are still to
        be sent to it or answered by it, ``time.monotonic()`` since when the oldest of them
        waits for it). Empty when every switch has answered everything."""
        return self._backlog

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop sending: the Changes in flight send no further phase and give up their
        barrier waits, queued and later Changes are not sent (their tickets are done, so
        nobody waits for them), then the thread ends. False when it did not end within
        ``timeout_s``."""
        with self._inbox_lock:
            self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    # -- the sender thread ------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self._sleep_s())
            self._wake.clear()
            if self._stopping.is_set():
                self._abandon()
                return
            try:
                self._round()
            except Exception:  # noqa: BLE001 - the sender must survive one bad change
                log.exception("change sender round failed; the changes in flight are given "
                              "up", extra={"event": "change_failed"})
                for flight in list(self._flights):
                    self._drop(flight)
                self._queues.clear()
                self._outstanding.clear()
                self._backlog = {}

    def _sleep_s(self) -> float | None:
        """Until the next barrier deadline (None: until woken). A barrier that cannot call
        back when it is over (a test's fake) is looked at every 5 ms."""
        now = time.monotonic()
        held = [f.hold_until for f in self._flights if f.hold_until > now]
        if not self._outstanding and not held:
            return None
        if any(getattr(o.barrier, "notify", None) is None for o in self._outstanding.values()):
            return 0.005
        deadline = min([o.deadline for o in self._outstanding.values()] + held)
        return max(0.0, deadline - now)

    def _round(self) -> None:
        with self._inbox_lock:
            new, self._inbox = list(self._inbox), collections.deque()
        for ticket in new:
            self._start(ticket)
        # bounded: every pass answers a barrier, sends a phase or moves a Change on, and
        # there are finitely many of each
        progressed = True
        while progressed:
            progressed = self._answered()
            for flight in [f for f in self._flights if not f.unsent and not f.waiting]:
                self._next_phase(flight)
                progressed = True
            progressed = self._pump() or progressed
        self._publish_backlog()

    def _start(self, ticket: Ticket) -> None:
        change = ticket.change
        for dpid, handle in ticket.unstall.items():
            if self._stalled.get(dpid) is handle:
                # what earlier Changes still hold for it is stale: its table was read and
                # this Change reconciles it
                for flight, pi in self._queues.pop(dpid, ()):
                    flight.skip.add(dpid)
                    if pi == flight.phase_index:
                        flight.unsent.discard(dpid)
                del self._stalled[dpid]
        rec = ChangeRecord(token=change.token, cause=change.cause, kind=change.kind,
                           messages=change.message_count(), switches=len(change.dpids),
                           compute_ms=change.compute_ms,
                           prepare_ms=max(0.0, (change.compute_started - ticket.t_event)
                                          * 1000.0) if change.compute_started else 0.0,
                           queued_ms=(time.perf_counter() - ticket.t_queued) * 1000.0)
        flight = _Flight(ticket, rec)
        self._flights.append(flight)
        # its place on every switch, behind the Changes before it, phase by phase
        for pi, (_, phase) in enumerate(flight.phases):
            for dpid in phase:
                self._queues.setdefault(dpid, collections.deque()).append((flight, pi))

    def _next_phase(self, flight: _Flight) -> None:
        """The flight's current phase is answered: record it, then start the next or end."""
        now = time.perf_counter()
        if flight.phase_index >= 0:
            name = flight.phases[flight.phase_index][0]
            setattr(flight.rec, f"{name}_ms", (now - flight.phase_t0) * 1000.0)
        flight.phase_index += 1
        more = flight.phase_index < len(flight.phases)
        if not flight.made and (not more or flight.phases[flight.phase_index][0] == "phase2"):
            flight.made = True  # every make is answered: traffic runs on the new flows
            flight.rec.event_to_phase1_ms = (now - flight.ticket.t_event) * 1000.0
            flight.ticket.change.emit_logs()
        if not more:
            self._end(flight)
            return
        flight.phase_t0 = now
        flight.hold_until = 0.0
        flight.unsent = {d for d in flight.phases[flight.phase_index][1]
                         if d not in flight.skip and d not in flight.early}
        if self.delete_delay_s and flight.unsent \
                and flight.phases[flight.phase_index][0] == "phase2":
            # the makes are answered; the switches' datapath caches catch up meanwhile
            flight.hold_until = time.monotonic() + self.delete_delay_s
            flight.phase_t0 = now + self.delete_delay_s
        flight.waiting, flight.waiting_next = flight.waiting_next, set()
        flight.early = set()

    def _pump(self) -> bool:
        """Send each free switch the phase at the head of its queue when that Change has
        reached it; True if any left. The switches with the most messages first: the
        switch with the most to apply sets the pace of a phase."""
        sent_any = False
        free = []
        for dpid, queue_ in self._queues.items():
            if dpid not in self._outstanding:
                flight, pi = queue_[0]
                free.append((-len(flight.phases[pi][1][dpid]), dpid))
        free.sort()
        for _, dpid in free:
            queue_ = self._queues[dpid]
            while queue_ and dpid not in self._outstanding:
                flight, pi = queue_[0]
                if not flight.ready(dpid, pi, pressed=len(queue_) > 1):
                    break  # an earlier phase of that Change is not answered yet
                queue_.popleft()
                if flight.hold_until:
                    # held deletes pressed out early: their phase started now at the latest
                    flight.phase_t0 = min(flight.phase_t0, time.perf_counter())
                if pi == flight.phase_index:
                    flight.unsent.discard(dpid)
                else:
                    flight.early.add(dpid)
                self._send(flight, dpid, pi)
                sent_any = True
            if not queue_:
                del self._queues[dpid]
        return sent_any

    def _send(self, flight: _Flight, dpid: int, pi: int) -> None:
        ticket = flight.ticket
        name, phase = flight.phases[pi]
        msgs = phase[dpid]
        handle = ticket.handles.get(dpid)
        token = ticket.change.token
        if handle is not None and self._stalled.get(dpid) is handle:
            # its table is unknown (the core forgot it); it is read and reconciled when it
            # answers again, so these messages are not needed and not waited for
            log.info(f"change {token} {name}: switch {dpid:#x} is not answering; "
                     f"{len(msgs)} messages held back until it is read again",
                     extra={"dpid": dpid, "event": "change_skip_stalled", "token": token})
            return
        if handle is None or not self._transport.alive(handle):
            # the switch went away after the change was computed: the core forgot its view
            # and reconciles it when it comes back
            log.info(f"change {token} {name}: switch {dpid:#x} gone; skipping "
                     f"{len(msgs)} messages", extra={"dpid": dpid, "event": "change_skip"})
            return
        # checked when the phase leaves, not when the change was computed: a switch demoted
        # meanwhile gets nothing more
        sent, w = self._gate.send(self._transport, dpid, handle, msgs)
        if not sent:
            log.debug(f"change {token} {name}: switch {dpid:#x} is not mastered here; "
                      f"{len(msgs)} messages not sent",
                      extra={"dpid": dpid, "event": "change_not_master"})
            return
        if w is None:
            return
        now = time.monotonic()
        self._outstanding[dpid] = _Outstanding(flight, w, now + self.round_trips.wait_s(dpid),
                                               handle, now, pi)
        (flight.waiting if pi == flight.phase_index else flight.waiting_next).add(dpid)
        notify = getattr(w, "notify", None)
        if notify is not None:
            notify(self._wake.set)

    def _answered(self) -> bool:
        """Collect the barriers answered, refused or out of time; True if any."""
        now = time.monotonic()
        over = []
        for dpid, o in self._outstanding.items():
            if o.barrier.wait(0):
                over.append((dpid, True))
            elif (getattr(o.barrier, "error", None) is not None or now >= o.deadline
                  or _gave_up(o.barrier)):
                over.append((dpid, False))
        stalled: dict[int, Any] = {}
        for dpid, ok in over:
            o = self._outstanding.pop(dpid)
            flight = o.flight
            if o.phase == flight.phase_index:
                flight.waiting.discard(dpid)
            else:
                flight.waiting_next.discard(dpid)
            if ok:
                self.round_trips.sample(dpid, now - o.sent_at)
                continue
            token, name = flight.token, flight.phases[o.phase][0]
            error = getattr(o.barrier, "error", None)
            if error is not None:
                log.error(f"change {token} {name}: switch {dpid:#x} refused part of it "
                          f"({error}); its table is read again and reconciled",
                          extra={"dpid": dpid, "event": "change_refused", "token": token})
            elif _gave_up(o.barrier) and not self._transport.alive(o.handle):
                log.info(f"change {token} {name}: the connection to switch {dpid:#x} ended "
                         "before its barrier reply",
                         extra={"dpid": dpid, "event": "barrier_lost", "token": token})
            else:
                self.round_trips.expired(dpid)
                log.error(f"change {token} {name}: no barrier reply within "
                          f"{o.deadline - o.sent_at:.1f} s from {dpid:#x}",
                          extra={"dpid": dpid, "event": "barrier_timeout", "token": token})
            flight.late.add(dpid)
            stalled[dpid] = o.handle
        if stalled:
            self._stalled.update(stalled)
            self._service._unconfirmed(stalled)
        return bool(over)

    def _end(self, flight: _Flight) -> None:
        """Every phase is answered: confirm (holding back the intents through switches an
        earlier Change in flight is not done with) and wake whoever waits."""
        self._flights.remove(flight)
        rec = flight.rec
        rec.timed_out = tuple(sorted(flight.late))
        try:
            # a switch that timed out is unsynced in the core now, so the intents through it
            # stay pending; the others' flows are confirmed
            t0 = time.perf_counter()
            rec.confirmed = tuple(i.id for i in self._confirm(flight))
            t1 = time.perf_counter()
            rec.confirm_ms = (t1 - t0) * 1000.0
            rec.event_to_confirm_ms = (t1 - flight.ticket.t_event) * 1000.0
            flight.ticket.record = rec
            self.records.append(rec)
            self._log(flight)
        finally:
            self._done(flight)
        # Changes done earlier may now confirm what they held back for this one
        for later in list(self._partial):
            more = self._confirm(later)
            if more:
                later.rec.confirmed += tuple(i.id for i in more)
                later.ticket.change.emit_logs()

    def _confirm(self, flight: _Flight) -> list[Intent]:
        hold: dict[int, list[FlowEntry] | None] = {}
        for f in self._flights:
            if f.token < flight.token:
                change = f.ticket.change
                for dpid in f.dpids_ahead():
                    entries = [*change.adds.get(dpid, ()), *change.deletes.get(dpid, ())]
                    held = hold.get(dpid, [])
                    hold[dpid] = None if held is None or not entries else held + entries
        if flight in self._partial:
            if not hold:
                self._partial.remove(flight)
        elif hold:
            self._partial.append(flight)
        return self._service._confirm(flight.ticket.change, hold)

    def _log(self, flight: _Flight) -> None:
        change, rec = flight.ticket.change, flight.rec
        if change.empty and not rec.confirmed:
            return
        log.info(f"change {change.token} ({change.cause}): {rec.messages} messages to "
                 f"{rec.switches} switches, compute {rec.compute_ms:.1f} ms, "
                 f"phase0 {rec.phase0_ms:.1f} ms, "
                 + (f"phase1 {rec.phase1_ms:.1f} ms, " if change.phase1 else "")
                 + f"phase2 {rec.phase2_ms:.1f} ms, "
                 f"{len(rec.confirmed)} intents confirmed",
                 extra={"event": "change", "token": change.token,
                        "duration_ms": round(rec.event_to_confirm_ms, 3),
                        "compute_ms": round(rec.compute_ms, 3),
                        "phase0_ms": round(rec.phase0_ms, 3),
                        "phase1_ms": round(rec.phase1_ms, 3),
                        "phase2_ms": round(rec.phase2_ms, 3),
                        "queued_ms": round(rec.queued_ms, 3),
                        "prepare_ms": round(rec.prepare_ms, 3),
                        "confirm_ms": round(rec.confirm_ms, 3),
                        "messages": rec.messages, "switches": rec.switches})

    def _done(self, flight: _Flight) -> None:
        flight.ticket.done.set()
        flight.ticket.change.emit_logs()  # the intents confirmed: after the waiters woke
        with self._busy_lock:
            self._busy -= 1
            self._busy_lock.notify_all()

    def _drop(self, flight: _Flight) -> None:
        """Give up ``flight`` (stopping, or its round failed): done, not confirmed."""
        if flight in self._flights:
            self._flights.remove(flight)
        if flight in self._partial:
            self._partial.remove(flight)
        self._done(flight)

    def _abandon(self) -> None:
        with self._inbox_lock:
            new, self._inbox = list(self._inbox), collections.deque()
        for flight in list(self._flights):
            log.info(f"change {flight.token} ({flight.ticket.change.cause}) not finished: "
                     "the controller is stopping",
                     extra={"event": "change_abandoned", "token": flight.token})
            self._drop(flight)
        for ticket in new:
            ticket.done.set()  # never sent
            with self._busy_lock:
                self._busy -= 1
                self._busy_lock.notify_all()
        self._queues.clear()
        self._outstanding.clear()
        self._backlog = {}

    def _publish_backlog(self) -> None:
        now = time.monotonic()
        backlog: dict[int, tuple[int, float]] = {}
        for dpid, o in self._outstanding.items():
            backlog[dpid] = (1, o.sent_at)
        for dpid, queue_ in self._queues.items():
            n, since = backlog.get(dpid, (0, now))
            if n == 0:
                since = min((f.ticket.queued_at for f, _ in queue_), default=now)
            backlog[dpid] = (n + len(queue_), since)
        self._backlog = backlog


def _gave_up(barrier: Barrier) -> bool:
    """The waiter ended without an answer (the connection died, or the app stops)."""
    event = getattr(barrier, "event", None)
    return event is not None and bool(event.is_set())
