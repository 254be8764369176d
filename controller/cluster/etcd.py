"""A small typed etcd v3 client over etcd's HTTP/JSON gateway (``/v3/...``).

:class:`EtcdClient` is what the cluster needs of etcd and nothing more: reads of a key or a
prefix (at a revision), transactions built from :class:`Compare` and :class:`Op`, leases,
and prefix watches that resume where they broke off.

Endpoints: several URLs name one etcd cluster. A request goes to the endpoint that answered
last; when it cannot connect, times out, or that member answers that it has no leader (no
quorum on its side), the request goes to the next endpoint. When none answers the client
raises :class:`~controller.errors.ClusterUnavailable` naming every address and why. Every
request carries the gRPC metadata ``hasleader=true`` (the gateway forwards
``Grpc-Metadata-*`` headers), so a member cut off from its cluster refuses at once instead of
letting the request wait out etcd's own timeout.

A write that timed out may still have been applied by etcd (the answer was lost, not the
request); it is retried on the next endpoint like any other, so a compare-guarded write can
then report that it lost a race it had in fact won. Callers that care read the key back.

Unary requests go through :mod:`etcd3gw`'s client (one :class:`requests.Session` per
endpoint, so connections are kept alive); reads take the header revision, which etcd3gw's
``get`` drops, so this module sends the gateway's JSON itself through ``Etcd3Client.post``.
Watches use :mod:`http.client` directly: the watch thread must own its socket to stop at
once (a shutdown wakes the blocked read), and it needs each response's header revision and
the compaction notice, which etcd3gw's watcher does not pass on.

TLS: ``https://`` endpoints with an :class:`EtcdTls` (``cluster.etcd_ca``, ``etcd_cert``,
``etcd_key``) trust only that CA for etcd's server certificates and present this member's
client certificate, which an etcd started with ``--client-cert-auth`` requires. The files are
checked when the client is made (:meth:`EtcdTls.context`: a file missing, unreadable, not PEM,
a key that does not match its certificate, a CA file without a CA are refused naming the
flag and file). A handshake refused either way fails the request at once, like an endpoint
that does not answer, with the reason in words (:func:`_short`).

Authentication (etcd's ``auth enable``): with an :class:`EtcdAuth` the client gets a token
from ``/v3/auth/authenticate`` before its first request and sends it in the
``Authorization`` header of every request and watch. etcd forgets its tokens when it
restarts (and drops idle ones after ``--auth-token-ttl``): a request or watch refused with
"invalid auth token" authenticates again and is sent once more. Wrong credentials are a
:class:`StoreError` naming the user.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

with warnings.catch_warnings():
    # etcd3gw imports futurist, which imports eventlet when installed (os-ken's dependency),
    # and eventlet warns on import that it is deprecated; nothing here uses eventlet
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    from etcd3gw.client import Etcd3Client
    from etcd3gw.exceptions import (
        ConnectionFailedError,
        ConnectionTimeoutError,
        Etcd3Exception,
    )

from controller.cluster.metrics import ETCD_REQUEST_SECONDS
from controller.errors import ClusterUnavailable, CpnError, StoreError

__all__ = ["KV", "Compare", "EtcdAuth", "EtcdClient", "EtcdTls", "Lease", "Op", "TxnResult",
           "Watch", "WatchEvent", "prefix_end", "prefix_range"]

log = logging.getLogger(__name__)

_API = "/v3/"
_HEADERS = {"Grpc-Metadata-hasleader": "true"}

# gRPC status codes (the gateway puts them in "code") that say "this member cannot serve
# now, another may": UNAVAILABLE (no leader, leader changed, stopping, request timed out),
# DEADLINE_EXCEEDED, CANCELED, RESOURCE_EXHAUSTED (too many requests)
_UNAVAILABLE_CODES = {1, 4, 8, 14}
_NOT_FOUND = 5
_INVALID_TOKEN = "invalid auth token"

_WATCH_BACKOFF_S = (0.05, 0.1, 0.2, 0.5, 1.0)
"""pauses before reconnect attempts of a broken watch (the last one repeats)"""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes:
    return base64.b64decode(text) if text else b""


def _bytes(data: bytes | str) -> bytes:
    return data.encode() if isinstance(data, str) else data


def _key_text(raw: bytes) -> str:
    # lossless for any bytes (a key written by hand need not be UTF-8)
    return raw.decode("utf-8", errors="surrogateescape")


def _key_bytes(key: str) -> bytes:
    return key.encode("utf-8", errors="surrogateescape")


def prefix_range(prefix: bytes) -> tuple[bytes, bytes]:
    """``(key, range_end)`` of every key starting with ``prefix`` (etcd spells "every key"
    as ``(b"\\0", b"\\0")``: an empty key is refused)."""
    return (prefix or b"\0"), prefix_end(prefix)


def prefix_end(prefix: bytes) -> bytes:
    """The ``range_end`` that makes ``[prefix, end)`` every key starting with ``prefix``
    (``b"\\0"``, meaning "to the end", for an empty prefix or one of 0xff bytes only)."""
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\0"


def _int(value: Any) -> int:
    # the gateway writes int64 as JSON strings and leaves zero values out
    return int(value) if value not in (None, "") else 0


# -- records ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class KV:
    """One key as etcd keeps it (revisions are etcd's: the store's revision when the key
    was created / last modified; ``version`` counts modifications since creation; ``lease``
    is 0 when none)."""

    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_json(cls, kv: Mapping[str, Any]) -> KV:
        """A KV from the gateway's JSON (base64 key and value)."""
        return cls(key=_key_text(_unb64(kv.get("key"))), value=_unb64(kv.get("value")),
                   create_revision=_int(kv.get("create_revision")),
                   mod_revision=_int(kv.get("mod_revision")), version=_int(kv.get("version")),
                   lease=_int(kv.get("lease")))


