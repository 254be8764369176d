"""The controller's runtime settings: one typed object, built from four sources.

Lowest to highest: the defaults below < a YAML config file (``cpn-controller --config FILE``)
< environment variables < command-line flags. Every setting is ``<section>.<key>``
(``openflow.port``); its environment variable is ``CPN_<SECTION>_<KEY>`` in upper case
(``CPN_OPENFLOW_PORT``); some have a flag (:data:`FLAGS`, e.g. ``--ofp-port``).

A config file has the same shape as ``cpn-controller --print-config``'s output::

    topology:
      file: topologies/national.yaml   # relative paths: from the config file's directory
    openflow:
      port: 6653
    network:
      fallback: drop

Values are YAML scalars and must have the setting's type (``port: "6653"`` or ``port: true``
is an error, not a conversion). An environment variable's value is read as a YAML scalar too
(``CPN_OPENFLOW_PORT=6653`` is a number), except for text settings, which take it as it is;
an empty variable counts as unset. ``CPN_API_TOKEN`` is not a setting: it is the API's write
token itself (see :func:`controller.api.server.load_token`), kept out of files and of
``--print-config``.

Any problem raises :class:`SettingsError` naming where the value came from: the file and
line, the environment variable, or the flag, and the setting.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from controller.errors import CpnError, TopologyError
from controller.topology.files import ZOO_PREFIX
from controller.topology.loader import yaml_with_lines

__all__ = ["ENV_PREFIX", "FLAGS", "RESERVED_ENV", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "CPN_"
RESERVED_ENV = frozenset({"CPN_API_TOKEN"})
"""``CPN_``-prefixed variables of a settings section that are not settings."""

DEFAULT_SOURCE = "default"


class SettingsError(CpnError):
    """Settings that cannot be used: each problem is ``(where, setting, message)``, where
    ``where`` is ``FILE:LINE``, ``FILE``, ``environment variable CPN_...``, ``flag --...`` or
    ``default``. ``source``/``line``/``field`` are the first problem's."""

    code = "bad_settings"

    def __init__(self, problems: list[tuple[str, str, str]], *, source: str | None = None,
                 line: int | None = None) -> None:
        self.problems = problems
        self.source = source
        self.line = line
        self.field = problems[0][1] if problems else None
        super().__init__("\n".join(f"{where}: {setting + ': ' if setting else ''}{message}"
                                   for where, setting, message in problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)


class TopologySettings(_Section):
    file: str | None = None
    """the topology the controller runs: a YAML file or zoo:NAME (a shipped Topology Zoo
    map); required to start"""


class OpenflowSettings(_Section):
    host: str = "127.0.0.1"
    """address the OpenFlow listener binds (0.0.0.0: every interface)"""
    port: int = Field(6653, ge=0, le=65535)
    """OpenFlow TCP port"""
    barrier_timeout_s: float = Field(5.0, gt=0)
    """the least a change waits for a switch's barrier reply before the switch is given up
    on (stalled, its table read again); a switch whose measured round trips are longer is
    waited for longer"""
    barrier_timeout_max_s: float = Field(60.0, gt=0)
    """the most a change waits for one barrier reply, however slow the switch has been"""
    delete_delay_s: float = Field(0.0, ge=0, le=10)
    """how long a change's deletes of old flows wait after its new flows are confirmed: Open
    vSwitch updates its datapath flow cache after the barrier reply, and deleting at once
    drops packets the cache still sends the old way (0: delete at once)"""
    echo_interval_s: float = Field(5.0, gt=0, le=3600)
    """seconds between the echo requests os-ken sends each switch"""
    echo_misses: int = Field(3, ge=1, le=100)
    """a switch that leaves this many echo requests in a row unanswered is disconnected"""
    tls_cert: str | None = None
    """PEM certificate the OpenFlow listener presents: with tls_key and tls_ca, OpenFlow runs
    over TLS and only switches whose certificate tls_ca signed are accepted (null: plain
    TCP)"""
    tls_key: str | None = None
    """PEM private key of tls_cert"""
    tls_ca: str | None = None
    """PEM CA certificate(s) that must have signed a switch's certificate"""

    @model_validator(mode="after")
    def _tls_all_or_none(self) -> OpenflowSettings:
        given = {key: getattr(self, key) is not None for key in ("tls_cert", "tls_key", "tls_ca")}
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(key for key, ok in given.items() if not ok)
            raise ValueError("OpenFlow over TLS needs tls_cert, tls_key and tls_ca together: "
                             f"{missing} missing")
        if self.barrier_timeout_max_s < self.barrier_timeout_s:
            raise ValueError(f"barrier_timeout_max_s ({self.barrier_timeout_max_s:g}) is below "
                             f"barrier_timeout_s ({self.barrier_timeout_s:g})")
        return self


class NetworkSettings(_Section):
    fallback: Literal["best_effort", "drop"] = "best_effort"
    """what an intent's traffic does while no path meets its bounds (best_effort:
    least-latency forwarding)"""
    fast_reroute: bool = False
    """a bypass tunnel around every link, taken by the switches themselves the moment a port
    goes down, before the controller re-routes (fast-failover groups; needs Open vSwitch:
    the bypass's far end rewrites in_port)"""
    startup_grace_s: float = Field(10.0, ge=0)
    """switches not yet connected count as present until this long passes with no switch
    connecting for the first time (at most six times this after the first arrival)"""
    lldp_interval_s: float = Field(2.0, gt=0)
    """every live port sends an LLDP probe this often (on the controller's 1 s tick; less
    than lldp_timeout_s)"""
    lldp_max_pps: float = Field(100.0, gt=0)
    """the most LLDP probes sent a second over the whole network (the most overdue ports
    first); when a round of every port takes longer at this rate, the settled interval and
    the LLDP timeout stretch to it"""
    lldp_timeout_s: float = Field(10.0, gt=0)
    """a link LLDP has not confirmed for this long is reported missing"""
    lldp_auth: bool = True
    """sign LLDP probes with an HMAC (secret: <state.dir>/lldp-secret, or etcd when
    clustered) and drop LLDP that is unsigned, wrongly signed, stale or replayed (false:
    unsigned discovery, for interop; every member of a cluster must agree)"""
    lldp_max_age_s: float | None = Field(None, gt=0)
    """a signed probe older than this is stale (null: 3 x lldp_interval_s)"""
    lldp_clock_skew_s: float = Field(0.5, ge=0)
    """allowance for clock differences between cluster members when checking a probe's age"""
    port_stats_interval_s: float = Field(2.0, ge=0)
    """port statistics (link load) are polled this often (0: never)"""
    gc_reclaim_interval_s: float = Field(600.0, ge=0)
    """the plan objects frozen after each change go back to Python's cyclic garbage
    collector this often, when no change is in flight (0: never)"""
    packet_in_pps: int = Field(1000, ge=0, le=10_000_000)
    """each switch sends packets to destinations no flow knows to the controller through a
    meter of this many packets/s (0: no meter)"""
    packet_in_control_pps: int = Field(2000, ge=0, le=10_000_000)
    """LLDP, and apart ARP, reach the controller through a meter of this many packets/s each
    per switch (0: no meter)"""
    max_hosts_per_port: int = Field(64, ge=0)
    """hosts learned at one host port at most (file-host conflicts recorded there count
    alike; 0: no limit)"""
    host_move_limit: int = Field(5, ge=0)
    """an IPv4 address that moves (another port or MAC) more than this many times within
    host_move_window_s is banned from learning for learn_ban_s (0: never banned)"""
    host_move_window_s: float = Field(60.0, gt=0)
    """the window host_move_limit counts moves in"""
    learn_ban_s: float = Field(120.0, ge=0)
    """how long an address that moved too often is not learned (0: never banned)"""
    delay_source: Literal["lldp", "external", "max"] = "external"
    """which link delay routes and SLA checks use: external (a fresh measurement from PUT
    /links/{index}/measurements, else LLDP's), lldp (LLDP's always) or max (the larger of the
    two fresh ones)"""
    measurement_max_age_s: float = Field(30.0, gt=0)
    """an external link measurement older than this is no longer used"""
    sla_interval_s: float = Field(1.0, ge=0)
    """every intent's measured path latency is sampled this often (0: no SLA monitoring)"""
    sla_samples: int = Field(3, ge=1, le=1000)
    """an intent violates its SLA after this many samples in a row over its bound, and is
    restored after as many within it"""
    sla_ewma_alpha: float = Field(0.3, gt=0, le=1)
    """weight of the newest sample in the smoothed (EWMA) measured latency (1: no
    smoothing)"""
    bandwidth_admission: Literal["reserved", "measured"] = "reserved"
    """what an intent's bandwidth reservation is admitted against on each link direction:
    the capacity minus the reservations (reserved), or minus also the best-effort traffic
    port statistics measured beyond them (measured; a lone controller only: a cluster member
    admits on reservations)"""

    @model_validator(mode="after")
    def _probes_within_timeout(self) -> NetworkSettings:
        if self.lldp_interval_s >= self.lldp_timeout_s:
            raise ValueError(f"lldp_interval_s ({self.lldp_interval_s:g}) must be less than "
                             f"lldp_timeout_s ({self.lldp_timeout_s:g}), or every link times "
                             "out between two probes")
        return self


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    """REST API address (on a loopback address reads need no token; beyond loopback the API
    needs tls_cert and tls_key, or allow_plaintext)"""
    port: int = Field(8080, ge=0, le=65535)
    """REST API port"""
    token_file: str | None = None
    """file holding the bearer token for write calls (null: $CPN_API_TOKEN, else a token
    generated into <state.dir>/api-token)"""
    intent_timeout_s: float = Field(10.0, gt=0)
    """an intent call waits this long for its flows to be confirmed before it answers
    pending"""
    tls_cert: str | None = None
    """PEM certificate (chain) the API serves HTTPS with (null: plain HTTP); needs tls_key"""
    tls_key: str | None = None
    """PEM private key of tls_cert"""
    tokens_file: str | None = None
    """YAML file of named tokens with roles, holding only their SHA-256 (null:
    <state.dir>/api-tokens.yaml when it exists; see docs/security.md)"""
    audit_retention: int = Field(10000, ge=1)
    """the audit trail keeps this many of the latest write records (older ones are
    dropped)"""
    write_rate_per_s: float = Field(100.0, ge=0)
    """writes each token may make per second, sustained (0: no limit)"""
    write_burst: int = Field(300, ge=1)
    """writes a token may make at once before write_rate_per_s applies"""
    allow_plaintext: bool = False
    """serve the API over plain HTTP on an address that is not loopback (bearer tokens in
    clear text on the network; logged as a warning at start); without it such a start is
    refused unless tls_cert and tls_key are set"""

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both or neither")
        return self


class ComputeSettings(_Section):
    metrics_interval_s: float = Field(5.0, gt=0, le=3600)
    """sites report their metrics (push) or are scraped (pull) this often; metrics older than
    three intervals are stale"""
    scrape_timeout_s: float = Field(2.0, gt=0, le=60)
    """a scrape of a site's metrics_url that takes longer fails"""
    stale_policy: Literal["no_new_clients", "down", "use_last"] = "no_new_clients"
    """what a site whose metrics went stale is: no_new_clients (keeps its clients, takes no
    new ones), down (treated as down) or use_last (its last metrics still count); a site
    that never reported is judged by its static data, and the cats policy never takes a
    site without fresh metrics"""
    move_gain_ms: float = Field(2.0, ge=0, le=3_600_000)
    """an anycast client moves for load (nearest and cats services) only when its delay falls
    by at least this many ms ..."""
    move_gain_pct: float = Field(20.0, ge=0, le=100)
    """... and by at least this percentage of its current delay ..."""
    move_hold_s: float = Field(10.0, ge=0, le=86400)
    """... continuously for this long; moves for failure are immediate"""
    max_moves: int = Field(10, ge=0, le=1_000_000)
    """at most this many load moves per service in move_interval_s"""
    move_interval_s: float = Field(60.0, gt=0, le=86400)
    """the window of max_moves"""
    rebalance_interval_s: float = Field(2.0, gt=0, le=3600)
    """how often load moves are considered; a client whose NAT flow counted no packet between
    two looks, and for move_idle_s, is idle and may move (a busy client keeps its site)"""
    move_idle_s: float = Field(4.0, ge=0, le=86400)
    """a client moves for load only once its NAT flow counted no packet for this long (a
    client waiting for a slow answer sends nothing meanwhile: one quiet look is not enough)"""

    @model_validator(mode="after")
    def _scrape_within_interval(self) -> ComputeSettings:
        if self.scrape_timeout_s > self.metrics_interval_s:
            raise ValueError(f"scrape_timeout_s ({self.scrape_timeout_s:g}) must not exceed "
                             f"metrics_interval_s ({self.metrics_interval_s:g})")
        return self


class StateSettings(_Section):
    dir: str | None = None
    """where intents, compute sites and the API token persist (null:
    $XDG_DATA_HOME/cpn-controller or ~/.local/share/cpn-controller)"""
    snapshot_file: str | None = None
    """intents, switches and links are written here as JSON every second (null: nowhere)"""


class ClusterSettings(_Section):
    endpoints: str | None = None
    """etcd client URLs, comma-separated, of the cluster this controller joins as a member
    (null: run alone with the SQLite store in state.dir)"""
    member_id: str | None = None
    """this member's name in the cluster, unique among its live members (required with
    endpoints)"""
    prefix: str = "/cpn"
    """etcd key prefix of the cluster's state (several clusters may share one etcd)"""
    lease_ttl_s: int = Field(1, ge=1)
    """a member whose lease etcd has not seen renewed for this long loses its switches (a
    dead process's lease is revoked at once by the others)"""
    peer_host: str = "127.0.0.1"
    """address of this member's peer-watch listener (the other members connect to it and
    learn of this process's death when the connection ends)"""
    etcd_timeout_s: float = Field(2.0, gt=0)
    """an etcd request that takes longer fails over to the next endpoint"""
    etcd_ca: str | None = None
    """PEM CA certificate that signed etcd's server certificates: with etcd_cert and
    etcd_key, etcd is reached over TLS (https:// endpoints) with this member's client
    certificate (null: the endpoints' scheme decides, no client certificate)"""
    etcd_cert: str | None = None
    """PEM client certificate this member presents to etcd (etcd's --client-cert-auth)"""
    etcd_key: str | None = None
    """PEM private key of etcd_cert"""
    etcd_user: str | None = None
    """etcd user this member authenticates as when etcd's authentication is enabled (with
    etcd_password_file; null: no authentication)"""
    etcd_password_file: str | None = None
    """file holding etcd_user's password (its first line)"""

    @model_validator(mode="after")
    def _member_needs_id(self) -> ClusterSettings:
        if self.endpoints is not None and not self.member_id:
            raise ValueError("a cluster member needs member_id (--member-id NAME)")
        if self.member_id is not None and not self.member_id.replace("-", "").replace(
                "_", "").replace(".", "").isalnum():
            raise ValueError(f"member_id {self.member_id!r}: use letters, digits, '-', "
                             "'_' and '.' only")
        given = {key: getattr(self, key) is not None
                 for key in ("etcd_ca", "etcd_cert", "etcd_key")}
        if any(given.values()) and not all(given.values()):
            missing = ", ".join(key for key, ok in given.items() if not ok)
            raise ValueError("etcd over TLS needs etcd_ca, etcd_cert and etcd_key together: "
                             f"{missing} missing")
        if (self.etcd_user is None) != (self.etcd_password_file is None):
            raise ValueError("etcd authentication needs etcd_user and etcd_password_file "
                             "together")
        return self


class LoggingSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    """lowest level logged"""
    file: str | None = None
    """log here instead of stderr"""


_PATH_SETTINGS = frozenset({"topology.file", "api.token_file", "state.dir",
                            "state.snapshot_file", "logging.file", "api.tls_cert",
                            "api.tls_key", "api.tokens_file", "openflow.tls_cert",
                            "openflow.tls_key", "openflow.tls_ca", "cluster.etcd_ca",
                            "cluster.etcd_cert", "cluster.etcd_key",
                            "cluster.etcd_password_file"})
"""Settings naming a file or directory: relative values in a config file are taken from the
config file's directory."""

FLAGS: dict[str, str] = {
    "topology.file": "--topology",
    "openflow.host": "--ofp-host",
    "openflow.port": "--ofp-port",
    "openflow.tls_cert": "--ofp-tls-cert",
    "openflow.tls_key": "--ofp-tls-key",
    "openflow.tls_ca": "--ofp-tls-ca",
    "network.fallback": "--fallback",
    "network.fast_reroute": "--fast-reroute",
    "network.startup_grace_s": "--startup-grace",
    "network.port_stats_interval_s": "--port-stats-interval",
    "api.host": "--api-host",
    "api.port": "--api-port",
    "api.token_file": "--api-token-file",
    "api.tls_cert": "--api-tls-cert",
    "api.tls_key": "--api-tls-key",
    "api.tokens_file": "--api-tokens-file",
    "api.allow_plaintext": "--api-allow-plaintext",
    "state.dir": "--state-dir",
    "state.snapshot_file": "--state-file",
    "cluster.endpoints": "--cluster",
    "cluster.member_id": "--member-id",
    "cluster.etcd_ca": "--etcd-ca",
    "cluster.etcd_cert": "--etcd-cert",
    "cluster.etcd_key": "--etcd-key",
    "cluster.etcd_user": "--etcd-user",
    "cluster.etcd_password_file": "--etcd-password-file",
    "logging.level": "--log-level",
    "logging.file": "--log-file",
}
"""setting -> the ``cpn-controller`` flag that sets it"""


class Settings(BaseModel):
    """Everything an operator tunes in a running controller, by section. Build it with
    :func:`load_settings`; :meth:`source` says where each value came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topology: TopologySettings = TopologySettings()
    openflow: OpenflowSettings = OpenflowSettings()
    network: NetworkSettings = NetworkSettings()
    api: ApiSettings = ApiSettings()
    compute: ComputeSettings = ComputeSettings()
    state: StateSettings = StateSettings()
    cluster: ClusterSettings = ClusterSettings()
    logging: LoggingSettings = LoggingSettings()

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def sections(cls) -> dict[str, type[_Section]]:
        """section name -> its model, in order."""
        return {name: field.annotation for name, field in cls.model_fields.items()
                if isinstance(field.annotation, type)}

    @classmethod
    def paths(cls) -> Iterator[str]:
        """Every setting as ``section.key``, in order."""
        for section, model in cls.sections().items():
            for key in model.model_fields:
                yield f"{section}.{key}"

    @classmethod
    def describe(cls, path: str) -> str:
        """The setting's one-line description."""
        section, key = path.split(".")
        doc = cls.sections()[section].model_fields[key].description or ""
        return " ".join(doc.split())

    @classmethod
    def default(cls, path: str) -> Any:
        section, key = path.split(".")
        return cls.sections()[section].model_fields[key].default

    @staticmethod
    def env_var(path: str) -> str:
        """``network.startup_grace_s`` -> ``CPN_NETWORK_STARTUP_GRACE_S``."""
        return ENV_PREFIX + path.replace(".", "_").upper()

    def get(self, path: str) -> Any:
        section, key = path.split(".")
        return getattr(getattr(self, section), key)

    def source(self, path: str) -> str:
        """Where ``section.key`` came from: ``default``, ``FILE:LINE``,
        ``environment variable CPN_...`` or ``flag --...``."""
        return self._sources.get(path, DEFAULT_SOURCE)

    def to_yaml(self) -> str:
        """The effective settings as a config file, each value followed by its source as a
        comment (loading the text back gives the same settings)."""
        rows: list[tuple[str, str]] = []
        for section, model in self.sections().items():
            rows.append((f"{section}:", ""))
            for key in model.model_fields:
                path = f"{section}.{key}"
                rows.append((f"  {key}: {_scalar(self.get(path))}", self.source(path)))
        width = max(len(text) for text, _ in rows) + 2
        lines = ["# cpn-controller settings: value, then where it came from"]
        lines += [f"{text:<{width}}# {src}" if src else text for text, src in rows]
        return "\n".join(lines) + "\n"


def _scalar(value: Any) -> str:
    """``value`` as a YAML scalar that reads back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value)
    plain_ok = text and "#" not in text and text == text.strip()
    try:
        if plain_ok and yaml.safe_load(f"k: {text}") == {"k": text}:
            return text
    except yaml.YAMLError:
        pass
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text_setting(path: str) -> bool:
    """True when the setting holds text (an environment value is then taken as it is)."""
    section, key = path.split(".")
    annotation = Settings.sections()[section].model_fields[key].annotation
    return annotation not in (int, float, bool, float | None)


def _from_file(config_file: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(setting -> value, setting -> ``FILE:LINE``) of a config file."""
    source = str(config_file)
    try:
        text = Path(config_file).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SettingsError([(source, "", "config file not found")], source=source) from None
    except UnicodeDecodeError as exc:
        raise SettingsError([(source, "", f"config file is not UTF-8: {exc.reason}")],
                            source=source) from None
    except OSError as exc:
        raise SettingsError([(source, "", f"cannot read config file: {exc.strerror}")],
                            source=source) from None
    try:
        data, lines = yaml_with_lines(text, source)
    except TopologyError as exc:
        at = source if exc.line is None else f"{source}:{exc.line}"
        raise SettingsError([(at, exc.field or "", exc.message)], source=source,
                            line=exc.line) from None

    def where(*path: str) -> str:
        line = lines.get(path)
        return source if line is None else f"{source}:{line}"

    sections = Settings.sections()
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[tuple[str, str, str]] = []
    if not isinstance(data, dict):
        problems.append((where(), "", "the top level must be a mapping of sections "
                         f"({', '.join(sections)})"))
        data = {}
    for section, body in data.items():
        if section not in sections:
            problems.append((where(section), section,
                             f"unknown section{_did_you_mean(section, sections)}"))
            continue
        if not isinstance(body, dict):
            problems.append((where(section), section,
                             "must be a mapping of keys (e.g. "
                             f"{next(iter(sections[section].model_fields))}: ...)"))
            continue
        known = sections[section].model_fields
        for key, value in body.items():
            path = f"{section}.{key}"
            if key not in known:
                problems.append((where(section, key), path,
                                 f"unknown key{_did_you_mean(key, known)}"))
                continue
            if path in _PATH_SETTINGS and isinstance(value, str) and value \
                    and not value.startswith(ZOO_PREFIX):
                value = str(Path(config_file).parent / Path(value).expanduser())
            values[path] = value
            sources[path] = where(section, key)
    if problems:
        line = lines.get(tuple(problems[0][1].split("."))) if problems[0][1] else None
        raise SettingsError(problems, source=source, line=line)
    return values, sources


def _did_you_mean(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f" {name!r} (known: {', '.join(known)}){hint}"


def _from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """(setting -> value, setting -> ``environment variable X``) of ``CPN_*`` variables.
    A ``CPN_<SECTION>_...`` variable that names no setting is an error (a typo would be
    ignored otherwise); other ``CPN_*`` variables (``CPN_URL`` of cpnctl) are not ours."""
    by_var = {Settings.env_var(path): path for path in Settings.paths()}
    prefixes = tuple(f"{ENV_PREFIX}{section.upper()}_" for section in Settings.sections())
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[tuple[str, str, str]] = []
    for var in sorted(environ):
        raw = environ[var]
        path = by_var.get(var)
        if path is None:
            if var.startswith(prefixes) and var not in RESERVED_ENV:
                close = difflib.get_close_matches(var, list(by_var), n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append((f"environment variable {var}", "",
                                 f"names no setting{hint}"))
            continue
        if raw == "":
            continue
        value: Any = raw
        if not _text_setting(path):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
        elif path in _PATH_SETTINGS:
            value = os.path.expanduser(raw)
        values[path] = value
        sources[path] = f"environment variable {var}"
    if problems:
        raise SettingsError(problems)
    return values, sources


def load_settings(config_file: str | Path | None = None, *,
                  environ: Mapping[str, str] | None = None,
                  flags: Mapping[str, Any] | None = None) -> Settings:
    """Settings from the defaults, then ``config_file`` (YAML), then ``environ`` (default:
    the process environment), then ``flags`` (setting -> value of each flag given, see
    :data:`FLAGS`). Raises :class:`SettingsError` naming file and line, variable or flag,
    and the setting, for a missing or unreadable file, an unknown key or a value of the
    wrong type or range."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if config_file is not None:
        file_values, file_sources = _from_file(config_file)
        values.update(file_values)
        sources.update(file_sources)
    env_values, env_sources = _from_env(os.environ if environ is None else environ)
    values.update(env_values)
    sources.update(env_sources)
    for path, value in (flags or {}).items():
        if path not in FLAGS:
            raise ValueError(f"{path!r} has no flag")
        values[path] = value
        sources[path] = f"flag {FLAGS[path]}"
    nested: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        section, key = path.split(".")
        nested.setdefault(section, {})[key] = value
    try:
        settings = Settings.model_validate(nested, strict=True)
    except ValidationError as exc:
        raise _explain(exc, sources) from None
    settings._sources.update(sources)
    return settings


def _explain(exc: ValidationError, sources: Mapping[str, str]) -> SettingsError:
    """The validation errors as problems, each at the source of the value it is about."""
    problems: list[tuple[str, str, str]] = []
    first_line: int | None = None
    first_source: str | None = None
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if len(loc) >= 2:
            path = f"{loc[0]}.{loc[1]}"
            involved = [path]
            message = f"{err['msg']} (got {err['input']!r})"
        else:  # a check across keys of one section: at each key it names that was given
            path = loc[0] if loc else ""
            message = str(err.get("ctx", {}).get("error", err["msg"]))
            involved = [p for p in Settings.paths()
                        if p.startswith(f"{path}.") and p.split(".")[1] in message
                        and p in sources] or [path]
        where = ", ".join(sources.get(p, DEFAULT_SOURCE) for p in involved)
        problems.append((where, path, message))
        if first_source is None:
            head = where.split(", ")[0]
            file_part, _, line_part = head.rpartition(":")
            if line_part.isdigit():
                first_source, first_line = file_part, int(line_part)
            else:
                first_source = head
    return SettingsError(problems, source=first_source, line=first_line)
