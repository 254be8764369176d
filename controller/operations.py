"""The write protocol of intents: the running controller and the store kept in agreement.

An operator's intent lives in two places: the network core (its routes and flows, through
:class:`~controller.network.service.ControllerService`) and the store (so it survives a
restart, through :class:`~controller.store.Store`). :class:`IntentOperations` is the one way
to change both; the REST API translates HTTP into its calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from controller.errors import Conflict, CpnError, StoreError

if TYPE_CHECKING:
    from controller.network.intents import Intent
    from controller.network.service import ControllerService
    from controller.store import Store
    from controller.topology.model import IntentSpec

__all__ = ["INTENT_TIMEOUT_S", "IntentOperations"]

log = logging.getLogger("controller.operations")

INTENT_TIMEOUT_S = 10.0
"""default bound of the wait for an intent's barriers"""


class IntentOperations:
    """Adds and removes operator intents in the controller and the store so that they agree.

    Order and argument: the core goes first (it validates: an unknown host, a bad match or a
    bandwidth that does not fit raises and neither side changes), then the store in one
    transaction; if the store write fails the intent is removed from the core again and the
    request fails - so a failing request changes nothing. Only after both does the caller
    answer, so a crash in between loses only an unacknowledged intent: on restart it is not
    in the store, and its flows on the switches are strays the reconciliation deletes by
    cookie. One lock serialises the writes (rare operator actions), which keeps core, store
    and id allocation in step.

    Ids are never reused: the next id is above both the store's high-water mark and every
    id the core holds (the topology file's intents take 1..n).
    """

    def __init__(self, service: ControllerService, store: Store, *,
                 timeout_s: float = INTENT_TIMEOUT_S) -> None:
        self.service = service
        self.store = store
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._operator_ids: set[int] = set()

    def source(self, intent_id: int) -> str:
        """``"api"`` for an intent an operator added (stored), ``"file"`` for one of the
        topology file."""
        return "api" if intent_id in self._operator_ids else "file"

    def _next_id(self) -> int:
        return max(self.service.max_intent_id(), self.store.high_water_intent_id()) + 1

    def reload(self) -> list[Intent]:
        """Re-add the stored intents with their ids (call once, before the API serves and
        before switches connect, so they are reconciled against the same plan and cookies).
        An id a topology-file intent now holds moves to a fresh id (logged). A stored intent
        the topology cannot take any more (a host gone) stays stored and is logged."""
        with self._lock:
            stored = self.store.intents()
            if not stored:
                return []
            taken = {i.id for i in self.service.intents()}
            ids: list[int] = []
            specs: list[IntentSpec] = []
            for iid, spec in stored:
                if iid in taken:
                    new_id = self._next_id()  # above the store's high-water mark
                    log.warning(f"stored intent {iid} collides with a topology-file intent; "
                                f"renumbered to {new_id}", extra={"intent": new_id,
                                                                  "event": "intent_renumbered"})
                    self.store.replace_intent_id(iid, new_id)
                    iid = new_id
                ids.append(iid)
                specs.append(spec)
            try:
                added = self.service.add_intents(specs, intent_ids=ids, timeout_s=self.timeout_s)
            except CpnError as exc:
                log.warning(f"stored intents could not be added together ({exc}); adding one "
                            "by one", extra={"event": "intent_reload"})
                added = []
                for iid, spec in zip(ids, specs, strict=True):
                    try:
                        added.append(self.service.add_intent(spec, intent_id=iid,
                                                             timeout_s=self.timeout_s))
                    except CpnError as one:
                        log.error(f"stored intent {iid} not loaded: {one}",
                                  extra={"intent": iid, "event": "intent_reload_failed"})
            self._operator_ids.update(i.id for i in added)
            log.info(f"reloaded {len(added)} of {len(stored)} stored intents",
                     extra={"event": "intent_reload"})
            return added

    def add(self, spec: IntentSpec) -> Intent:
        """Add an operator intent (admission control on: a bandwidth that does not fit
        raises and nothing changes); returns it once its flows are confirmed or the wait
        ended (``pending``)."""
        with self._lock:
            iid = self._next_id()
            intent = self.service.add_intent(spec, intent_id=iid, timeout_s=self.timeout_s,
                                             admit=True)
            try:
                self.store.add_intent(iid, spec)
            except StoreError:
                log.error(f"intent {iid} not stored; removing it again",
                          extra={"intent": iid, "event": "store_failed"})
                self.service.remove_intent(iid, timeout_s=self.timeout_s)
                raise
            self._operator_ids.add(iid)
            log.info(f"intent {intent.name} ({iid}) added over the API: {intent.state}",
                     extra={"intent": iid, "event": "api_intent_added"})
            return intent

    def add_many(self, specs: Sequence[IntentSpec]) -> list[Intent]:
        """Add a batch of operator intents in one routing pass and one Change (all or
        nothing: a bad spec raises and nothing changes), then store them in one
        transaction; the intents once confirmed or the bounded wait ended."""
        with self._lock:
            first = self._next_id()
            ids = list(range(first, first + len(specs)))
            added = self.service.add_intents(specs, intent_ids=ids, timeout_s=self.timeout_s)
            try:
                self.store.add_intents(list(zip(ids, specs, strict=True)))
            except StoreError:
                log.error(f"a batch of {len(ids)} intents not stored; removing it again",
                          extra={"event": "store_failed"})
                for iid in ids:
                    self.service.remove_intent(iid, timeout_s=self.timeout_s)
                raise
            self._operator_ids.update(ids)
            return added

    def remove(self, intent_id: int) -> int:
        """Remove an operator intent; returns how many of its flows were installed.
        :class:`NotFound` for an unknown id, :class:`Conflict` for an intent of the
        topology file (it would come back on restart)."""
        with self._lock:
            self.service.intent(intent_id)  # NotFound first
            if intent_id not in self._operator_ids:
                raise Conflict(f"intent {intent_id} comes from the topology file; remove it "
                               "there (it would come back on restart)")
            n_flows = self.service.installed_intent_flows(intent_id)
            self.store.remove_intent(intent_id)
            try:
                self.service.remove_intent(intent_id, timeout_s=self.timeout_s)
            except Exception:
                # put it back so store and core still agree
                self.store.add_intent(intent_id, self.service.intent(intent_id).spec)
                raise
            self._operator_ids.discard(intent_id)
            return n_flows
