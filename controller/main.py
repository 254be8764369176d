"""``cpn-controller``: run the CPN controller (os-ken, OpenFlow 1.3) for a topology file.

    cpn-controller --topology topologies/national.yaml [--ofp-port 6653]
                   [--ofp-host 127.0.0.1] [--fallback best_effort|drop] [--log-level info]
                   [--log-file FILE]
                   [--ofp-tls-cert FILE --ofp-tls-key FILE --ofp-tls-ca FILE]
    cpn-controller --config controller.yaml [--print-config]

Settings come from :mod:`controller.settings`: defaults < ``--config FILE`` (YAML) <
``CPN_<SECTION>_<KEY>`` environment variables < flags; ``--print-config`` prints the effective
settings with the source of each and exits.

Logs are one line per event with structured fields (``event=``, ``dpid=``, ``intent=``,
``duration_ms=``; a sent Change also has ``compute_ms``, ``phase1_ms``, ``phase2_ms``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import socket
import ssl
import stat
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from controller.errors import CpnError
from controller.network.limits import ControlPlaneLimits
from controller.network.service import ControllerService
from controller.settings import (
    FLAGS,
    ApiSettings,
    ClusterSettings,
    LoggingSettings,
    Settings,
    SettingsError,
    load_settings,
)
from controller.topology.files import load_topology_argument

if TYPE_CHECKING:
    from fastapi import FastAPI

    from controller.api.server import ApiHandle
    from controller.api.tokens import TokenRegistry
    from controller.cluster.etcd import EtcdAuth
    from controller.cluster.member import ClusterMember
    from controller.cluster.replica import ClusterIntentOperations, Replica
    from controller.cluster.view import ClusterView
    from controller.compute.steering import Steering
    from controller.network.lldpauth import LldpAuth
    from controller.operations import IntentOperations
    from controller.store import Store
    from controller.store.etcd import EtcdStore

__all__ = ["Controller", "OpenFlowServer", "StructuredFormatter", "build_controller",
           "build_service", "configure_logging", "main"]

FIELDS = ("event", "dpid", "intent", "token", "port_no", "duration_ms", "prepare_ms",
          "compute_ms", "queued_ms", "phase0_ms", "phase1_ms", "phase2_ms", "confirm_ms",
          "messages", "switches")
"""``extra`` fields printed as ``key=value`` after the message, in this order."""


class StructuredFormatter(logging.Formatter):
    """``TIME LEVEL logger: message | event=... dpid=0x... duration_ms=...``"""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        parts = []
        for key in FIELDS:
            value = record.__dict__.get(key)
            if value is None:
                continue
            if key == "dpid" and isinstance(value, int):
                value = f"{value:#x}"
            parts.append(f"{key}={value}")
        return f"{text} | {' '.join(parts)}" if parts else text


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpn-controller", description="Run the CPN OpenFlow 1.3 controller (os-ken).",
        epilog="Every setting can also come from the config file (section.key) or the "
               "environment (CPN_<SECTION>_<KEY>); flags win over both. See --print-config.")
    p.add_argument("--config", metavar="FILE",
                   help="YAML config file: settings by section, as --print-config shows them")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective settings and where each came from, then exit")

    def flag(path: str, **kwargs: Any) -> None:
        default = Settings.default(path)
        shown = "" if default is None else f" (default {default})"
        p.add_argument(FLAGS[path], dest=path, default=argparse.SUPPRESS,
                       help=f"{Settings.describe(path)}{shown}", **kwargs)

    flag("topology.file", metavar="FILE")
    flag("openflow.port", type=int, metavar="PORT")
    flag("openflow.host", metavar="ADDR")
    flag("openflow.tls_cert", metavar="FILE")
    flag("openflow.tls_key", metavar="FILE")
    flag("openflow.tls_ca", metavar="FILE")
    flag("network.fallback", choices=("best_effort", "drop"))
    flag("network.startup_grace_s", type=float, metavar="S")
    flag("network.fast_reroute", action="store_true")
    flag("logging.level", choices=("debug", "info", "warning", "error"))
    flag("logging.file", metavar="FILE")
    flag("api.host", metavar="ADDR")
    flag("api.port", type=int, metavar="PORT")
    flag("network.port_stats_interval_s", type=float, metavar="S")
    flag("state.dir", metavar="DIR")
    flag("api.token_file", metavar="FILE")
    flag("api.tls_cert", metavar="FILE")
    flag("api.tls_key", metavar="FILE")
    flag("api.tokens_file", metavar="FILE")
    flag("state.snapshot_file", metavar="FILE")
    flag("cluster.endpoints", metavar="URL[,URL...]")
    flag("cluster.member_id", metavar="NAME")
    flag("cluster.etcd_ca", metavar="FILE")
    flag("cluster.etcd_cert", metavar="FILE")
    flag("cluster.etcd_key", metavar="FILE")
    flag("cluster.etcd_user", metavar="NAME")
    flag("cluster.etcd_password_file", metavar="FILE")
    flag("api.allow_plaintext", action="store_true")
    return p


def configure_logging(settings: LoggingSettings) -> None:
    """One handler on the root logger (``settings.file``, else stderr) with the
    :class:`StructuredFormatter`, at ``settings.level``."""
    handler: logging.Handler = (logging.FileHandler(settings.file) if settings.file
                                else logging.StreamHandler())
    handler.setFormatter(StructuredFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level.upper())


def build_service(settings: Settings) -> ControllerService:
    """Load ``settings.topology.file`` and build the service with the settings' values
    (raises :class:`CpnError` on a bad file). A cluster member's service writes only to the
    switches it masters (OpenFlow roles)."""
    if settings.topology.file is None:
        raise CpnError("no topology file: give --topology FILE, topology.file in the "
                       "--config file, or CPN_TOPOLOGY_FILE")
    net = settings.network
    return ControllerService(load_topology_argument(settings.topology.file),
                             fallback=net.fallback,
                             fast_reroute=net.fast_reroute,
                             startup_grace_s=net.startup_grace_s,
                             lldp_timeout_s=net.lldp_timeout_s,
                             lldp_interval_s=net.lldp_interval_s,
                             lldp_max_pps=net.lldp_max_pps,
                             barrier_timeout_s=settings.openflow.barrier_timeout_s,
                             barrier_timeout_max_s=settings.openflow.barrier_timeout_max_s,
                             delete_delay_s=settings.openflow.delete_delay_s,
                             port_stats_interval_s=net.port_stats_interval_s,
                             gc_reclaim_interval_s=net.gc_reclaim_interval_s,
                             state_file=settings.state.snapshot_file,
                             roles=settings.cluster.endpoints is not None,
                             limits=ControlPlaneLimits(
                                 packet_in_pps=net.packet_in_pps,
                                 packet_in_control_pps=net.packet_in_control_pps,
                                 max_hosts_per_port=net.max_hosts_per_port,
                                 host_move_limit=net.host_move_limit,
                                 host_move_window_s=net.host_move_window_s,
                                 learn_ban_s=net.learn_ban_s))


@dataclass
class Controller:
    """A controller built by :func:`build_controller`: its parts, and :meth:`stop`."""

    service: ControllerService
    store: Store
    intents: IntentOperations | ClusterIntentOperations
    steering: Steering
    api: ApiHandle
    token_path: Path | None
    """where the API's write token came from (None: ``$CPN_API_TOKEN``)"""
    cluster: ClusterView
    member: ClusterMember | None = None
    """this process as a cluster member (None: running alone)"""
    replica: Replica | None = None

    @property
    def url(self) -> str:
        """The REST API's base URL (``http://host:port``)."""
        return self.api.url

    @property
    def app(self) -> FastAPI | None:
        return self.api.app

    def stop(self) -> None:
        """Stop the service's threads (the Change being sent is given up, so requests
        waiting for one answer now), stop serving (the web map's streams first), leave the
        cluster (the others take this member's switches at once), stop compute steering,
        then close the store."""
        self.service.stop()
        self.api.stop()
        if self.member is not None:
            self.member.leave()
        if self.replica is not None:
            self.replica.stop()
        self.steering.close()
        self.store.close()


