"""The REST API's request bodies and answers (pydantic): what ``/api/v1`` accepts and returns,
and so what its OpenAPI document at ``/docs`` says. Bodies refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field

from controller.network.intents import IntentState
from controller.topology.model import IntentSpec, Match

_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=_NAME_PATTERN)]


class MatchIn(_Body):
    """Which of the traffic between the two hosts the intent covers (unset: all IPv4).
    Ports need ``ip_proto`` 6 (tcp) or 17 (udp): the document states it (``anyOf``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"properties": {"src_port": {"type": "null"}, "dst_port": {"type": "null"}}},
        {"required": ["ip_proto"], "properties": {"ip_proto": {"enum": [6, 17]}}}]})


    ip_proto: int | None = Field(default=None, ge=0, le=255, description="6 tcp, 17 udp")
    src_port: int | None = Field(default=None, ge=0, le=65535)
    dst_port: int | None = Field(default=None, ge=0, le=65535)
    dscp: int | None = Field(default=None, ge=0, le=63)


class IntentIn(_Body):
    """A route request between two hosts with a latency bound. ``police`` needs
    ``min_bandwidth_mbps`` > 0 (the meter's rate): the document states it (``anyOf``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [
        {"properties": {"police": {"const": False}}},
        {"required": ["min_bandwidth_mbps"],
         "properties": {"min_bandwidth_mbps": {"exclusiveMinimum": 0}}}]})


    name: Name | None = None
    src: Name = Field(description="a host; src and dst the same answers 409 conflict")
    dst: Name
    max_latency_ms: float = Field(gt=0, le=1e6, allow_inf_nan=False)
    min_bandwidth_mbps: float = Field(default=0.0, ge=0, le=1e9, allow_inf_nan=False)
    match: MatchIn | None = None
    priority: int = Field(default=100, ge=0, le=65535)
    protection: bool = False
    police: bool = Field(default=False, description="hold the traffic to min_bandwidth_mbps "
                         "with an OpenFlow meter at the ingress switch")
    sla_reroute: bool = Field(default=False, description="when the measured latency of its "
                              "path breaks max_latency_ms (sla violated), route it on measured "
                              "link delays")

    def to_spec(self) -> IntentSpec:
        m = self.match
        return IntentSpec(src=self.src, dst=self.dst, max_latency_ms=self.max_latency_ms,
                          min_bandwidth_mbps=self.min_bandwidth_mbps, name=self.name,
                          match=Match(m.ip_proto, m.src_port, m.dst_port, m.dscp)
                          if m is not None else None,
                          priority=self.priority, protection=self.protection,
                          police=self.police, sla_reroute=self.sla_reroute)


INTENT_BATCH_MAX = 2000
"""the most intents one batch may hold (a cluster commits a batch in one etcd transaction:
its etcd needs ``--max-txn-ops`` above the batch size)"""


class IntentBatchIn(_Body):
    """Many intents added at once (all or nothing)."""

    intents: list[IntentIn] = Field(min_length=1, max_length=INTENT_BATCH_MAX)


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. not_found, infeasible")
    detail: str = Field(description="what went wrong, for people")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="validation failures: loc, msg, type")
    best_latency_ms: float | None = Field(
        default=None, description="infeasible: the best latency any path has")
    bottleneck: dict[str, Any] | None = Field(
        default=None, description="insufficient_bandwidth: the tightest link within the "
        "bound: link, index, residual_mbps, bandwidth_mbps; for a protected intent whose "
        "detour lacks the bandwidth also detour_around (the path link it detours)")
    required_role: str | None = Field(
        default=None, description="forbidden: the role the call needs (viewer, operator, "
        "admin)")


class PathChangeOut(BaseModel):
    time: float
    timestamp: str
    old_path: list[str] | None
    new_path: list[str] | None
    cause: str


class FlowOut(BaseModel):
    table_id: int
    priority: int
    match: dict[str, Any]
    instructions: list[dict[str, Any]]
    cookie: str
    owner: str | None


class IntentFlowOut(FlowOut):
    dpid: str
    switch: str
    installed: bool


class BackupReservationOut(BaseModel):
    link: str = Field(description="a-b: the direction the intent's detours cross the link")
    index: int = Field(description="the link's index in the topology file")
    bandwidth_mbps: float = Field(description="what the link holds for the intent's detours")


class IntentOut(BaseModel):
    id: int
    name: str
    source: Literal["file", "api"]
    src: str
    dst: str
    max_latency_ms: float
    min_bandwidth_mbps: float
    priority: int
    protection: bool
    police: bool = False
    sla_reroute: bool = False
    sla: dict[str, Any] | None = Field(
        default=None, description="SLA monitoring: state (ok, violated), measured_ms "
        "(smoothed measured latency of the path), last_sample_ms, bound_ms, "
        "unmeasured_links, violations (null: not sampled yet, or no path)")
    protection_note: str = Field(default="", description="protection: links of the path "
                                 "without a detour (none exists, the in-port clash, or no "
                                 "detour with the intent's bandwidth), or with one over the "
                                 "latency bound")
    backup_reservations: list[BackupReservationOut] = Field(
        default_factory=list, description="protection with min_bandwidth_mbps: the links "
        "the intent's detours use beyond its path, each holding its bandwidth (no sharing "
        "between intents)")
    match: dict[str, int] | None
    mpls_label: int | None = Field(default=None, description="label the intent's ingress "
                                   "pushes: the first segment of the tunnel its traffic rides "
                                   "from its second switch on (None: flows on every switch of "
                                   "the path, as for protected intents, or no path)")
    mpls_labels: list[int] = Field(default_factory=list, description="the labels its traffic "
                                   "carries, one per switch after the ingress (each switch "
                                   "swaps to the next; the last pops); segments are shared "
                                   "by every intent with the same path tail from there on")
    state: IntentState
    reason: str
    path: list[str] | None
    latency_ms: float | None
    cost: float | None
    history: list[PathChangeOut]


class IntentDetailOut(IntentOut):
    flows: list[IntentFlowOut]


class IntentDeletedOut(BaseModel):
    id: int
    deleted: bool
    flows_removed: int


class PathOut(BaseModel):
    nodes: list[str]
    latency_ms: float
    cost: float
    hops: int
    bottleneck_mbps: float | None = Field(description="least residual bandwidth on the path; "
                                          "null for a path with no link")
    chosen: bool = Field(description="the path the engine picks (the first)")


class PathsOut(BaseModel):
    src: str
    dst: str
    src_node: str
    dst_node: str
    max_latency_ms: float | None
    min_bandwidth_mbps: float | None
    disjoint: bool
    compute_ms: float
    paths: list[PathOut]


class HealthClusterOut(BaseModel):
    """This controller's place in the cluster, as ``/health`` reports it."""

    mode: Literal["cluster", "standalone"]
    member_id: str | None = Field(description="this member (null: standalone)")
    writable: bool = Field(description="false: writes answer 503 cluster_unavailable")
    stale: bool = Field(description="reads may lag the cluster (cut off from etcd)")
    applied_revision: int | None = Field(description="the etcd revision this member has "
                                         "applied (null: standalone)")


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: the store does not "
                                              "answer, or this member refuses writes")
    topology: str
    switches_total: int
    switches_connected: int
    switches_synced: int
    intents: int
    store_ok: bool
    uptime_s: float
    cluster: HealthClusterOut