@dataclass(frozen=True)
class Lease:
    """A granted lease: its id and the TTL etcd granted (at least what was asked)."""

    id: int
    ttl_s: int


@dataclass(frozen=True)
class TxnResult:
    """The outcome of :meth:`EtcdClient.txn`: which branch ran, the store's revision after
    it, and one response per op of that branch: ``list[KV]`` for a get, the number of keys
    deleted for a delete, None for a put."""

    succeeded: bool
    revision: int
    responses: list[Any]


@dataclass(frozen=True)
class WatchEvent:
    """One change seen by a watch: ``type`` "put" or "delete", the key, its new value
    (``b""`` on delete) and the revisions etcd gives it."""

    type: Literal["put", "delete"]
    key: str
    value: bytes
    mod_revision: int
    create_revision: int
    lease: int


_COMPARE_RESULTS = {"=": "EQUAL", "!=": "NOT_EQUAL", "<": "LESS", ">": "GREATER"}


@dataclass(frozen=True)
class Compare:
    """One condition of a transaction. Build with the class methods; a key that does not
    exist has create and mod revision 0 (a value compare on it is false)."""

    key: str
    target: Literal["CREATE", "MOD", "VALUE", "VERSION"]
    result: str
    operand: int | bytes

    @classmethod
    def absent(cls, key: str) -> Compare:
        """``key`` does not exist (its create revision is 0)."""
        return cls(key, "CREATE", "EQUAL", 0)

    @classmethod
    def mod_revision(cls, key: str, op: str, revision: int) -> Compare:
        """``key``'s mod revision ``op`` ``revision``; ``op`` one of "=", "!=", "<", ">"."""
        return cls(key, "MOD", cls._result(op), int(revision))

    @classmethod
    def create_revision(cls, key: str, op: str, revision: int) -> Compare:
        """``key``'s create revision ``op`` ``revision`` (0: absent)."""
        return cls(key, "CREATE", cls._result(op), int(revision))

    @classmethod
    def value(cls, key: str, value: bytes | str) -> Compare:
        """``key`` exists and holds exactly ``value``."""
        return cls(key, "VALUE", "EQUAL", _bytes(value))

    @staticmethod
    def _result(op: str) -> str:
        try:
            return _COMPARE_RESULTS[op]
        except KeyError:
            raise ValueError(f"compare op must be one of {sorted(_COMPARE_RESULTS)}, "
                             f"not {op!r}") from None

    def to_json(self) -> dict[str, Any]:
        """The gateway's JSON for this compare."""
        out: dict[str, Any] = {"key": _b64(_key_bytes(self.key)), "target": self.target,
                               "result": self.result}
        if self.target == "VALUE":
            assert isinstance(self.operand, bytes)
            out["value"] = _b64(self.operand)
        else:
            field_name = {"CREATE": "create_revision", "MOD": "mod_revision",
                          "VERSION": "version"}[self.target]
            out[field_name] = str(self.operand)
        return out