def build_controller(settings: Settings, *, read_open: bool | None = None) -> Controller:
    """The composition root: the service (:func:`build_service`), the store (the SQLite file
    of ``settings.state.dir``, or etcd for a cluster member), the stored intents added with
    their ids, compute steering, and the REST API serving on
    ``settings.api.host``:``settings.api.port`` (0: a free port) with its token
    (:func:`~controller.api.server.load_token`); a cluster member then joins the cluster
    (:class:`~controller.cluster.member.ClusterMember`). ``read_open`` None: reads are open
    when the API host is a loopback address and need the token otherwise.

    Build it before os-ken runs: the stored intents are then part of the plan that
    reconnecting switches are reconciled against (same ids, same cookies). Raises
    :class:`CpnError` or :class:`OSError` (the port taken) with nothing left running."""
    from controller.api.auth import WriteRateLimiter
    from controller.api.rest import API_PREFIX, create_app
    from controller.api.server import TOKEN_ENV, is_loopback, load_token, serve_in_thread
    from controller.cluster.view import Standalone
    from controller.compute.sitemetrics import SiteMetricsPlane
    from controller.compute.steering import Steering
    from controller.operations import IntentOperations
    from controller.store import default_state_dir, open_store

    log = logging.getLogger("controller.main")
    check_api_exposure(settings.api)
    service = build_service(settings)
    net = settings.network
    service.configure_measurements(
        delay_source=net.delay_source, measurement_max_age_s=net.measurement_max_age_s,
        sla_interval_s=net.sla_interval_s, sla_samples=net.sla_samples,
        sla_ewma_alpha=net.sla_ewma_alpha, sla_reroute=settings.cluster.endpoints is None,
        bandwidth_admission=net.bandwidth_admission if settings.cluster.endpoints is None
        else "reserved")
    api_settings = settings.api
    state_dir = Path(settings.state.dir) if settings.state.dir is not None \
        else default_state_dir()
    clustered = settings.cluster.endpoints is not None
    parts = _cluster_parts(settings, service) if clustered else None
    store: Store = parts.store if parts is not None else open_store(state_dir)
    steering: Steering | None = None
    member = parts.member if parts is not None else None
    replica = parts.replica if parts is not None else None
    try:
        service.set_lldp_auth(_lldp_auth(settings, state_dir, parts))
        token, token_path = load_token(state_dir, api_settings.token_file)
        tokens = _tokens(settings, state_dir, token)
        intents: IntentOperations | ClusterIntentOperations
        if parts is not None:
            intents = parts.intents
            steering = Steering(service, parts.steering_store, leader=parts.member.is_leader,
                                sync=parts.sync, compute=settings.compute,
                                sla_samples=net.sla_samples, sla_alpha=net.sla_ewma_alpha)
            parts.replica.on_compute = steering.reload
            cluster: ClusterView = parts.member
        else:
            intents = IntentOperations(service, store, timeout_s=api_settings.intent_timeout_s)
            intents.reload()
            steering = Steering(service, store, compute=settings.compute,
                                sla_samples=net.sla_samples, sla_alpha=net.sla_ewma_alpha)
            cluster = Standalone(service, openflow=_ofp_address(settings))
        cs = settings.compute
        SiteMetricsPlane(steering, interval_s=cs.metrics_interval_s,
                         timeout_s=cs.scrape_timeout_s, stale_policy=cs.stale_policy).start()
        reads_open = is_loopback(api_settings.host) if read_open is None else read_open
        app = create_app(service, intents=intents, steering=steering,
                         store=parts.steering_store if parts is not None else store,
                         token=token, read_open=reads_open, cluster=cluster,
                         tokens=tokens, write_limiter=WriteRateLimiter(
                             api_settings.write_rate_per_s, api_settings.write_burst),
                         audit_retention=api_settings.audit_retention)
        api = serve_in_thread(app, api_settings.host, api_settings.port,
                              tls_cert=api_settings.tls_cert,
                              tls_key=api_settings.tls_key)
        if member is not None:
            member.api_url = api.url
            try:
                member.join()
            except BaseException:
                api.stop()
                raise
        elif isinstance(cluster, Standalone):
            cluster.api_url = api.url
    except BaseException:
        if member is not None:
            member.leave()
        if replica is not None:
            replica.stop()
        if steering is not None:
            steering.close()
        store.close()
        raise
    where = (f"cluster {settings.cluster.endpoints} as member {settings.cluster.member_id}"
             if clustered else f"state in {state_dir}")
    log.info(f"REST API on {api.url}{API_PREFIX} (docs {api.url}/docs); {where}; token from "
             f"{token_path or '$' + TOKEN_ENV}; reads "
             f"{'open' if reads_open else 'need the token'}; {len(tokens.entries) - 1} named "
             f"tokens from {tokens.path if tokens.entries[1:] else 'nowhere'}",
             extra={"event": "api_start"})
    return Controller(service, store, intents, steering, api, token_path, cluster, member,
                      replica)


