"""One member of a controller cluster: membership, mastership per switch, peer watch.

Keys under the cluster's prefix ``p`` (docs/cluster.md has the whole layout)::

    {p}/members/{id}          JSON MemberRecord          (this member's lease)
    {p}/masters/{dpid:016x}   master member id           (the master's lease)
    {p}/status/{id}           JSON {"applied_revision"}  (this member's lease)

**Membership.** A member grants itself a lease (``ttl_s``) and creates its member key with a
create-if-absent transaction: a second live member with the same id is refused. A keepalive
thread renews the lease; when renewal has failed for most of the TTL the member *fences
itself* (:meth:`ControllerService.demote_all`: no more FlowMods, writes answer 503) before
etcd can hand its switches to anyone else, and joins again when etcd answers.

**Mastership.** Every member watches the member and master keys and computes the same
balanced, sticky assignment (:func:`~controller.cluster.assign.assign`). It claims each switch
assigned to it that has no master key (create-if-absent with its lease) and uses the revision
of that transaction as the switch's OpenFlow ``generation_id``: revisions only grow, so a
newer master's role request always wins at the switch and a stale one is refused there
(OFPRRFC_STALE). A member releases (deletes) the master keys of switches rebalanced away from
it, demoting itself first. Only the confirmed master writes to a switch (the service's role
gate).

**Peer watch.** Each member listens on a TCP port (in its member record) and every other
member keeps a connection to it. When a member's process dies the kernel closes its sockets:
the others see the connection end at once and revoke the dead member's lease, so its keys go
and its switches are claimed within milliseconds instead of a TTL. A member frozen (SIGSTOP)
or cut off keeps its sockets open: then the lease TTL is the bound.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from controller.cluster.assign import assign
from controller.cluster.metrics import MASTERSHIP_CHANGES, TAKEOVER_SECONDS
from controller.errors import ClusterUnavailable, CpnError, StoreError

if TYPE_CHECKING:
    from controller.cluster.etcd import EtcdClient, WatchEvent
    from controller.network.service import ControllerService
    from controller.network.views import RoleEvent

__all__ = ["ClusterMember", "MemberRecord", "master_key", "member_key"]

log = logging.getLogger("controller.cluster")

DEFAULT_TTL_S = 1.0
FENCE_AFTER = 0.6
"""a member fences itself when its lease has not been renewed for this fraction of the TTL:
etcd counts the TTL from when it handled the last renewal, which is after the member sent it,
so the member always fences before etcd can hand its switches to another"""
KEEPALIVES_PER_TTL = 6
JOIN_RETRY_S = 5.0
"""how long a starting member waits for the key of an earlier member with its id to go
(a lease that has not expired yet) before it gives up"""


def member_key(prefix: str, member_id: str) -> str:
    return f"{prefix}/members/{member_id}"


def master_key(prefix: str, dpid: int) -> str:
    return f"{prefix}/masters/{dpid:016x}"


def status_key(prefix: str, member_id: str) -> str:
    return f"{prefix}/status/{member_id}"


@dataclass(frozen=True)
class MemberRecord:
    """What a member publishes about itself (its member key's value)."""

    id: str
    api_url: str
    openflow: str
    peer: str
    """host:port of its peer-watch listener"""
    lease: int
    started: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, data: bytes | str) -> MemberRecord:
        d = json.loads(data)
        return cls(str(d["id"]), str(d["api_url"]), str(d["openflow"]), str(d["peer"]),
                   int(d["lease"]), float(d.get("started", 0.0)))


@dataclass(frozen=True)
class Claim:
    """A master key: who masters the switch and the generation its claim gives."""

    member: str
    generation_id: int