@dataclass(frozen=True)
class Op:
    """One operation of a transaction branch. Build with the class methods."""

    kind: Literal["put", "delete", "get"]
    key: str
    value: bytes = b""
    lease: int | None = None
    prefix: bool = False
    keys_only: bool = False

    @classmethod
    def put(cls, key: str, value: bytes | str, lease: int | None = None) -> Op:
        """Set ``key`` to ``value`` (attached to ``lease`` when given: deleted with it)."""
        return cls("put", key, _bytes(value), lease=lease)

    @classmethod
    def delete(cls, key: str) -> Op:
        """Delete ``key`` (nothing when absent)."""
        return cls("delete", key)

    @classmethod
    def delete_prefix(cls, prefix: str) -> Op:
        """Delete every key starting with ``prefix``."""
        return cls("delete", prefix, prefix=True)

    @classmethod
    def get(cls, key: str) -> Op:
        """Read ``key`` (its response: a list of zero or one :class:`KV`)."""
        return cls("get", key)

    @classmethod
    def get_prefix(cls, prefix: str, *, keys_only: bool = False) -> Op:
        """Read every key starting with ``prefix``, in key order (values left out with
        ``keys_only``)."""
        return cls("get", prefix, prefix=True, keys_only=keys_only)

    def to_json(self) -> dict[str, Any]:
        """The gateway's JSON for this op (a ``RequestOp``)."""
        key = _key_bytes(self.key)
        body: dict[str, Any] = {"key": _b64(key)}
        if self.prefix:
            start, end = prefix_range(key)
            body.update(key=_b64(start), range_end=_b64(end))
        if self.kind == "put":
            body["value"] = _b64(self.value)
            if self.lease:
                body["lease"] = str(self.lease)
            return {"request_put": body}
        if self.kind == "delete":
            return {"request_delete_range": body}
        if self.keys_only:
            body["keys_only"] = True
        return {"request_range": body}


def _op_response(item: Mapping[str, Any]) -> Any:
    if "response_range" in item:
        return [KV.from_json(kv) for kv in item["response_range"].get("kvs", [])]
    if "response_delete_range" in item:
        return _int(item["response_delete_range"].get("deleted"))
    return None


# -- errors ------------------------------------------------------------------------------------

_TLS_REFUSALS = {
    "CERTIFICATE_VERIFY_FAILED": "etcd's server certificate is not signed by the CA this "
                                 "member trusts (--etcd-ca)",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "etcd requires a client certificate and got none "
                                         "(--etcd-cert, --etcd-key)",
    "SSLV3_ALERT_BAD_CERTIFICATE": "etcd refused this member's client certificate (not "
                                   "signed by the CA etcd trusts?)",
    "TLSV1_ALERT_UNKNOWN_CA": "etcd refused this member's client certificate: signed by a "
                              "CA etcd does not trust",
    "WRONG_VERSION_NUMBER": "the endpoint does not speak TLS (an http:// etcd?)",
}
"""OpenSSL's reason for a refused handshake -> what it means here."""


def _short(text: str) -> str:
    """The useful part of a requests/urllib3 connection error ("[Errno 111] Connection
    refused" rather than three nested reprs; a refused TLS handshake in words)."""
    tls = re.search(r"\[SSL: ([A-Z0-9_]+)\] ([^'\"(]+)", text)
    if tls:
        meaning = _TLS_REFUSALS.get(tls.group(1))
        detail = tls.group(2).strip()
        return f"TLS handshake refused: {meaning} ({detail})" if meaning \
            else f"TLS handshake refused: {detail}"
    if "EOF occurred in violation of protocol" in text:
        return ("TLS handshake refused: etcd closed the connection (it requires a client "
                "certificate signed by the CA it trusts: --etcd-cert, --etcd-key)")
    if "RemoteDisconnected" in text or ("Connection aborted" in text
                                        and "ConnectionResetError" in text):
        # a TLS server asked in plain HTTP closes, or resets when the close outruns the
        # request (seen both ways against etcd 3.4)
        return "closed the connection without an answer (an https:// etcd asked over http://?)"
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip().lower()
    if "timed out" in text.lower():
        return "timed out"
    return text[:200]


def _gateway_error(exc: Etcd3Exception) -> tuple[int | None, str]:
    """(gRPC code, message) of an error answer of the gateway."""
    text = exc.detail_text or ""
    try:
        body = json.loads(text)
        return _int(body.get("code")), str(body.get("message") or body.get("error") or text)
    except (ValueError, AttributeError):
        return None, text or type(exc).__name__