# The cluster's answers admit fields beyond those documented here (extra="allow"): what a
# member adds to its status reaches clients instead of being dropped on the way out.
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class EtcdEndpointOut(_Open):
    endpoint: str
    healthy: bool
    leader: bool | None = None
    revision: int | None = None
    error: str | None = None


class EtcdOut(_Open):
    endpoints: list[str]
    healthy: bool
    status: list[EtcdEndpointOut]


class ClusterMemberOut(_Open):
    id: str
    api_url: str | None = Field(description="where this member's REST API answers")
    openflow: str | None = Field(description="where it listens for switches (host:port)")
    alive: bool = Field(description="its lease in etcd is live")
    applied_revision: int | None
    masters: int = Field(description="switches it is master of")
    self: bool = Field(description="the member that answered this request")


class ClusterSwitchOut(_Open):
    dpid: int
    name: str
    master: str | None = Field(description="member id mastering it (null: none now)")
    standbys: list[str] = Field(description="members connected to it as standbys")
    generation_id: int | None = Field(description="the OpenFlow role generation of its "
                                      "mastership (null: standalone)")
    role_here: str | None = Field(description="this member's role at the switch: master, "
                                  "slave, equal (standalone), or null (not connected)")


class ClusterOut(_Open):
    """The cluster as the answering member sees it (``controller.cluster.view``)."""

    mode: Literal["cluster", "standalone"]
    member_id: str | None
    writable: bool
    stale: bool
    applied_revision: int | None
    etcd: EtcdOut | None = Field(description="null: standalone")
    members: list[ClusterMemberOut]
    switches: list[ClusterSwitchOut]


ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 409, 422, 500)}
LIVE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 503: {"model": ErrorBody}}
"""Reads that ask the switch itself: 503 when it cannot answer (``source=switch``)."""
CLUSTER_UNAVAILABLE_DOC = ("cluster_unavailable: this member is cut off from etcd (or etcd "
                           "has no quorum); nothing changed, reads still answer")
"""The 503 every write may give (an ``ErrorBody``; ``controller.api.rest`` adds it to each
write of the OpenAPI document)."""
ReadSource = Annotated[
    Literal["auto", "switch", "controller"],
    Query(description="switch: read it from the switch now (503 when it cannot answer); "
                      "controller: the controller's view; auto (default): the switch when it "
                      "answers, else the controller's view with switch_error saying why")]
