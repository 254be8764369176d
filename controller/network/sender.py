"""The sender: one thread that sends each Change to the switches, make-before-break.

For every Change, in the order the core returned them: phase 0 on every switch (each
switch's messages as one OpenFlow bundle ending with a barrier), wait for all phase-0 barrier
replies (bounded by the barrier timeout), then phase 1 (the ingress flows onto tunnels phase 0
made, when there are any) likewise, then phase 2 (deletes), wait for its barriers, then the
service's confirm (``core.confirm``). Each Change leaves a :class:`ChangeRecord` of its
timings. Switches are reached through a :class:`Transport` (the os-ken app implements it;
tests fake it).

A switch whose barrier does not come back within the bound is *stalled*: the service
forgets its flow table (``core.desync``, so no intent through it is confirmed) and reads it
again until it answers; meanwhile the sender sends it nothing and waits for it no more (one
stuck switch costs the network one barrier timeout, not one per phase and change). The
Change it stalled is confirmed for the switches that answered. The Change that reconciles the
switch's table once read (``Ticket.unstall``) ends the stall. A switch that answers the
barrier but refused a FlowMod before it (a full table, an unsupported match) is treated the
same: what it holds is not the plan, so it is read and reconciled until it takes the change.

Every write to a switch passes a :class:`WriteGate`. A standalone controller's gate lets
everything through; a cluster member's lets writes reach only the connections the service
opened it for (switches that confirmed this member as master). Messages for a switch the gate
holds shut are dropped silently: the core's view of a standby switch is its plan, so its
intents are confirmed as the master installs them.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from controller.network.change import Change, ChangeKind

if TYPE_CHECKING:
    from controller.network.service import ControllerService

__all__ = ["BARRIER_TIMEOUT_S", "Barrier", "ChangeRecord", "ChangeSender", "Reply", "Ticket",
           "Transport", "WriteGate"]

log = logging.getLogger("controller.network.service")
"""The sender logs under the service's name: it is the service's thread."""

BARRIER_TIMEOUT_S = 5.0
"""How long the sender waits for the barrier replies of one phase before giving up on it."""


class Barrier(Protocol):
    """The wait for one barrier: ``wait`` is True once answered with everything before it
    applied; False on timeout, a lost connection, or a refused FlowMod (then ``error``, if
    the waiter has one, says which)."""

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
    """what set the Change off (``kind.restoration``: it restores routes after a failure)"""
    queued_ms: float = 0.0
    phase0_ms: float = 0.0
    """the makes that depend on nothing else in the change (new tunnels, destinations,
    intents whose old path broke, intents on tunnels already there)"""
    phase1_ms: float = 0.0
    """ingress flows moving live traffic onto tunnels made in phase 0 (0 when none)"""
    phase2_ms: float = 0.0
    event_to_phase1_ms: float = 0.0
    """from the event that caused it (port status, API call) to every phase-1 barrier
    reply (phase 0 included): the new flows are in place and traffic runs on them"""
    event_to_confirm_ms: float = 0.0
    """from the event that caused it to confirm (old flows removed too)"""
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


class _Stopping(Exception):
    """The sender was stopped while it was sending a Change."""


class ChangeSender:
    """One thread that sends Changes strictly in submission order (see the module doc)."""

    def __init__(self, service: ControllerService, transport: Transport,
                 barrier_timeout_s: float = BARRIER_TIMEOUT_S, keep: int = 10_000,
                 gate: WriteGate | None = None) -> None:
        self._service = service
        self._transport = transport
        self._gate = gate if gate is not None else WriteGate(enforced=False)
        self._barrier_timeout_s = barrier_timeout_s
        self._queue: queue.Queue[Ticket | None] = queue.Queue()
        self._busy = 0
        self._busy_lock = threading.Condition()
        self.records: collections.deque[ChangeRecord] = collections.deque(maxlen=keep)
        self._stalled: dict[int, Any] = {}
        """dpid -> the connection that did not answer a barrier in time: sent nothing until
        a ticket unstalls it (only the sender thread touches it)"""
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
        if self._stopping.is_set():
            ticket.done.set()  # never sent: the controller is stopping
            return ticket
        with self._busy_lock:
            self._busy += 1
        self._queue.put(ticket)
        return ticket

    def idle(self, timeout_s: float) -> bool:
        """Wait until every submitted Change is done; False on timeout."""
        with self._busy_lock:
            return self._busy_lock.wait_for(lambda: self._busy == 0, timeout=timeout_s)

    def stop(self, timeout_s: float = 2.0) -> bool:
        """Stop sending: the Change being sent sends no further phase and gives up its
        barrier waits as soon as they wake (the transport wakes them when it stops), queued
        and later Changes are not sent (their tickets are done, so nobody waits for them),
        then the thread ends. False when it did not end within ``timeout_s``."""
        self._stopping.set()
        self._queue.put(None)
        self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            ticket = self._queue.get()
            if ticket is None:
                break
            self._finish(ticket)
        # submitted between stop's check and its end marker: done, not sent
        while True:
            try:
                ticket = self._queue.get_nowait()
            except queue.Empty:
                return
            if ticket is not None:
                self._finish(ticket)

    def _finish(self, ticket: Ticket) -> None:
        """Send ``ticket``'s Change (unless stopping) and mark it done, whatever happened."""
        try:
            if not self._stopping.is_set():
                self._apply(ticket)
        except _Stopping:
            log.info(f"change {ticket.change.token} ({ticket.change.cause}) not finished: "
                     "the controller is stopping",
                     extra={"event": "change_abandoned", "token": ticket.change.token})
        except Exception:  # noqa: BLE001 - the sender must survive one bad change
            log.exception(f"change {ticket.change.token} failed",
                          extra={"event": "change_failed"})
        finally:
            ticket.done.set()
            ticket.change.emit_logs()  # the intents confirmed: after the waiters woke
            with self._busy_lock:
                self._busy -= 1
                self._busy_lock.notify_all()

    def _phase(self, ticket: Ticket, phase: Mapping[int, list[Any]], name: str
               ) -> tuple[float, list[int]]:
        t0 = time.perf_counter()
        if self._stopping.is_set():
            raise _Stopping
        waiters: list[tuple[int, Barrier]] = []
        for dpid, msgs in phase.items():
            handle = ticket.handles.get(dpid)
            if handle is not None and self._stalled.get(dpid) is handle:
                # its table is unknown (the core forgot it); it is read and reconciled
                # when it answers again, so these messages are not needed and not waited for
                log.info(f"change {ticket.change.token} {name}: switch {dpid:#x} is not "
                         f"answering; {len(msgs)} messages held back until it is read again",
                         extra={"dpid": dpid, "event": "change_skip_stalled",
                                "token": ticket.change.token})
                continue
            if handle is None or not self._transport.alive(handle):
                # the switch went away after the change was computed: the core forgot its
                # view and reconciles it when it comes back
                log.info(f"change {ticket.change.token} {name}: switch {dpid:#x} gone; "
                         f"skipping {len(msgs)} messages",
                         extra={"dpid": dpid, "event": "change_skip"})
                continue
            # checked when the phase leaves, not when the change was computed: a switch
            # demoted meanwhile gets nothing more
            sent, w = self._gate.send(self._transport, dpid, handle, msgs)
            if not sent:
                log.debug(f"change {ticket.change.token} {name}: switch {dpid:#x} is not "
                          f"mastered here; {len(msgs)} messages not sent",
                          extra={"dpid": dpid, "event": "change_not_master"})
                continue
            if w is not None:
                waiters.append((dpid, w))
        deadline = time.monotonic() + self._barrier_timeout_s
        timed_out = []
        refused: dict[int, str] = {}
        for dpid, w in waiters:
            if not w.wait(max(0.0, deadline - time.monotonic())):
                error = getattr(w, "error", None)
                if error is not None:
                    refused[dpid] = error
                else:
                    timed_out.append(dpid)
        if self._stopping.is_set():
            raise _Stopping  # the waits were cut short: no switch is to blame
        if timed_out:
            log.error(f"change {ticket.change.token} {name}: no barrier reply within "
                      f"{self._barrier_timeout_s:g} s from "
                      + ", ".join(f"{d:#x}" for d in timed_out),
                      extra={"event": "barrier_timeout", "token": ticket.change.token})
        for dpid, error in refused.items():
            log.error(f"change {ticket.change.token} {name}: switch {dpid:#x} refused part "
                      f"of it ({error}); its table is read again and reconciled",
                      extra={"dpid": dpid, "event": "change_refused",
                             "token": ticket.change.token})
        timed_out.extend(refused)
        if timed_out:
            stalled = {d: ticket.handles[d] for d in timed_out}
            self._stalled.update(stalled)
            self._service._unconfirmed(stalled)
        return (time.perf_counter() - t0) * 1000.0, timed_out

    def _apply(self, ticket: Ticket) -> None:
        change = ticket.change
        t_start = time.perf_counter()
        for dpid, handle in ticket.unstall.items():
            if self._stalled.get(dpid) is handle:
                del self._stalled[dpid]
        rec = ChangeRecord(token=change.token, cause=change.cause, kind=change.kind,
                           messages=change.message_count(), switches=len(change.dpids),
                           compute_ms=change.compute_ms,
                           queued_ms=(t_start - ticket.t_queued) * 1000.0)
        rec.phase0_ms, late0 = self._phase(ticket, change.phase0, "phase0")
        late1: list[int] = []
        if change.phase1:
            rec.phase1_ms, late1 = self._phase(ticket, change.phase1, "phase1")
        rec.event_to_phase1_ms = (time.perf_counter() - ticket.t_event) * 1000.0
        change.emit_logs()
        rec.phase2_ms, late2 = self._phase(ticket, change.phase2, "phase2")
        rec.timed_out = tuple(sorted(set(late0) | set(late1) | set(late2)))
        # a switch that timed out is unsynced in the core now, so the intents through it
        # stay pending; the others' flows are confirmed
        confirmed = self._service._confirm(change)
        rec.confirmed = tuple(i.id for i in confirmed)
        rec.event_to_confirm_ms = (time.perf_counter() - ticket.t_event) * 1000.0
        ticket.record = rec
        self.records.append(rec)
        if not change.empty or rec.confirmed:
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
                            "messages": rec.messages, "switches": rec.switches})
