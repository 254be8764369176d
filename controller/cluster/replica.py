"""Operator state in a cluster: commit to etcd first, then every member applies the committed
changes in revision order.

A write on any member is validated against that member's applied state, committed in one etcd
transaction (intent ids by compare-and-swap on the counter) and acknowledged only after the
commit *and* after this member has applied it (so the answer shows the intent's state here).
Every member, the writer included, applies changes from one watch on the store
(:class:`Replica`), so all members add the same intents with the same ids in the same order
and compute the same plan: a new master adopts a switch's flows with zero FlowMods.

Compute steering's records are rebuilt from the store whenever a compute record changes;
its writes are conditional on the compute records this member has applied
(:class:`ReplicaStore`): a write computed from an older state loses with
:class:`~controller.errors.StaleWrite` and steering retries it on the newer state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from controller.errors import ClusterUnavailable, Conflict, CpnError, NotFound, StoreError

if TYPE_CHECKING:
    from controller.cluster.member import ClusterMember
    from controller.network.intents import Intent
    from controller.network.service import ControllerService, Ticket
    from controller.store.etcd import EtcdStore, StoreEvent
    from controller.topology.model import IntentSpec

__all__ = ["ClusterIntentOperations", "Replica", "ReplicaStore"]

log = logging.getLogger("controller.cluster")


class Replica:
    """Applies the store's committed changes to this member, in revision order, from one
    watch: intents to the service (one Change per watch response), compute records to compute
    steering (``on_compute``). Tracks the revision applied."""

    def __init__(self, store: EtcdStore, service: ControllerService) -> None:
        self.store = store
        self.service = service
        self.on_compute: Callable[[], None] | None = None
        """called (in the watch thread) after compute records changed"""
        self.operator_ids: set[int] = set()
        """ids of the intents that came from the store (operators), not the topology file"""
        self._applied = 0
        self._cond = threading.Condition()
        self._tickets: dict[int, Ticket] = {}
        self._watch: Any = None
        self._stopped = False

    @property
    def applied_revision(self) -> int:
        return self._applied

    def load(self) -> int:
        """Add the stored intents (before switches connect, as a lone controller does) and
        start watching from the revision they were read at; returns that revision."""
        snap = self.store.load()
        self._apply_intents([(i, s) for i, s in snap.intents], [])
        self._set_applied(snap.revision)
        log.info(f"loaded {len(snap.intents)} stored intents at revision {snap.revision}",
                 extra={"event": "intent_reload"})
        self._watch = self.store.watch(snap.revision + 1, self._on_events, self._on_error)
        return snap.revision

    def stop(self) -> None:
        self._stopped = True
        if self._watch is not None:
            self._watch.cancel()

    def _set_applied(self, revision: int) -> None:
        with self._cond:
            if revision > self._applied:
                self._applied = revision
                self._cond.notify_all()

    def wait_applied(self, revision: int, timeout_s: float) -> bool:
        """Wait until this member has applied ``revision``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._applied >= revision, timeout=timeout_s)

    def ticket(self, intent_id: int) -> Ticket | None:
        """The Change that last applied intent ``intent_id`` here (None: nothing to send)."""
        return self._tickets.get(intent_id)

    def _on_events(self, events: list[StoreEvent], revision: int) -> None:
        adds: list[tuple[int, IntentSpec]] = []
        removes: list[int] = []
        compute = False
        top = 0
        for ev in events:
            top = max(top, ev.revision)
            if ev.table == "intent":
                if ev.value is None:
                    adds = [(i, s) for i, s in adds if i != ev.key]
                    removes.append(int(ev.key))
                else:
                    adds.append((int(ev.key), ev.value))
            elif ev.table == "compute":
                compute = True
        try:
            self._apply_intents(adds, removes)
        except Exception:  # noqa: BLE001 - one bad record must not stop the member applying
            log.exception("applying intents from the store failed",
                          extra={"event": "apply_failed"})
        if compute and self.on_compute is not None:
            try:
                self.on_compute()
            except Exception:  # noqa: BLE001 - as above
                log.exception("applying compute records from the store failed",
                              extra={"event": "apply_failed"})
        self._set_applied(top)

    def _on_error(self, exc: Exception) -> None:
        if self._stopped:
            return
        log.error(f"the store's watch failed ({exc}); loading the state again",
                  extra={"event": "store_watch_error"})
        threading.Thread(target=self._reload, name="cpn-replica-reload", daemon=True).start()

    def _reload(self) -> None:
        """After a lost watch (a compacted revision): make the intents match the store."""
        for attempt in range(50):
            if self._stopped:
                return
            try:
                snap = self.store.load()
                break
            except StoreError as exc:
                log.warning(f"reload attempt {attempt + 1}: {exc}",
                            extra={"event": "store_watch_error"})
                time.sleep(0.2)
        else:
            return
        stored = dict(snap.intents)
        gone = [i for i in self.operator_ids if i not in stored]
        self._apply_intents(list(stored.items()), gone)
        if self.on_compute is not None:
            self.on_compute()
        self._set_applied(snap.revision)
        self._watch = self.store.watch(snap.revision + 1, self._on_events, self._on_error)

    def _apply_intents(self, adds: list[tuple[int, IntentSpec]], removes: list[int]) -> None:
        if not adds and not removes:
            return
        ids = {i for i, _ in adds} | set(removes)
        ticket = self.service.apply_intents(adds, removes)
        self.operator_ids.difference_update(removes)
        self.operator_ids.update(i for i, _ in adds)
        for i in ids:
            if ticket is not None:
                self._tickets[i] = ticket
            else:
                self._tickets.pop(i, None)