# -- TLS ---------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EtcdTls:
    """PEM files of a member's TLS to etcd: the CA that signed etcd's server certificates
    and this member's client certificate and key (``cluster.etcd_ca``, ``etcd_cert``,
    ``etcd_key``)."""

    ca: str
    cert: str
    key: str

    def context(self) -> ssl.SSLContext:
        """A client context (TLS 1.2 or later, etcd's certificate checked against ``ca``
        and its name against the endpoint's host, the client certificate loaded).
        :class:`StoreError` naming the flag and file for a file that is missing or
        unreadable, not PEM, a key that does not match the certificate, or a CA file that
        holds no CA certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        for flag, path in (("--etcd-ca", self.ca), ("--etcd-cert", self.cert),
                           ("--etcd-key", self.key)):
            try:
                Path(path).read_bytes()
            except OSError as exc:
                raise StoreError(f"etcd TLS: {flag} {path}: cannot read: "
                                 f"{exc.strerror or exc}") from None
        try:
            ctx.load_verify_locations(cafile=self.ca)
        except ssl.SSLError as exc:
            raise StoreError(f"etcd TLS: --etcd-ca {self.ca}: not a PEM CA certificate "
                             f"({exc.reason or exc})") from None
        if ctx.cert_store_stats().get("x509_ca", 0) == 0:
            raise StoreError(f"etcd TLS: --etcd-ca {self.ca}: holds no CA certificate "
                             "(basicConstraints CA:TRUE)")
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            if exc.reason == "KEY_VALUES_MISMATCH":
                raise StoreError(f"etcd TLS: --etcd-key {self.key} is not the key of "
                                 f"--etcd-cert {self.cert}") from None
            raise StoreError(f"etcd TLS: --etcd-cert {self.cert} / --etcd-key {self.key}: "
                             f"not a PEM certificate and its private key "
                             f"({exc.reason or exc})") from None
        return ctx


@dataclass(frozen=True, slots=True)
class EtcdAuth:
    """An etcd user and its password (``cluster.etcd_user``, the password from
    ``cluster.etcd_password_file``)."""

    user: str
    password: str = ""

    def __repr__(self) -> str:  # the password stays out of logs and tracebacks
        return f"EtcdAuth(user={self.user!r})"


# -- the client ------------------------------------------------------------------------------

class EtcdClient:
    """An etcd v3 client over the HTTP gateway of ``endpoints`` (URLs of one cluster, like
    ``http://127.0.0.1:2379``). ``timeout_s`` bounds each request on each endpoint. ``tls``:
    reach etcd over TLS with a client certificate (every endpoint must then be
    ``https://``). ``auth``: authenticate as that etcd user. Safe to use from several
    threads."""

    def __init__(self, endpoints: Sequence[str] | str, *, timeout_s: float = 2.0,
                 tls: EtcdTls | None = None, auth: EtcdAuth | None = None) -> None:
        urls = [endpoints] if isinstance(endpoints, str) else list(endpoints)
        urls = [u.strip().rstrip("/") for u in urls if u.strip()]
        if not urls:
            raise StoreError("no etcd endpoint given")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise StoreError(f"bad etcd endpoint {url!r}: expected http://HOST:PORT")
            if tls is not None and parts.scheme != "https":
                raise StoreError(f"etcd endpoint {url!r} is plain HTTP, but etcd TLS "
                                 f"(--etcd-ca {tls.ca}) is set: use https://")
        self.endpoints: list[str] = urls
        self.timeout_s = timeout_s
        self.tls = tls
        self.tls_context: ssl.SSLContext | None = tls.context() if tls is not None else None
        self._clients = [self._gateway(url) for url in urls]
        self._current = 0
        self._closed = False
        self.auth = auth
        self._token: str | None = None
        self._auth_lock = threading.Lock()

    def _gateway(self, url: str) -> Etcd3Client:
        parts = urlsplit(url)
        session = requests.Session()
        session.trust_env = False  # no proxy lookups per request; etcd is reached directly
        session.headers.update(_HEADERS)
        if self.tls is not None:
            session.verify = self.tls.ca
            session.cert = (self.tls.cert, self.tls.key)
        # enough pooled connections for the threads of one controller (the pool's default,
        # 10, would make the eleventh concurrent caller open and drop a connection)
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=32, max_retries=0)
        session.mount(f"{parts.scheme}://", adapter)
        return Etcd3Client(host=parts.hostname or "127.0.0.1",
                           port=parts.port or (443 if parts.scheme == "https" else 2379),
                           protocol=parts.scheme, timeout=self.timeout_s, api_path=_API,
                           session=session)

    # -- transport ---------------------------------------------------------------------------
    def auth_headers(self, stale: str | None = None) -> dict[str, str]:
        """The ``Authorization`` header of the current token ({} without :attr:`auth`),
        authenticating first when there is none yet or the current one is ``stale`` (the
        token etcd just called invalid: another thread may have replaced it already)."""
        if self.auth is None:
            return {}
        with self._auth_lock:
            if self._token is None or self._token == stale:
                self._token = self._authenticate(self.auth)
                for gateway in self._clients:
                    gateway.session.headers["Authorization"] = self._token
            return {"Authorization": self._token}

    def _authenticate(self, auth: EtcdAuth) -> str:
        try:
            # without the session's (stale) token, which etcd would refuse first
            answer = self._send("authenticate", "auth/authenticate",
                                {"name": auth.user, "password": auth.password},
                                headers={"Authorization": None})
        except _EtcdAnswer as exc:
            raise StoreError(f"etcd refused user {auth.user!r}: {exc.message}") from None
        token = answer.get("token")
        if not token:
            raise StoreError(f"etcd gave user {auth.user!r} no token (is etcd's "
                             "authentication enabled?)")
        return str(token)

    def _post(self, op: str, path: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``payload`` to ``/v3/<path>`` on the first endpoint that answers (with the
        auth token; once more with a new one when etcd calls it invalid)."""
        if self.auth is None:
            return self._send(op, path, payload)
        token = self.auth_headers()["Authorization"]
        try:
            return self._send(op, path, payload)
        except _EtcdAnswer as exc:
            if _INVALID_TOKEN not in exc.message:
                raise
        self.auth_headers(stale=token)
        return self._send(op, path, payload)

    def _send(self, op: str, path: str, payload: Mapping[str, Any],
              headers: Mapping[str, str | None] | None = None) -> dict[str, Any]:
        """One POST of ``payload`` to ``/v3/<path>``, failing over between endpoints
        (``headers``: over the session's; None drops one)."""
        if self._closed:
            raise StoreError("the etcd client is closed")
        started = time.perf_counter()
        reasons: list[str] = []
        n = len(self._clients)
        first = self._current
        try:
            for k in range(n):
                i = (first + k) % n
                gateway = self._clients[i]
                try:
                    answer = gateway.post(gateway.base_url + _API + path, json=payload,
                                          **({"headers": headers} if headers else {}))
                except ConnectionTimeoutError:
                    reasons.append(f"{self.endpoints[i]}: no answer within "
                                   f"{self.timeout_s:g} s")
                    continue
                except ConnectionFailedError as exc:
                    # connection refused or reset, or HTTP 503 (the member has no leader)
                    code, message = _gateway_error(exc)
                    reasons.append(f"{self.endpoints[i]}: "
                                   f"{message if code is not None else _short(message)}")
                    continue
                except Etcd3Exception as exc:
                    code, message = _gateway_error(exc)
                    if code in _UNAVAILABLE_CODES:
                        reasons.append(f"{self.endpoints[i]}: {message}")
                        continue
                    raise _EtcdAnswer(code, message) from None
                except requests.RequestException as exc:
                    reasons.append(f"{self.endpoints[i]}: {_short(str(exc))}")
                    continue
                except ValueError as exc:  # not JSON: not an etcd gateway
                    reasons.append(f"{self.endpoints[i]}: bad answer ({exc})")
                    continue
                self._current = i
                return dict(answer)
            raise ClusterUnavailable(f"etcd does not answer at {', '.join(self.endpoints)}: "
                                     f"{'; '.join(reasons)}")
        finally:
            ETCD_REQUEST_SECONDS.labels(op=op).observe(time.perf_counter() - started)

    def _call(self, op: str, path: str, payload: Mapping[str, Any], what: str
              ) -> dict[str, Any]:
        """:meth:`_post`, with etcd's refusals as :class:`StoreError` naming ``what``."""
        try:
            return self._post(op, path, payload)
        except _EtcdAnswer as exc:
            if "compacted" in exc.message:
                raise StoreError(f"{what}: the revision asked for is compacted "
                                 f"({exc.message})") from None
            raise StoreError(f"{what}: {exc.message}") from None

    # -- status ------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Every endpoint's view of the cluster; never raises::

            {"endpoints": [...], "healthy": bool (some endpoint answers with a leader),
             "status": [{"endpoint", "healthy", "leader" (this member leads), "member_id",
                         "leader_id", "revision", "raft_term", "version", "error"}]}
        """
        rows = []
        for url, gateway in zip(self.endpoints, self._clients, strict=True):
            row: dict[str, Any] = {"endpoint": url, "healthy": False, "leader": False,
                                   "member_id": None, "leader_id": None, "revision": None,
                                   "raft_term": None, "version": None, "error": None}
            started = time.perf_counter()
            try:
                answer = gateway.post(gateway.base_url + _API + "maintenance/status", json={})
                header = answer.get("header", {})
                leader = str(answer.get("leader") or "0")
                member = str(header.get("member_id") or "0")
                row.update(member_id=member, leader_id=None if leader == "0" else leader,
                           leader=leader != "0" and leader == member,
                           revision=_int(header.get("revision")),
                           raft_term=_int(answer.get("raftTerm")),
                           version=answer.get("version"), healthy=leader != "0")
                if leader == "0":
                    row["error"] = "no leader"
            except Etcd3Exception as exc:
                code, message = _gateway_error(exc)
                row["error"] = message if code is not None else _short(message)
            except (requests.RequestException, ValueError) as exc:
                row["error"] = _short(str(exc))
            finally:
                ETCD_REQUEST_SECONDS.labels(op="status").observe(
                    time.perf_counter() - started)
            rows.append(row)
        return {"endpoints": list(self.endpoints),
                "healthy": any(r["healthy"] for r in rows), "status": rows}

    # -- key-value ---------------------------------------------------------------------------
    def get(self, key: str) -> KV | None:
        """``key``'s current value and revisions, or None when absent."""
        answer = self._call("range", "kv/range", {"key": _b64(_key_bytes(key))},
                            f"cannot read {key!r}")
        kvs = answer.get("kvs") or []
        return KV.from_json(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str, *, revision: int | None = None,
                   keys_only: bool = False) -> tuple[list[KV], int]:
        """Every key starting with ``prefix`` in key order, and the revision the read was at
        (``revision``: read the store as it was then; :class:`StoreError` saying "compacted"
        when etcd no longer has it)."""
        start, end = prefix_range(_key_bytes(prefix))
        payload: dict[str, Any] = {"key": _b64(start), "range_end": _b64(end)}
        if revision is not None:
            payload["revision"] = str(revision)
        if keys_only:
            payload["keys_only"] = True
        answer = self._call("range", "kv/range", payload, f"cannot read prefix {prefix!r}")
        kvs = [KV.from_json(kv) for kv in answer.get("kvs") or []]
        return kvs, _int(answer.get("header", {}).get("revision"))

    def txn(self, compare: Sequence[Compare], success: Sequence[Op],
            failure: Sequence[Op] = ()) -> TxnResult:
        """One transaction: if every ``compare`` holds, ``success`` runs, else ``failure``;
        atomically. :class:`StoreError` when etcd refuses it (too many ops, a key twice)."""
        payload = {"compare": [c.to_json() for c in compare],
                   "success": [o.to_json() for o in success],
                   "failure": [o.to_json() for o in failure]}
        answer = self._call("txn", "kv/txn", payload, "transaction refused")
        return TxnResult(succeeded=bool(answer.get("succeeded", False)),
                         revision=_int(answer.get("header", {}).get("revision")),
                         responses=[_op_response(r) for r in answer.get("responses") or []])

    def put(self, key: str, value: bytes | str, lease: int | None = None) -> int:
        """Set ``key``; the store's revision after the write."""
        return self.txn((), [Op.put(key, value, lease)]).revision

    def delete(self, key: str) -> int:
        """Delete ``key`` (nothing when absent); the store's revision after the write."""
        return self.txn((), [Op.delete(key)]).revision

    def compact(self, revision: int) -> None:
        """Drop the history before ``revision`` (reads and watches of older revisions then
        fail with "compacted")."""
        self._call("compact", "kv/compaction", {"revision": str(revision), "physical": True},
                   f"cannot compact to revision {revision}")

    # -- leases ------------------------------------------------------------------------------
    def lease_grant(self, ttl_s: int) -> Lease:
        """A new lease of ``ttl_s`` seconds (etcd may grant more: never less than 1.5
        election timeouts)."""
        answer = self._call("lease_grant", "lease/grant", {"TTL": int(ttl_s), "ID": 0},
                            "cannot grant a lease")
        if answer.get("error"):
            raise StoreError(f"cannot grant a lease: {answer['error']}")
        return Lease(id=_int(answer.get("ID")), ttl_s=_int(answer.get("TTL")))

    def lease_keepalive(self, lease_id: int) -> int:
        """Renew the lease; its TTL again in seconds, or **0 when the lease is gone**
        (expired or revoked: its keys are deleted, grant a new one). Raises only
        :class:`ClusterUnavailable` (or :class:`StoreError`) when etcd cannot answer."""
        answer = self._call("lease_keepalive", "lease/keepalive", {"ID": str(lease_id)},
                            f"cannot renew lease {lease_id:x}")
        # the gateway streams keepalives: one answer wrapped in "result"
        result = answer.get("result", answer)
        return _int(result.get("TTL"))

    def lease_time_to_live(self, lease_id: int) -> int:
        """Seconds the lease has left (etcd rounds), or -1 when it is gone."""
        answer = self._call("lease_ttl", "lease/timetolive", {"ID": str(lease_id)},
                            f"cannot read lease {lease_id:x}")
        return _int(answer.get("TTL"))

    def lease_revoke(self, lease_id: int) -> None:
        """End the lease now, deleting its keys; an unknown or expired lease is not an
        error."""
        try:
            self._post("lease_revoke", "lease/revoke", {"ID": str(lease_id)})
        except _EtcdAnswer as exc:
            if exc.code != _NOT_FOUND:
                raise StoreError(f"cannot revoke lease {lease_id:x}: {exc.message}") from None

    # -- watches -----------------------------------------------------------------------------
    def watch_prefix(self, prefix: str, start_revision: int,
                     on_events: Callable[[list[WatchEvent], int], None],
                     on_error: Callable[[Exception], None]) -> Watch:
        """Watch every key starting with ``prefix`` from ``start_revision`` (included), on a
        thread of its own. See :class:`Watch`."""
        if self._closed:
            raise StoreError("the etcd client is closed")
        return Watch(self, prefix, start_revision, on_events, on_error)

    def close(self) -> None:
        """Close the connections; no call may follow (watches end on their own sockets:
        cancel them first)."""
        self._closed = True
        for gateway in self._clients:
            gateway.session.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EtcdClient({self.endpoints!r})"


class _EtcdAnswer(Exception):
    """etcd answered with a refusal (not an outage): its gRPC code and message."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _StreamBroken(Exception):
    """The watch stream ended or failed; reconnect."""


class Watch:
    """A prefix watch running on its own thread (start it with
    :meth:`EtcdClient.watch_prefix`).

    ``on_events(events, revision)`` gets the events of one watch response, in revision order,
    on the watch thread; ``revision`` is a revision up to which every change of the prefix
    has now been delivered (the response's header revision; for a response carrying events,
    the last event's revision, because etcd catching a watch up over a long backlog sends the
    header of the present before the backlog is all out). A response without events is a
    progress notice (etcd sends them on quiet watches now and then).

    A broken stream (etcd restarted, a member died or lost its leader) is reopened on the
    same or the next endpoint from the last delivered revision + 1, so no event is lost or
    delivered twice. When etcd answers that the revision to resume from is compacted,
    ``on_error`` gets a :class:`StoreError` saying "compacted" and the watch ends (the caller
    reloads and watches again). An exception raised by ``on_events`` also goes to
    ``on_error`` and ends the watch. :meth:`cancel` stops it at once.
    """

    def __init__(self, client: EtcdClient, prefix: str, start_revision: int,
                 on_events: Callable[[list[WatchEvent], int], None],
                 on_error: Callable[[Exception], None]) -> None:
        self.prefix = prefix
        self._endpoints = list(client.endpoints)
        self._endpoint = client._current
        self._connect_timeout_s = client.timeout_s
        self._tls_context = client.tls_context
        self._client = client
        self._stream_auth: dict[str, str] = {}
        self._on_events = on_events
        self._on_error = on_error
        self.last_revision = max(0, start_revision - 1)
        """every change up to this revision has been delivered"""
        self.connected = False
        """the stream is open and etcd confirmed the watch"""
        self._stop = threading.Event()
        self._sock_lock = threading.Lock()
        self._conn: http.client.HTTPConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"etcd-watch {prefix}",
                                        daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """The watch thread runs (False after cancel, compaction or a callback error)."""
        return self._thread.is_alive()

    def cancel(self, timeout_s: float = 5.0) -> None:
        """Stop the watch and wait (at most ``timeout_s``) for its thread to end; no callback
        runs after this returns (unless called from a callback, which cannot wait for its own
        thread)."""
        self._stop.set()
        with self._sock_lock:
            conn = self._conn
        if conn is not None and conn.sock is not None:
            try:
                # wakes the blocked read at once; close() alone would not
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)

    # -- the thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0  # reconnect attempts since the stream last worked
        while not self._stop.is_set():
            url = self._endpoints[self._endpoint]
            try:
                self._stream(url)
                reason = "stream ended"
            except _WatchDone:
                return
            except (_StreamBroken, OSError, http.client.HTTPException, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                worked, self.connected = self.connected, False
                with self._sock_lock:
                    conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()
            if self._stop.is_set():
                return
            if worked:
                failures = 0
            if failures == 0:
                log.warning(f"etcd watch of {self.prefix!r} broke at {url} ({reason}); "
                            f"reopening from revision {self.last_revision + 1}",
                            extra={"event": "etcd_watch_broken", "endpoint": url,
                                   "reason": reason})
            # the next endpoint: the one that failed may be down or cut off
            self._endpoint = (self._endpoint + 1) % len(self._endpoints)
            pause = _WATCH_BACKOFF_S[min(failures, len(_WATCH_BACKOFF_S) - 1)]
            failures += 1
            if self._stop.wait(pause):
                return

    def _stream(self, url: str) -> None:
        parts = urlsplit(url)
        host = parts.hostname or "127.0.0.1"
        conn = http.client.HTTPSConnection(host, parts.port, timeout=self._connect_timeout_s,
                                           context=self._tls_context) \
            if parts.scheme == "https" else \
            http.client.HTTPConnection(host, parts.port, timeout=self._connect_timeout_s)
        with self._sock_lock:
            if self._stop.is_set():
                raise _WatchDone
            self._conn = conn
        start, end = prefix_range(_key_bytes(self.prefix))
        body = json.dumps({"create_request": {
            "key": _b64(start), "range_end": _b64(end),
            "start_revision": str(self.last_revision + 1), "progress_notify": True}})
        auth = self._stream_auth = self._client.auth_headers()
        conn.request("POST", _API + "watch", body=body,
                     headers={"Content-Type": "application/json", **_HEADERS, **auth})
        response = conn.getresponse()
        if response.status != 200:
            text = response.read(300).decode(errors="replace")
            self._refresh_token(text, auth)
            raise _StreamBroken(f"HTTP {response.status}: {text}")
        assert conn.sock is not None
        # reads block until etcd sends something (a quiet watch is normal); cancel() shuts
        # the socket down to end the wait
        conn.sock.settimeout(None)
        while True:
            line = response.readline()
            if not line:
                raise _StreamBroken("etcd closed the stream")
            if not line.strip():
                continue
            message = json.loads(line)
            if "error" in message:
                error = message["error"]
                text = str(error.get("message") if isinstance(error, dict) else error)
                self._refresh_token(text, auth)
                raise _StreamBroken(text)
            self._handle(message.get("result", {}))

    def _refresh_token(self, refusal: str, auth: Mapping[str, str]) -> None:
        """etcd called the token invalid (it restarted and forgot it), or refused the watch
        (which is all a watch with a token etcd forgot gets): a new token for the reconnect
        (a failure to get one is the reconnect's to report)."""
        if auth and (_INVALID_TOKEN in refusal or "permission denied" in refusal):
            try:
                self._client.auth_headers(stale=auth["Authorization"])
            except CpnError as exc:
                log.warning(f"etcd watch of {self.prefix!r}: cannot authenticate again: {exc}",
                            extra={"event": "etcd_watch_auth_failed"})

    def _handle(self, result: Mapping[str, Any]) -> None:
        if self._stop.is_set():
            raise _WatchDone
        # canceled before created: a watch etcd refuses (permission denied) comes back as
        # both at once
        if result.get("canceled"):
            compacted = _int(result.get("compact_revision"))
            if compacted:
                self._fail(StoreError(
                    f"watch of {self.prefix!r}: revision {self.last_revision + 1} is "
                    f"compacted (etcd keeps history from {compacted}); reload"))
            reason = str(result.get("cancel_reason") or "")
            self._refresh_token(reason, self._stream_auth)
            raise _StreamBroken(f"etcd canceled the watch: {reason}")
        if result.get("created"):
            self.connected = True
            log.debug(f"etcd watch of {self.prefix!r} open from {self.last_revision + 1}",
                      extra={"event": "etcd_watch_open"})
            return
        events = [_event(e) for e in result.get("events") or []]
        header = _int(result.get("header", {}).get("revision"))
        revision = events[-1].mod_revision if events else header
        if not events and revision <= self.last_revision:
            return  # nothing new (a progress notice for what we have)
        try:
            self._on_events(events, revision)
        except Exception as exc:  # noqa: BLE001 - handed to on_error, which decides
            log.exception(f"etcd watch of {self.prefix!r}: the event handler failed",
                          extra={"event": "etcd_watch_handler_failed"})
            self._fail(exc)
        self.last_revision = max(self.last_revision, revision)

    def _fail(self, exc: Exception) -> None:
        self._stop.set()
        try:
            self._on_error(exc)
        except Exception:  # noqa: BLE001 - nothing left to tell
            log.exception("etcd watch: the error handler failed",
                          extra={"event": "etcd_watch_handler_failed"})
        raise _WatchDone


class _WatchDone(Exception):
    """The watch ends (cancelled, compacted, or a handler failed)."""


def _event(raw: Mapping[str, Any]) -> WatchEvent:
    kv = KV.from_json(raw.get("kv", {}))
    kind: Literal["put", "delete"] = "delete" if raw.get("type") == "DELETE" else "put"
    return WatchEvent(type=kind, key=kv.key, value=kv.value if kind == "put" else b"",
                      mod_revision=kv.mod_revision, create_revision=kv.create_revision,
                      lease=kv.lease)