def check_api_exposure(api: ApiSettings) -> None:
    """Refuse an API on an address beyond loopback over plain HTTP (bearer tokens in clear
    text on the network) unless ``api.allow_plaintext`` says so, which is then logged as a
    warning: :class:`CpnError` naming the fix."""
    from controller.api.server import is_loopback

    if is_loopback(api.host) or api.tls_cert is not None:
        return
    if not api.allow_plaintext:
        raise CpnError(f"the API on {api.host} (not a loopback address) would send bearer "
                       "tokens in clear text: give it a certificate (--api-tls-cert FILE "
                       "--api-tls-key FILE), bind it to 127.0.0.1 (--api-host), or accept "
                       "plain HTTP explicitly (--api-allow-plaintext, api.allow_plaintext: "
                       "true)")
    logging.getLogger("controller.main").warning(
        f"the API on {api.host} serves plain HTTP beyond loopback (api.allow_plaintext): "
        "tokens cross the network in clear text", extra={"event": "api_plaintext"})


def _lldp_auth(settings: Settings, state_dir: Path, parts: _ClusterParts | None
               ) -> LldpAuth | None:
    """Signed discovery as the settings say: the secret of the state directory, or the
    cluster's in etcd; None when ``network.lldp_auth`` is off."""
    from controller.discovery import load_lldp_secret, shared_lldp_secret
    from controller.network.lldpauth import LldpAuth

    net = settings.network
    if not net.lldp_auth:
        return None
    key = shared_lldp_secret(parts.store.client, settings.cluster.prefix) \
        if parts is not None else load_lldp_secret(state_dir)
    max_age_s = net.lldp_max_age_s if net.lldp_max_age_s is not None \
        else 3 * net.lldp_interval_s
    return LldpAuth(key, max_age_s=max_age_s, skew_s=net.lldp_clock_skew_s)