class ReplicaStore:
    """The store as compute steering uses it in a cluster: compute writes are conditional on
    the revision this member has applied (see the module docstring); everything else goes to
    the :class:`EtcdStore` as it is."""

    def __init__(self, store: EtcdStore, replica: Replica,
                 healthy: Callable[[], bool] | None = None) -> None:
        self._store = store
        self._replica = replica
        self._healthy = healthy

    def ok(self) -> bool:
        """etcd answers (as the member last saw it: ``/health`` never waits on etcd)."""
        return self._healthy() if self._healthy is not None else self._store.ok()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def write_compute(self, **tables: Mapping[Any, Any] | None) -> None:
        self._store.write_compute_if_unchanged(self._replica.applied_revision, **tables)


class ClusterIntentOperations:
    """:class:`~controller.operations.IntentOperations` for a cluster member: validate here,
    commit to etcd, wait until this member applied it, then answer (see the module
    docstring)."""

    def __init__(self, service: ControllerService, store: EtcdStore, replica: Replica,
                 member: ClusterMember, *, timeout_s: float = 10.0) -> None:
        self.service = service
        self.store = store
        self.replica = replica
        self.member = member
        self.timeout_s = timeout_s

    def source(self, intent_id: int) -> str:
        return "api" if intent_id in self.replica.operator_ids else "file"

    def reload(self) -> list[Intent]:
        """Nothing to do: :meth:`Replica.load` added the stored intents."""
        return []

    def _writable(self) -> None:
        if not self.member.writable():
            raise ClusterUnavailable(f"member {self.member.member_id} is cut off from etcd; "
                                     "reads are served from its last applied state")

    def _applied(self, revision: int, what: str) -> None:
        if not self.replica.wait_applied(revision, self.timeout_s):
            raise ClusterUnavailable(
                f"{what} was committed at revision {revision} but this member has not "
                f"applied it within {self.timeout_s:g} s (applied: "
                f"{self.replica.applied_revision})")

    def _wait_flows(self, intent_id: int) -> None:
        ticket = self.replica.ticket(intent_id)
        if ticket is not None:
            self.service.wait_change(ticket, self.timeout_s)

    def add(self, spec: IntentSpec) -> Intent:
        self._writable()
        self.service.validate_intent(spec, admit=True)
        iid, revision = self.store.add_next_intent(spec, floor=self.service.max_intent_id())
        self._applied(revision, f"intent {iid}")
        self._wait_flows(iid)
        intent = self.service.intent(iid)
        log.info(f"intent {intent.name} ({iid}) added over the API at revision {revision}: "
                 f"{intent.state}", extra={"intent": iid, "event": "api_intent_added"})
        return intent

    def add_many(self, specs: Sequence[IntentSpec]) -> list[Intent]:
        """Add a batch of operator intents: each validated here, all committed in one
        transaction (consecutive ids), applied here in one Change; the intents once their
        flows are confirmed or the bounded wait ended."""
        self._writable()
        for i, spec in enumerate(specs):
            try:
                self.service.validate_intent(spec, admit=False)
            except CpnError as exc:
                exc.args = (f"intents[{i}]: {exc}", *exc.args[1:])
                raise
        ids, revision = self.store.add_next_intents(specs, floor=self.service.max_intent_id())
        if not ids:
            return []
        self._applied(revision, f"a batch of {len(ids)} intents")
        self._wait_flows(ids[-1])
        return [self.service.intent(i) for i in ids]

    def remove(self, intent_id: int) -> int:
        self._writable()
        self.service.intent(intent_id)  # NotFound first
        if intent_id not in self.replica.operator_ids:
            raise Conflict(f"intent {intent_id} comes from the topology file; remove it "
                           "there (it would come back on restart)")
        n_flows = self.service.installed_intent_flows(intent_id)
        if not self.store.remove_intent(intent_id):
            raise NotFound(f"intent {intent_id} was removed meanwhile (on another member)")
        self._applied(self.store.last_revision, f"removing intent {intent_id}")
        self._wait_flows(intent_id)
        return n_flows