class ClusterMember:
    """This process as a member of the cluster (see the module docstring). Implements
    :class:`~controller.cluster.view.ClusterView` for the API."""

    def __init__(self, client: EtcdClient, service: ControllerService, *, member_id: str,
                 prefix: str = "/cpn", api_url: str = "", openflow: str = "",
                 ttl_s: float = DEFAULT_TTL_S, peer_host: str = "127.0.0.1",
                 keepalive_client: EtcdClient | None = None,
                 applied_revision: Callable[[], int | None] | None = None) -> None:
        self.client = client
        self._ka_client = keepalive_client or client
        self.service = service
        self.member_id = member_id
        self.prefix = prefix.rstrip("/")
        self.api_url = api_url
        self.openflow = openflow
        self.ttl_s = ttl_s
        self.peer_host = peer_host
        self._applied_revision = applied_revision or (lambda: None)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._members: dict[str, MemberRecord] = {}
        self._departed: dict[str, MemberRecord] = {}
        """members seen since this one joined whose key went (shown as not alive)"""
        self._applied: dict[str, int] = {}
        self._masters: dict[int, Claim] = {}
        self._told: dict[int, tuple[bool, int]] = {}
        """dpid -> (master?, generation) last handed to the service"""
        self._orphaned_at: dict[int, float] = {}
        """dpid -> perf_counter when this member learned the switch had no live master"""
        self._lease: int | None = None
        self._record: MemberRecord | None = None
        self._cut_off = True
        self._last_keepalive = 0.0
        self._watches: list[Any] = []
        self._peer_sock: socket.socket | None = None
        self._peer_watchers: dict[str, threading.Thread] = {}
        self._published_revision: int | None = None
        self._etcd_status: dict[str, Any] = {"endpoints": list(client.endpoints),
                                             "healthy": False, "status": []}
        self._dpids = sorted(v.dpid for v in service.switch_views())
        self.takeovers: list[tuple[int, float]] = []
        """(dpid, seconds from orphaned to the MASTER role reply), most recent last"""
        service.role_listeners.append(self._on_role)

    # -- lifecycle --------------------------------------------------------------------------------
    def join(self) -> None:
        """Register (refused when a live member has this id), load the member and master
        keys, start watching them and claim this member's share. Raises :class:`CpnError`
        (an id in use) or :class:`ClusterUnavailable`."""
        self._listen_peers()
        self._register()
        self._etcd_status = self._ka_client.status()
        self._resync()
        for target, name in ((self._keepalive_loop, "cpn-cluster-keepalive"),
                             (self._fence_watchdog, "cpn-cluster-fence"),
                             (self._periodic_loop, "cpn-cluster-periodic")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info(f"member {self.member_id} joined the cluster at {self.prefix} "
                 f"({len(self._members)} live members)", extra={"event": "cluster_join"})

    def leave(self) -> None:
        """Stop: revoke the lease (the other members take this member's switches at once)
        and end every thread."""
        self._stop.set()
        self.service.demote_all()
        for w in self._watches:
            w.cancel()
        self._watches.clear()
        lease = self._lease
        if lease is not None:
            try:
                self._ka_client.lease_revoke(lease)
            except StoreError as exc:
                log.warning(f"could not revoke lease {lease:x} on leaving: {exc}",
                            extra={"event": "cluster_leave"})
        if self._peer_sock is not None:
            self._peer_sock.close()
        for t in self._threads:
            t.join(timeout=2.0)

    def _listen_peers(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.peer_host, 0))
        sock.listen(16)
        sock.settimeout(0.5)
        self._peer_sock = sock
        t = threading.Thread(target=self._accept_peers, name="cpn-cluster-peers", daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_peers(self) -> None:
        sock = self._peer_sock
        assert sock is not None
        held: list[socket.socket] = []
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            held.append(conn)  # kept open: its end is the signal that this process died
        for c in held:
            c.close()

    def _register(self) -> None:
        """Grant a lease and create the member key; wait (bounded) for the key of a dead
        earlier member with this id to go."""
        from controller.cluster.etcd import Compare, Op

        assert self._peer_sock is not None
        host, port = self._peer_sock.getsockname()[:2]
        deadline = time.monotonic() + JOIN_RETRY_S
        while True:
            lease = self._ka_client.lease_grant(max(1, round(self.ttl_s)))
            record = MemberRecord(self.member_id, self.api_url, self.openflow,
                                  f"{host}:{port}", lease.id, time.time())
            key = member_key(self.prefix, self.member_id)
            result = self.client.txn([Compare.absent(key)],
                                     [Op.put(key, record.to_json(), lease=lease.id)],
                                     [Op.get(key)])
            if result.succeeded:
                break
            self._ka_client.lease_revoke(lease.id)
            other = self.client.get(key)
            if other is None:
                continue
            try:
                old = MemberRecord.from_json(other.value)
            except (ValueError, KeyError, TypeError):
                old = None
            if old is not None and not _peer_alive(old.peer):
                # an earlier process with this id died and its lease has not run out yet
                self._ka_client.lease_revoke(old.lease)
                continue
            if time.monotonic() > deadline:
                where = (f" (API {old.api_url}, OpenFlow {old.openflow})" if old is not None
                         else "")
                raise CpnError(f"member id {self.member_id!r} is in use by a live member"
                               f"{where}; give each member its own --member-id")
            time.sleep(0.2)
        with self._lock:
            self._lease = lease.id
            self._record = record
            self._last_keepalive = time.monotonic()
            self._cut_off = False
        log.info(f"member {self.member_id} registered with lease {lease.id:x} "
                 f"(TTL {lease.ttl_s} s), peer watch on {record.peer}",
                 extra={"event": "cluster_register"})

    # -- state from etcd --------------------------------------------------------------------------
    def _resync(self) -> None:
        """Read the member, status and master keys at one revision, then watch from there."""
        for w in self._watches:
            w.cancel()
        self._watches = []
        kvs, revision = self.client.get_prefix(f"{self.prefix}/")
        members: dict[str, MemberRecord] = {}
        masters: dict[int, Claim] = {}
        applied: dict[str, int] = {}
        for kv in kvs:
            self._read_key(kv.key, kv.value, kv.mod_revision, members, masters, applied)
        now = time.perf_counter()
        with self._lock:
            self._members, self._masters, self._applied = members, masters, applied
            for d in self._dpids:
                if d not in masters:
                    self._orphaned_at.setdefault(d, now)
        self._watches.append(self.client.watch_prefix(
            f"{self.prefix}/", revision + 1, self._on_events, self._on_watch_error))
        self._peer_watch()
        self.rebalance()

    def _read_key(self, key: str, value: bytes, revision: int,
                  members: dict[str, MemberRecord], masters: dict[int, Claim],
                  applied: dict[str, int]) -> None:
        rest = key[len(self.prefix) + 1:]
        kind, _, name = rest.partition("/")
        try:
            if kind == "members":
                members[name] = MemberRecord.from_json(value)
            elif kind == "masters":
                dpid = int(name, 16)
                old = masters.get(dpid)
                if old is None or old.generation_id <= revision:
                    masters[dpid] = Claim(value.decode(), revision)
            elif kind == "status":
                applied[name] = int(json.loads(value)["applied_revision"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.error(f"malformed cluster key {key}: {exc}; skipped",
                      extra={"event": "store_malformed"})

    def _on_events(self, events: list[WatchEvent], revision: int) -> None:
        """One watch over the whole prefix, so member and master keys change in revision
        order (the store's records are someone else's)."""
        now = time.perf_counter()
        members_changed = False
        with self._lock:
            for ev in events:
                rest = ev.key[len(self.prefix) + 1:]
                kind, _, name = rest.partition("/")
                if kind not in ("members", "masters", "status"):
                    continue
                members_changed = members_changed or kind == "members"
                if ev.type == "put":
                    if kind == "members":
                        self._departed.pop(name, None)
                    self._read_key(ev.key, ev.value, ev.mod_revision, self._members,
                                   self._masters, self._applied)
                    continue
                if kind == "members":
                    gone = self._members.pop(name, None)
                    if gone is not None:
                        self._departed[name] = gone
                    self._applied.pop(name, None)
                    if name == self.member_id:
                        log.warning(f"member {self.member_id}: its own member key went "
                                    "(lease lost)", extra={"event": "cluster_lease_lost"})
                elif kind == "masters":
                    try:
                        dpid = int(name, 16)
                    except ValueError:
                        continue
                    old = self._masters.get(dpid)
                    # a claim this member made after the deletion (it saw the member key
                    # go first) is newer than the deletion: keep it
                    if old is not None and old.generation_id <= ev.mod_revision:
                        del self._masters[dpid]
                        self._orphaned_at.setdefault(dpid, now)
                elif kind == "status":
                    self._applied.pop(name, None)
        if members_changed:
            self._peer_watch()
        if members_changed or any("/masters/" in ev.key for ev in events):
            self.rebalance()

    def _on_watch_error(self, exc: Exception) -> None:
        log.warning(f"cluster watch failed ({exc}); reading the cluster keys again",
                    extra={"event": "cluster_watch_error"})
        if self._stop.is_set():
            return
        threading.Thread(target=self._resync_quietly, name="cpn-cluster-resync",
                         daemon=True).start()

    def _resync_quietly(self) -> None:
        try:
            self._resync()
        except StoreError as exc:
            log.warning(f"cluster resync failed: {exc}", extra={"event": "cluster_watch_error"})

    # -- mastership -------------------------------------------------------------------------------
    def rebalance(self) -> None:
        """Release the switches assigned away from this member, claim the orphans assigned
        to it, and tell the service the role of every switch (idempotent; runs on every
        watch event and periodically)."""
        from controller.cluster.etcd import Compare, Op

        with self._lock:
            if self._cut_off or self._stop.is_set() or self._lease is None:
                return
            live = set(self._members)
            live.add(self.member_id)
            current = {d: c.member for d, c in self._masters.items() if c.member in live}
            want = assign(self._dpids, live, current)
            release = [d for d, c in self._masters.items()
                       if c.member == self.member_id and want.get(d) != self.member_id]
            claims = [d for d in self._dpids
                      if want.get(d) == self.member_id and d not in self._masters]
            lease = self._lease
            for d in release:
                self._tell(d, False, self._masters[d].generation_id)
        for d in release:
            key = master_key(self.prefix, d)
            try:
                self.client.txn([Compare.value(key, self.member_id)], [Op.delete(key)])
                with self._lock:
                    if (c := self._masters.get(d)) is not None and c.member == self.member_id:
                        del self._masters[d]
                MASTERSHIP_CHANGES.labels(change="lost").inc()
                log.info(f"switch {d:#x} handed over (rebalance)",
                         extra={"event": "mastership_released", "dpid": d})
            except StoreError as exc:
                log.warning(f"releasing switch {d:#x}: {exc}", extra={"event": "cluster_error"})
        if claims:
            self._claim(claims, lease)
        with self._lock:
            for d, c in self._masters.items():
                if c.member == self.member_id:
                    self._tell(d, True, c.generation_id)
                else:
                    self._tell(d, False, c.generation_id)

    def _claim(self, dpids: list[int], lease: int) -> None:
        """Create the master keys of ``dpids`` with this member's lease: one transaction for
        all when none exists, else one per switch (another member may have won some)."""
        from controller.cluster.etcd import Compare, Op

        keys = [master_key(self.prefix, d) for d in dpids]
        won: list[tuple[int, int]] = []
        try:
            result = self.client.txn([Compare.absent(k) for k in keys],
                                     [Op.put(k, self.member_id, lease=lease) for k in keys])
            if result.succeeded:
                won = [(d, result.revision) for d in dpids]
            else:
                for d, k in zip(dpids, keys, strict=True):
                    r = self.client.txn([Compare.absent(k)],
                                        [Op.put(k, self.member_id, lease=lease)])
                    if r.succeeded:
                        won.append((d, r.revision))
        except StoreError as exc:
            log.warning(f"claiming {len(dpids)} switches: {exc}",
                        extra={"event": "cluster_error"})
        with self._lock:
            for d, revision in won:
                self._masters[d] = Claim(self.member_id, revision)
                self._tell(d, True, revision)
        if won:
            MASTERSHIP_CHANGES.labels(change="gained").inc(len(won))
            log.info(f"member {self.member_id} claimed {len(won)} switches",
                     extra={"event": "mastership_claimed", "switches": len(won)})

    def _tell(self, dpid: int, master: bool, generation_id: int) -> None:
        """Hand a role to the service once per (role, generation). Call with the lock."""
        if self._told.get(dpid) == (master, generation_id):
            return
        self._told[dpid] = (master, generation_id)
        if not master:
            self._orphaned_at.pop(dpid, None)
        self.service.want_role(dpid, master, generation_id)

    def _on_role(self, event: RoleEvent) -> None:
        if event.role != "master":
            if event.role in ("refused", "not_master"):
                log.warning(f"switch {event.dpid:#x} refused this member as master "
                            f"({event.error}); waiting for the cluster keys",
                            extra={"event": "role_refused", "dpid": event.dpid})
            return
        with self._lock:
            seen = self._orphaned_at.pop(event.dpid, None)
        if seen is not None:
            took = max(0.0, event.answered_at - seen)
            TAKEOVER_SECONDS.observe(took)
            self.takeovers.append((event.dpid, took))
            del self.takeovers[:-1000]
            log.info(f"switch {event.dpid:#x} mastered by {self.member_id} "
                     f"{took * 1000:.1f} ms after it was orphaned",
                     extra={"event": "takeover", "dpid": event.dpid,
                            "duration_ms": round(took * 1000, 3)})

    # -- liveness ---------------------------------------------------------------------------------
    def _fence_watchdog(self) -> None:
        """Fence on time alone: a renewal request stuck in a partition does not return (or
        returns only after its timeout), so the deadline is checked here, apart from it."""
        step = max(0.01, self.ttl_s / 50)
        while not self._stop.wait(step):
            with self._lock:
                overdue = time.monotonic() - self._last_keepalive > self.ttl_s * FENCE_AFTER
            if overdue and not self._cut_off:
                self._fence(f"no lease renewal answered for {FENCE_AFTER * self.ttl_s:g} s")

    def _fence(self, why: str) -> None:
        with self._lock:
            if self._cut_off:
                return
            self._cut_off = True
            self._told.clear()
        # before etcd can give the switches to another member: no more writes from here
        self.service.demote_all()
        MASTERSHIP_CHANGES.labels(change="lost").inc()
        log.error(f"member {self.member_id} cut off from etcd ({why}); fenced: no writes to "
                  "switches, API writes answer 503 until it rejoins",
                  extra={"event": "cluster_fenced"})

    def _keepalive_loop(self) -> None:
        interval = max(0.05, self.ttl_s / KEEPALIVES_PER_TTL)
        while not self._stop.wait(interval):
            lease = self._lease
            t0 = time.monotonic()
            try:
                if lease is None:
                    raise StoreError("no lease")
                remaining = self._ka_client.lease_keepalive(lease)
                if remaining <= 0:
                    raise StoreError(f"lease {lease:x} has expired")
            except StoreError as exc:
                gone = not isinstance(exc, ClusterUnavailable)
                self._on_keepalive_failed(exc, lease_gone=gone)
                continue
            with self._lock:
                self._last_keepalive = t0
                rejoined = self._cut_off
                self._cut_off = False
            if rejoined:
                log.warning(f"member {self.member_id} reaches etcd again; taking its share "
                            "back", extra={"event": "cluster_rejoin"})
                self._told.clear()
                try:
                    self._resync()
                except StoreError as exc:
                    log.warning(f"resync after rejoin failed: {exc}",
                                extra={"event": "cluster_error"})

    def _on_keepalive_failed(self, exc: StoreError, *, lease_gone: bool) -> None:
        if lease_gone:
            self._fence(str(exc))
        if lease_gone and not self._stop.is_set():
            try:
                self._register()
            except (StoreError, CpnError) as again:
                log.warning(f"rejoin failed: {again}", extra={"event": "cluster_error"})
                return
            self._told.clear()
            try:
                self._resync()
            except StoreError as again:
                log.warning(f"resync after rejoin failed: {again}",
                            extra={"event": "cluster_error"})

    def _peer_watch(self) -> None:
        """One thread per other live member holding a connection to its peer listener."""
        with self._lock:
            records = {m: r for m, r in self._members.items() if m != self.member_id}
        for member, record in records.items():
            t = self._peer_watchers.get(f"{member}/{record.lease}")
            if t is not None and t.is_alive():
                continue
            t = threading.Thread(target=self._watch_peer, args=(record,),
                                 name=f"cpn-peer-{member}", daemon=True)
            self._peer_watchers[f"{member}/{record.lease}"] = t
            t.start()

    def _watch_peer(self, record: MemberRecord) -> None:
        host, _, port = record.peer.rpartition(":")
        try:
            sock = socket.create_connection((host, int(port)), timeout=self.ttl_s)
        except ConnectionRefusedError:
            self._peer_died(record, "its peer port refuses connections")
            return
        except OSError:
            return  # unreachable: the lease TTL decides
        sock.settimeout(0.5)
        with sock:
            while not self._stop.is_set():
                with self._lock:
                    current = self._members.get(record.id)
                if current is None or current.lease != record.lease:
                    return
                try:
                    data = sock.recv(1)
                except TimeoutError:
                    continue
                except OSError as exc:
                    self._peer_died(record, f"connection reset ({exc})")
                    return
                if not data:
                    self._peer_died(record, "connection closed")
                    return

    def _peer_died(self, record: MemberRecord, why: str) -> None:
        with self._lock:
            current = self._members.get(record.id)
        if current is None or current.lease != record.lease or self._stop.is_set():
            return
        log.warning(f"member {record.id} died ({why}); revoking its lease {record.lease:x}",
                    extra={"event": "peer_lost"})
        try:
            self.client.lease_revoke(record.lease)
        except StoreError as exc:
            log.warning(f"revoking the lease of {record.id}: {exc}",
                        extra={"event": "cluster_error"})

    def _periodic_loop(self) -> None:
        interval = max(0.1, self.ttl_s / 2)
        while not self._stop.wait(interval):
            try:
                # on the keepalive client: its timeout is well inside the TTL, so a partition
                # costs this loop a fraction of a second, not a request's full timeout
                self._etcd_status = self._ka_client.status()
                self._publish_status()
                self.rebalance()
            except StoreError as exc:
                log.debug(f"cluster periodic work: {exc}", extra={"event": "cluster_error"})
            except Exception:  # noqa: BLE001 - keep the member's periodic work alive
                log.exception("cluster periodic work failed", extra={"event": "cluster_error"})

    def _publish_status(self) -> None:
        revision = self._applied_revision()
        lease = self._lease
        if revision is None or lease is None or self._cut_off \
                or revision == self._published_revision:
            return
        self.client.put(status_key(self.prefix, self.member_id),
                        json.dumps({"applied_revision": revision}), lease=lease)
        self._published_revision = revision

    # -- ClusterView ------------------------------------------------------------------------------
    def writable(self) -> bool:
        return not self._cut_off and not self._stop.is_set()

    def etcd_healthy(self) -> bool:
        """etcd answered this member's last status round (every half TTL) with a leader."""
        return bool(self._etcd_status.get("healthy"))

    def stale(self) -> bool:
        return self._cut_off

    def is_leader(self) -> bool:
        """The live member with the smallest id: the one that runs cluster-wide duties
        (compute steering's reassignments after a topology change)."""
        with self._lock:
            if self._cut_off:
                return False
            return min({*self._members, self.member_id}) == self.member_id

    def switch_masters(self) -> dict[int, str | None]:
        with self._lock:
            return {d: (c.member if (c := self._masters.get(d)) is not None else None)
                    for d in self._dpids}

    def status(self) -> dict[str, Any]:
        roles = self.service.roles()
        names = {v.dpid: v.name for v in self.service.switch_views()}
        etcd = self._etcd_status
        with self._lock:
            members = dict(self._members)
            departed = dict(self._departed)
            masters = dict(self._masters)
            applied = dict(self._applied)
            cut_off = self._cut_off
        mine = self._applied_revision()
        live = sorted(members)
        counts: dict[str, int] = {}
        for c in masters.values():
            counts[c.member] = counts.get(c.member, 0) + 1
        member_rows = []
        for m in sorted({*live, *departed, self.member_id}):
            r = members.get(m) or departed.get(m)
            member_rows.append({
                "id": m, "api_url": r.api_url if r else self.api_url,
                "openflow": r.openflow if r else self.openflow,
                "alive": m in members,
                "applied_revision": mine if m == self.member_id else applied.get(m),
                "masters": counts.get(m, 0), "self": m == self.member_id})
        switches = []
        for d in self._dpids:
            claim = masters.get(d)
            role = roles.get(d)
            switches.append({
                "dpid": d, "name": names.get(d, f"{d:#x}"),
                "master": claim.member if claim else None,
                "standbys": [m for m in live if claim is None or m != claim.member],
                "generation_id": claim.generation_id if claim else None,
                "role_here": role.role if role is not None else None})
        return {"mode": "cluster", "member_id": self.member_id, "writable": not cut_off,
                "stale": cut_off, "applied_revision": mine, "etcd": etcd,
                "members": member_rows, "switches": switches}


def _peer_alive(peer: str) -> bool:
    """Something accepts connections at ``host:port`` (a member's peer listener)."""
    host, _, port = peer.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except (OSError, ValueError):
        return False