def _tokens(settings: Settings, state_dir: Path, default_token: str) -> TokenRegistry:
    """The API's tokens: ``default_token`` (admin) and the named ones of ``api.tokens_file``
    (which must exist), else of ``<state_dir>/api-tokens.yaml`` when it exists (raises
    :class:`~controller.api.tokens.TokenFileError` naming file, line and field)."""
    from controller.api.tokens import TOKENS_FILE_NAME, TokenRegistry

    named = settings.api.tokens_file
    return TokenRegistry(default_token, named if named is not None
                         else state_dir / TOKENS_FILE_NAME, required=named is not None)


def _ofp_address(settings: Settings) -> str:
    ofp = settings.openflow
    return f"{'ssl' if ofp.tls_cert is not None else 'tcp'}:{ofp.host}:{ofp.port}"


def ofp_tls_context(settings: Settings) -> ssl.SSLContext | None:
    """The OpenFlow listener's TLS context when ``openflow.tls_cert`` (with its key and CA)
    is set, else None (plain TCP). Raises :class:`CpnError` naming the flag and file that
    cannot be used."""
    from controller.network.ofptls import TlsFiles, server_context

    ofp = settings.openflow
    if ofp.tls_cert is None or ofp.tls_key is None or ofp.tls_ca is None:
        return None
    return server_context(TlsFiles(ofp.tls_cert, ofp.tls_key, ofp.tls_ca))


@dataclass
class _ClusterParts:
    store: EtcdStore
    steering_store: Store
    replica: Replica
    member: ClusterMember
    intents: ClusterIntentOperations

    def sync(self, revision: int) -> None:
        self.replica.wait_applied(revision, 5.0)


def _cluster_parts(settings: Settings, service: ControllerService) -> _ClusterParts:
    """etcd store, replica (stored intents added), member (not joined yet) and the cluster's
    intent operations. Fails within a few seconds naming the etcd addresses when none
    answers."""
    from controller.cluster.etcd import EtcdClient, EtcdTls
    from controller.cluster.member import ClusterMember
    from controller.cluster.replica import ClusterIntentOperations, Replica, ReplicaStore
    from controller.store.etcd import EtcdStore

    cs = settings.cluster
    assert cs.endpoints is not None and cs.member_id is not None
    endpoints = [e.strip() for e in cs.endpoints.split(",") if e.strip()]
    tls = EtcdTls(cs.etcd_ca, cs.etcd_cert, cs.etcd_key) \
        if cs.etcd_ca is not None and cs.etcd_cert is not None and cs.etcd_key is not None \
        else None
    auth = _etcd_auth(cs)
    client = EtcdClient(endpoints, timeout_s=cs.etcd_timeout_s, tls=tls, auth=auth)
    try:
        store = EtcdStore(client, prefix=cs.prefix)
        # a quorum read that raises says why etcd does not answer (refused, timed out, a
        # TLS handshake refused either way), which store.ok() would keep to itself
        client.get(f"{store.prefix}/counters/intent")
        replica = Replica(store, service)
        replica.load()
    except BaseException:
        client.close()
        raise
    # leases are renewed on a client of their own, with a timeout well inside the TTL
    keepalive = EtcdClient(endpoints, timeout_s=min(cs.etcd_timeout_s, cs.lease_ttl_s / 3),
                           tls=tls, auth=auth)
    member = ClusterMember(client, service, member_id=cs.member_id, prefix=cs.prefix,
                           openflow=_ofp_address(settings), ttl_s=float(cs.lease_ttl_s),
                           peer_host=cs.peer_host, keepalive_client=keepalive,
                           applied_revision=lambda: replica.applied_revision)
    intents = ClusterIntentOperations(service, store, replica, member,
                                      timeout_s=settings.api.intent_timeout_s)
    return _ClusterParts(store, ReplicaStore(store, replica, member.etcd_healthy), replica,
                         member, intents)


def _etcd_auth(cs: ClusterSettings) -> EtcdAuth | None:
    """The etcd user and the password of ``cluster.etcd_password_file`` (its first line),
    or None; :class:`CpnError` naming the file when it cannot be read or is empty."""
    from controller.cluster.etcd import EtcdAuth

    if cs.etcd_user is None or cs.etcd_password_file is None:
        return None
    path = cs.etcd_password_file
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CpnError(f"--etcd-password-file {path}: cannot read: "
                       f"{getattr(exc, 'strerror', None) or exc}") from None
    password = lines[0].strip() if lines else ""
    if not password:
        raise CpnError(f"--etcd-password-file {path}: empty (the password is its first line)")
    return EtcdAuth(cs.etcd_user, password)


class OpenFlowServer:
    """os-ken with the CPN app on ``service``, listening on ``host``:``port``, stoppable.

    os-ken's native hub runs its listener and each switch connection in plain threads that
    nothing cancels. A thread inherits its daemon flag from the thread that starts it, so
    :meth:`start` instantiates the apps from a daemon thread: every os-ken thread is then a
    daemon and none of them can hold the process. :meth:`shutdown` and :meth:`close` end
    what they do: the waits on switches, the switch connections and the listener.

    ``tls``: OpenFlow over TLS with this context (:func:`ofp_tls_context`): the listener is
    a :class:`~controller.network.ofptls.TlsListener`, and each refused handshake is an
    ``ofp_tls_refused`` event of the service."""

    def __init__(self, service: ControllerService, host: str, port: int,
                 tls: ssl.SSLContext | None = None, *, echo_interval_s: float = 5.0,
                 echo_misses: int = 3) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.tls = tls
        self.echo_interval_s = echo_interval_s
        self.echo_misses = echo_misses
        self.app: Any = None
        """the running :class:`~controller.network.app.CpnApp` (None before :meth:`start`)"""
        self._manager: Any = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Instantiate os-ken's apps (the listener starts in a thread of its own). Raises
        :class:`CpnError` when they do not come up within ``timeout_s``."""
        failure: list[BaseException] = []

        def instantiate() -> None:
            from os_ken import cfg
            from os_ken.base.app_manager import AppManager

            from controller.network import ofpguard, ofpio
            from controller.network.app import CpnApp
            from controller.network.ofptls import TlsListener, install

            try:
                # registers the ofp_* options; must come after app_manager (circular imports)
                importlib.import_module("os_ken.controller.controller")
                cfg.CONF(args=["--ofp-listen-host", self.host, "--ofp-tcp-listen-port",
                               str(self.port)], project="os_ken")
                # a peer that stops answering echo requests is closed by os-ken's echo loop
                cfg.CONF.set_override("echo_request_interval", self.echo_interval_s)
                cfg.CONF.set_override("maximum_unreplied_echo_requests", self.echo_misses)
                ofpguard.install(self._misbehaved)
                manager = AppManager.get_instance()
                manager.load_apps(["controller.network.app"])
                contexts: dict[str, Any] = dict(manager.create_contexts())
                # plain TCP: every switch connection in one thread (ofpio), not two or three
                # threads per switch as os-ken's native hub serves them
                listener = (install(TlsListener(self.tls, on_refused=self._tls_refused))
                            if self.tls is not None else ofpio.install())
                with listener:
                    manager.instantiate_apps(cpn_service=self.service, **contexts)
                self._manager = manager
                self.app = next(a for a in manager.applications.values()
                                if isinstance(a, CpnApp))
            except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=instantiate, name="cpn-openflow", daemon=True)
        thread.start()
        thread.join(timeout_s)
        if failure:
            raise failure[0]
        if thread.is_alive():
            raise CpnError(f"os-ken did not start within {timeout_s:g} s")
        # os-ken binds its listener in a thread of its own: the service is up (and its API
        # may answer) only once a switch can connect
        deadline = time.monotonic() + timeout_s
        while not any(True for _ in _listeners(self.port)):
            if time.monotonic() > deadline:
                raise CpnError(f"the OpenFlow listener on {self.host}:{self.port} did not "
                               f"open within {timeout_s:g} s")
            time.sleep(0.01)

    def _misbehaved(self, datapath: Any, reason: str) -> None:
        peer = ":".join(str(p) for p in (getattr(datapath, "address", None) or ("?",)))
        dpid = getattr(datapath, "id", None)
        logging.getLogger("controller.main").warning(
            f"OpenFlow peer {peer} (dpid {dpid if dpid is None else hex(dpid)}) "
            f"disconnected: {reason}", extra={"event": "switch_misbehaved"})
        self.service.record_event("switch_misbehaved", peer=peer, dpid=dpid, reason=reason)

    def _tls_refused(self, peer: str, reason: str, detail: str) -> None:
        self.service.record_event("ofp_tls_refused", peer=peer, reason=reason, detail=detail)

    def shutdown(self) -> None:
        """End every wait on a switch now: live reads answer that the controller is
        stopping, the Change being sent is given up, nothing more is sent; the service's
        threads stop (:meth:`CpnApp.shutdown`). The connections stay up."""
        if self.app is not None:
            self.app.shutdown()
        else:
            self.service.stop()

    def close(self, timeout_s: float = 1.0) -> None:
        """Shut the OpenFlow listener (its port is free once its thread lets it go) and every
        switch connection, then stop os-ken's apps (their event threads end), waiting at most
        ``timeout_s`` for them."""
        self.shutdown()
        closed = _shut_listeners(self.port)
        switches = self.app.close_connections() if self.app is not None else 0
        log = logging.getLogger("controller.main")
        log.debug(f"OpenFlow: {closed} listener(s) and {switches} switch connection(s) shut",
                  extra={"event": "openflow_close"})
        manager = self._manager
        if manager is None:
            return
        done = threading.Thread(target=manager.close, name="cpn-openflow-close", daemon=True)
        done.start()
        done.join(timeout_s)
        if done.is_alive():
            log.warning(f"os-ken's apps did not stop within {timeout_s:g} s",
                        extra={"event": "openflow_close"})


def _listeners(port: int) -> Iterator[socket.socket]:
    """This process's listening TCP sockets on ``port`` (Linux, ``/proc/self/fd``), each a
    duplicate of the descriptor, closed once the caller moves on (os-ken keeps no handle on
    its listener)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        try:
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue  # gone meanwhile, or not a socket Python knows
        with sock:
            try:
                listening = (sock.family in (socket.AF_INET, socket.AF_INET6)
                             and sock.type == socket.SOCK_STREAM
                             and sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
                             and sock.getsockname()[1] == port)
            except OSError:
                continue
            if listening:
                yield sock


def _shut_listeners(port: int) -> int:
    """Shut down this process's listening TCP sockets on ``port``: its accept wakes with an
    error, its thread ends and lets the socket go. How many it shut."""
    shut = 0
    for sock in _listeners(port):
        try:
            sock.shutdown(socket.SHUT_RDWR)
            shut += 1
        except OSError:
            pass
    return shut


STOP_GRACE_S = 4.0
"""How long a stop may take, from the signal, before the process ends itself anyway."""

SIGNAL_POLL_S = 0.2
"""How often the main thread wakes to run a signal handler whose signal another thread got."""


def _watchdog(grace_s: float, status: int) -> threading.Thread:
    """A daemon thread that, unless the process has ended within ``grace_s``, logs an
    ERROR naming every thread still running and where it is (``event=stop_forced``) and
    ends the process with ``status`` (``os._exit``: no further cleanup can hang it)."""
    def expire() -> None:
        time.sleep(grace_s)
        frames = sys._current_frames()
        me = threading.get_ident()
        running = []
        for t in threading.enumerate():
            if t.ident == me or t.ident is None:
                continue
            frame = frames.get(t.ident)
            where = (f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}"
                     if frame is not None else "?")
            running.append(f"{t.name}{'' if t.daemon else ' (not daemon)'} at {where}")
        logging.getLogger("controller.main").error(
            f"still running {grace_s:g} s after the stop began; ending the process. "
            f"Threads: {'; '.join(running)}", extra={"event": "stop_forced"})
        logging.shutdown()
        os._exit(status)

    thread = threading.Thread(target=expire, name="cpn-stop-watchdog", daemon=True)
    thread.start()
    return thread


def _error(message: object) -> int:
    for line in str(message).splitlines():
        print(f"cpn-controller: error: {line}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cpn-controller`` command; returns the exit status (2 on bad settings or a bad
    topology, with nothing started)."""
    args = _parser().parse_args(argv)
    flags = {path: value for path, value in vars(args).items() if path in FLAGS}
    try:
        settings = load_settings(args.config, flags=flags)
    except SettingsError as exc:
        return _error(exc)
    if args.print_config:
        sys.stdout.write(settings.to_yaml())
        return 0
    configure_logging(settings.logging)
    log = logging.getLogger("controller.main")
    try:
        tls = ofp_tls_context(settings)
    except CpnError as exc:
        return _error(exc)
    # The API starts before the OpenFlow side: the stored intents are re-added with their ids,
    # so switches that reconnect are reconciled against the same plan and cookies as before.
    try:
        controller = build_controller(settings)
    except (CpnError, OSError) as exc:
        return _error(exc)
    service = controller.service
    topo = service.topology
    ofp = settings.openflow
    log.info(f"topology {topo.name}: {len(topo.nodes)} switches, {len(topo.links)} links, "
             f"{len(topo.hosts)} hosts, {len(topo.intents)} intents; listening on "
             f"{ofp.host}:{ofp.port}"
             f"{f' (TLS, switch certificates signed by {ofp.tls_ca})' if tls else ''}, "
             f"fallback {settings.network.fallback}",
             extra={"event": "start"})

    # The handlers only note the signal: the stop runs in this thread, in order, never
    # interrupted half-way by an exception raised wherever the signal happened to land.
    stop = threading.Event()
    received: list[int] = []

    def _signalled(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:  # asked twice: do not wait for the orderly stop
            log.error(f"{signal.Signals(signum).name} again while stopping; ending now",
                      extra={"event": "stop_forced"})
            logging.shutdown()
            os._exit(128 + received[0])
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _signalled)
    openflow = OpenFlowServer(service, ofp.host, ofp.port, tls=tls,
                              echo_interval_s=ofp.echo_interval_s, echo_misses=ofp.echo_misses)
    try:
        openflow.start()
    except (CpnError, OSError) as exc:
        controller.stop()
        return _error(exc)
    # Wait in short slices: the kernel may deliver the signal to any thread, and Python runs
    # the handler only when the main thread next executes; an untimed wait here never wakes
    # for a signal another thread received (the stop was missed under load).
    while not stop.wait(SIGNAL_POLL_S):
        pass
    status = 128 + received[0]
    _watchdog(STOP_GRACE_S, status)
    t0 = time.perf_counter()
    log.info(f"stopping ({signal.Signals(received[0]).name})", extra={"event": "stop"})
    openflow.shutdown()  # waits on switches end first, so requests in flight answer now
    controller.stop()
    openflow.close()
    log.info(f"stopped in {(time.perf_counter() - t0) * 1000.0:.0f} ms",
             extra={"event": "stopped",
                    "duration_ms": round((time.perf_counter() - t0) * 1000.0, 3)})
    return status


if __name__ == "__main__":
    sys.exit(main())
