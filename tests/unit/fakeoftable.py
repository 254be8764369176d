"""A fake multi-switch OpenFlow 1.3 network for unit tests (model: Faucet's ``fakeoftable``).

It applies the os-ken ``OFPFlowMod`` objects the controller generates (ADD, DELETE,
DELETE_STRICT with cookie masks; apply-actions output and goto-table instructions; an empty
instruction list drops) and answers "where does this packet go?": :meth:`FakeNetwork.trace`
follows a packet from a host through the switches along the :class:`Wiring` until it reaches a
host port, the controller, a drop, a dead link or a loop.

It is written against the OpenFlow 1.3 spec, independently of the controller's own FlowEntry
model, so the tests check the messages, not the controller's idea of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from controller.topology.wiring import Wiring

CONTROLLER = ofp.OFPP_CONTROLLER
IN_PORT = ofp.OFPP_IN_PORT


class FakeOFError(AssertionError):
    """The messages did something a real switch would reject or leave undefined."""


@dataclass
class FakeFlow:
    table_id: int
    priority: int
    match: dict[str, Any]
    instructions: list[Any]
    cookie: int
    packet_count: int = 0


_MASKABLE = frozenset({"ipv4_src", "ipv4_dst"})
"""masked fields that are modelled: (address, mask) of IPv4 addresses"""


def _match_dict(match: parser.OFPMatch) -> dict[str, Any]:
    out = {}
    for k, v in match.items():
        if isinstance(v, tuple) and k not in _MASKABLE:
            raise FakeOFError(f"masked match fields are not modelled: {k}={v}")
        out[k] = v
    return out


def _ipv4_int(address: str) -> int:
    return int(ipaddress.IPv4Address(address))


def _field_matches(fields: dict[str, Any], k: str, v: Any) -> bool:
    """A packet field against a flow's match value (an IPv4 (address, mask) pair matches
    the packet's address under the mask, as OpenFlow 1.3 specifies)."""
    if k not in fields:
        return False
    if isinstance(v, tuple):
        mask = _ipv4_int(v[1])
        return _ipv4_int(fields[k]) & mask == _ipv4_int(v[0]) & mask
    return bool(fields[k] == v)


class FakeSwitch:
    """The flow tables of one switch."""

    def __init__(self, dpid: int, n_tables: int = 8) -> None:
        self.dpid = dpid
        self.tables: dict[int, list[FakeFlow]] = {t: [] for t in range(n_tables)}
        self.barriers = 0
        self.packet_outs: list[parser.OFPPacketOut] = []
        self.groups: dict[int, list[tuple[int, int]]] = {}
        """fast-failover group id -> buckets as (watch port, output port)"""
        self.group_actions: dict[int, list[list[Any]]] = {}
        """fast-failover group id -> each bucket's actions (MPLS push and set-field before
        the one output)"""
        self.meters: dict[int, int] = {}
        """meter id -> DROP band rate (kbit/s, or packets/s for a meter in packets)"""
        self.errors: list[str] = []
        """OpenFlow errors the switch would answer (meter exists, unknown meter)"""

    def apply(self, msg: Any) -> None:
        if isinstance(msg, parser.OFPBarrierRequest):
            self.barriers += 1
        elif isinstance(msg, parser.OFPPacketOut):
            self.packet_outs.append(msg)
        elif isinstance(msg, parser.OFPFlowMod):
            self._flowmod(msg)
        elif isinstance(msg, parser.OFPMeterMod):
            self._metermod(msg)
        elif isinstance(msg, parser.OFPGroupMod):
            self._groupmod(msg)
        else:
            raise FakeOFError(f"unexpected message {type(msg).__name__}")

    def _groupmod(self, gm: parser.OFPGroupMod) -> None:
        """Fast-failover groups only; ADD of an existing group and MODIFY of a missing one
        are recorded errors; DELETE also deletes the flows that use the group."""
        if gm.command == ofp.OFPGC_DELETE:
            self.groups.pop(gm.group_id, None)
            self.group_actions.pop(gm.group_id, None)
            for t, table in self.tables.items():
                self.tables[t] = [f for f in table if gm.group_id not in _groups_of(f)]
            return
        if gm.type != ofp.OFPGT_FF:
            raise FakeOFError("only fast-failover groups are modelled")
        buckets = []
        for b in gm.buckets:
            outs = [a.port for a in b.actions if isinstance(a, parser.OFPActionOutput)]
            if len(outs) != 1 or not isinstance(b.actions[-1], parser.OFPActionOutput):
                raise FakeOFError("a bucket must end in exactly one output")
            buckets.append((b.watch_port, outs[0]))
        exists = gm.group_id in self.groups
        if gm.command == ofp.OFPGC_ADD and exists:
            self.errors.append(f"group {gm.group_id} exists")
        elif gm.command == ofp.OFPGC_MODIFY and not exists:
            self.errors.append(f"group {gm.group_id} unknown")
        else:
            self.groups[gm.group_id] = buckets
            self.group_actions[gm.group_id] = [list(b.actions) for b in gm.buckets]

    def _metermod(self, mm: parser.OFPMeterMod) -> None:
        """OpenFlow 1.3 meter semantics: ADD of an existing meter and MODIFY of a missing
        one are errors (recorded, as the switch would answer them); DELETE also deletes
        every flow that uses the meter."""
        if mm.command == ofp.OFPMC_DELETE:
            self.meters.pop(mm.meter_id, None)
            for t, table in self.tables.items():
                self.tables[t] = [f for f in table if not any(
                    isinstance(i, parser.OFPInstructionMeter) and i.meter_id == mm.meter_id
                    for i in f.instructions)]
            return
        if len(mm.bands) != 1 or not isinstance(mm.bands[0], parser.OFPMeterBandDrop) \
                or not mm.flags & (ofp.OFPMF_KBPS | ofp.OFPMF_PKTPS):
            raise FakeOFError("only one DROP band in kbit/s or packets/s is modelled")
        exists = mm.meter_id in self.meters
        if mm.command == ofp.OFPMC_ADD and exists:
            self.errors.append(f"meter {mm.meter_id} exists")
        elif mm.command == ofp.OFPMC_MODIFY and not exists:
            self.errors.append(f"meter {mm.meter_id} unknown")
        else:
            self.meters[mm.meter_id] = mm.bands[0].rate

    def _flowmod(self, fm: parser.OFPFlowMod) -> None:
        match = _match_dict(fm.match)
        if fm.command == ofp.OFPFC_ADD:
            if fm.table_id not in self.tables:
                raise FakeOFError(f"bad table {fm.table_id}")
            for inst in fm.instructions:
                if isinstance(inst, parser.OFPInstructionMeter) \
                        and inst.meter_id not in self.meters:
                    raise FakeOFError(f"flow uses meter {inst.meter_id}, not on the switch")
            for gid in _groups_of(FakeFlow(0, 0, {}, list(fm.instructions), 0)):
                if gid not in self.groups:
                    raise FakeOFError(f"flow uses group {gid}, not on the switch")
            for inst in fm.instructions:
                if (
                    isinstance(inst, parser.OFPInstructionGotoTable)
                    and inst.table_id <= fm.table_id
                ):
                    raise FakeOFError("goto_table must go forward")
            table = self.tables[fm.table_id]
            table[:] = [f for f in table if not (f.priority == fm.priority and f.match == match)]
            table.append(
                FakeFlow(fm.table_id, fm.priority, match, list(fm.instructions), fm.cookie)
            )
        elif fm.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            strict = fm.command == ofp.OFPFC_DELETE_STRICT
            tables = list(self.tables) if fm.table_id == ofp.OFPTT_ALL else [fm.table_id]
            for t in tables:
                self.tables[t] = [
                    f for f in self.tables[t] if not self._delete_hits(f, fm, match, strict)
                ]
        else:
            raise FakeOFError(f"flowmod command {fm.command} is not modelled")

    @staticmethod
    def _delete_hits(
        f: FakeFlow, fm: parser.OFPFlowMod, match: dict[str, Any], strict: bool
    ) -> bool:
        if (f.cookie & fm.cookie_mask) != (fm.cookie & fm.cookie_mask):
            return False
        if strict:
            return f.priority == fm.priority and f.match == match
        # non-strict: every field of the delete's match is in the flow's match with that value
        return all(k in f.match and f.match[k] == v for k, v in match.items())

    def flows(self) -> list[FakeFlow]:
        return [f for t in sorted(self.tables) for f in self.tables[t]]

    def lookup(self, fields: dict[str, Any],
               live: Callable[[int], bool] | None = None) -> list[int]:
        """Output ports for a packet with ``fields`` (``in_port`` included); [] = dropped.
        A fast-failover group outputs by its first bucket whose watch port is ``live``
        (every port is live when ``live`` is None); none live: the group drops."""
        return [port for port, _ in self.forward(fields, live)]

    def forward(self, fields: dict[str, Any], live: Callable[[int], bool] | None = None
                ) -> list[tuple[int, dict[str, Any]]]:
        """As :meth:`lookup`, with the packet's fields as each output sends it (after the
        set-field and MPLS push/pop actions before that output). MPLS: a push makes the
        packet ``eth_type`` 0x8847 with ``mpls_label`` 0 and hides the fields under it (IP
        fields, or the labels of a stack) until the pop, which restores them under the pop's
        ethertype."""
        fields = dict(fields)
        table_id: int | None = 0
        outputs: list[tuple[int, dict[str, Any]]] = []
        hops = 0
        while table_id is not None:
            hops += 1
            if hops > len(self.tables):
                raise FakeOFError("goto loop")
            hits = [
                f
                for f in self.tables[table_id]
                if all(_field_matches(fields, k, v) for k, v in f.match.items())
            ]
            if not hits:
                return outputs  # no table-miss flow: OF1.3 drops
            top = max(f.priority for f in hits)
            best = [f for f in hits if f.priority == top]
            if len(best) > 1:
                raise FakeOFError(
                    f"dpid {self.dpid:#x} table {table_id}: overlapping flows at "
                    f"priority {top}: {[f.match for f in best]}"
                )
            chosen = best[0]
            chosen.packet_count += 1
            table_id = None
            for inst in chosen.instructions:
                if isinstance(inst, parser.OFPInstructionActions):
                    if inst.type != ofp.OFPIT_APPLY_ACTIONS:
                        raise FakeOFError("only apply-actions is modelled")
                    for act in inst.actions:
                        if isinstance(act, parser.OFPActionGroup):
                            buckets = self.groups.get(act.group_id)
                            if buckets is None:
                                raise FakeOFError(f"group {act.group_id} is gone")
                            for (watch, _), actions in zip(
                                    buckets, self.group_actions[act.group_id], strict=True):
                                if live is None or live(watch):
                                    copy = dict(fields)  # a bucket acts on a copy
                                    for a in actions:
                                        _act(a, copy, outputs)
                                    break
                            continue
                        _act(act, fields, outputs)
                elif isinstance(inst, parser.OFPInstructionGotoTable):
                    table_id = inst.table_id
                elif isinstance(inst, parser.OFPInstructionMeter):
                    if inst.meter_id not in self.meters:
                        raise FakeOFError(f"meter {inst.meter_id} is gone")
                else:
                    raise FakeOFError(f"instruction {inst} is not modelled")
        return outputs


def _act(act: Any, fields: dict[str, Any], outputs: list[tuple[int, dict[str, Any]]]) -> None:
    """Apply one action (not a group) to the packet's ``fields``."""
    if isinstance(act, parser.OFPActionPushMpls):
        if act.ethertype != 0x8847:
            raise FakeOFError("only MPLS unicast is modelled")
        hidden = {k: fields.pop(k) for k in list(fields) if k not in ("in_port", "eth_type")}
        fields.update(eth_type=act.ethertype, mpls_label=0, _inner=(fields["eth_type"], hidden))
    elif isinstance(act, parser.OFPActionPopMpls):
        if "_inner" not in fields:
            raise FakeOFError("pop_mpls on a packet without a label")
        inner_type, hidden = fields.pop("_inner")
        if (act.ethertype == 0x8847) != (inner_type == 0x8847):
            raise FakeOFError(f"pop_mpls to {act.ethertype:#x} over a {inner_type:#x} packet")
        fields.pop("mpls_label")
        fields.update(hidden, eth_type=act.ethertype)
    elif isinstance(act, parser.OFPActionSetField):
        if act.key == "mpls_label" and "_inner" not in fields:
            raise FakeOFError("set mpls_label on a packet without a label")
        # in_port too, by its Nicira (NXM) field (writable in Open vSwitch)
        fields["in_port" if act.key == "in_port_nxm" else act.key] = act.value
    elif isinstance(act, parser.OFPActionOutput):
        outputs.append((act.port, dict(fields)))
    else:
        raise FakeOFError(f"action {act} is not modelled")


def _groups_of(f: FakeFlow) -> list[int]:
    return [a.group_id for i in f.instructions if isinstance(i, parser.OFPInstructionActions)
            for a in i.actions if isinstance(a, parser.OFPActionGroup)]


@dataclass
class Trace:
    hops: list[tuple[int, int]] = field(default_factory=list)
    """(dpid, out_port) in the order the packet took them"""
    delivered: list[str] = field(default_factory=list)
    to_controller: list[int] = field(default_factory=list)
    """dpids that sent the packet to the controller"""
    dropped: list[int] = field(default_factory=list)
    """dpids where the packet was dropped (no output)"""
    dead_links: list[int] = field(default_factory=list)
    """link indices the packet was sent onto while they were down"""
    loop: bool = False

    @property
    def delivered_to(self) -> str | None:
        return self.delivered[0] if len(self.delivered) == 1 else None

    def dpids(self) -> list[int]:
        return [d for d, _ in self.hops]


class FakeNetwork:
    """Fake switches wired as the :class:`Wiring` says; links can be cut."""

    def __init__(self, wiring: Wiring) -> None:
        self.wiring = wiring
        self.switches = {dpid: FakeSwitch(dpid) for dpid in wiring.node_dpid.values()}
        self.link_up = [True] * len(wiring.link_ports)
        self.messages_applied = 0

    def apply(self, dpid: int, msgs: list[Any]) -> None:
        for m in msgs:
            self.switches[dpid].apply(m)
            self.messages_applied += 1

    def apply_phase(self, phase: dict[int, list[Any]]) -> None:
        for dpid, msgs in phase.items():
            self.apply(dpid, msgs)

    def apply_change(self, change: Any) -> None:
        self.apply_phase(change.phase0)
        self.apply_phase(change.phase1)
        self.apply_phase(change.phase2)

    def set_link(self, link_index: int, up: bool) -> None:
        self.link_up[link_index] = up

    def flows(self, dpid: int) -> list[FakeFlow]:
        return self.switches[dpid].flows()

    def port_live(self, dpid: int, port_no: int) -> bool:
        """A link port is live while its link is up; host ports always are."""
        peer = self.wiring.peer(dpid, port_no)
        if peer is None or peer[0] == "host":
            return peer is not None
        return self.link_up[peer[1]]

    def flow_stats(self, dpid: int) -> list[parser.OFPFlowStats]:
        """The switch's flows as the OFPFlowStats objects a flow-stats reply would carry."""
        return [
            parser.OFPFlowStats(
                table_id=f.table_id,
                duration_sec=0,
                duration_nsec=0,
                priority=f.priority,
                idle_timeout=0,
                hard_timeout=0,
                flags=0,
                cookie=f.cookie,
                packet_count=f.packet_count,
                byte_count=0,
                match=parser.OFPMatch(**f.match),
                instructions=f.instructions,
            )
            for f in self.flows(dpid)
        ]

    def is_output(self, dpid: int, match: dict[str, Any], port: int) -> bool:
        """Does a packet with ``match`` fields (``in_port`` included) leave ``dpid`` by
        ``port``?"""
        return port in self.switches[dpid].lookup(dict(match))

    def trace(self, src_host: str, fields: dict[str, Any], max_hops: int = 64) -> Trace:
        """Send a packet with ``fields`` from ``src_host`` and follow it."""
        node, port_no = self.wiring.host_port[src_host]
        start = (self.wiring.node_dpid[node], port_no)
        tr = Trace()
        queue = [(*start, dict(fields))]
        seen: set[tuple[int, int]] = set()
        steps = 0
        while queue:
            dpid, in_port, pkt = queue.pop(0)
            steps += 1
            if (dpid, in_port) in seen or steps > max_hops:
                tr.loop = True
                break
            seen.add((dpid, in_port))
            outs = self.switches[dpid].forward({**pkt, "in_port": in_port},
                                               live=lambda p, d=dpid: self.port_live(d, p))
            if not outs:
                tr.dropped.append(dpid)
            for out, sent in outs:
                now_in = sent.pop("in_port", in_port)  # a set-field may have changed it
                if out == IN_PORT:
                    out = now_in
                elif out == now_in:  # OpenFlow never sends a packet back without IN_PORT
                    tr.dropped.append(dpid)
                    continue
                tr.hops.append((dpid, out))
                if out == CONTROLLER:
                    tr.to_controller.append(dpid)
                    continue
                peer = self.wiring.peer(dpid, out)
                if peer is None:
                    tr.dropped.append(dpid)
                elif peer[0] == "host":
                    if "_inner" in sent:
                        tr.dropped.append(dpid)  # a host does not take a labelled packet
                    else:
                        tr.delivered.append(peer[1])
                else:
                    _, link_index, other_dpid, other_port = peer  # type: ignore[misc]
                    if not self.link_up[link_index]:
                        tr.dead_links.append(link_index)
                    else:
                        queue.append((other_dpid, other_port, sent))
        return tr


# --- helpers shared by the controller tests ------------------------------------------------------


def flow_entries(net: FakeNetwork, dpid: int) -> list[Any]:
    """The switch's flows read back as the app would (flow stats -> FlowEntry)."""
    from controller.network.openflow import flowstats_to_entry

    return [flowstats_to_entry(s) for s in net.flow_stats(dpid)]


def running(topology: Any, **kw: Any) -> tuple[Any, FakeNetwork]:
    """A :class:`ControllerCore` for ``topology`` (``kw``: its options) and a fake network of
    its switches, every switch connected and reconciled (:func:`bring_up`)."""
    from controller.network.core import ControllerCore

    core = ControllerCore(topology, **kw)
    net = FakeNetwork(core.wiring)
    bring_up(core, net)
    return core, net


def bring_up(core: Any, net: FakeNetwork, now: float = 1.0) -> None:
    """Connect every switch with all its wired ports live, reconcile it from its (fake) flow
    table, apply every Change and confirm it - the app's handshake, in order."""
    wiring = net.wiring
    for dpid in sorted(wiring.node_dpid.values()):
        ports = dict.fromkeys(wiring.ports_of(dpid), True)
        apply_and_confirm(core, net, core.switch_connected(dpid, ports, now), now)
        apply_and_confirm(core, net, core.reconcile(dpid, flow_entries(net, dpid), now), now)


def apply_and_confirm(core: Any, net: FakeNetwork, change: Any, now: float) -> Any:
    net.apply_change(change)
    core.confirm(change, now)
    return change


def remove_or_flip_link(core: Any, net: FakeNetwork, topology: Any, op: tuple[Any, ...],
                        now: float) -> list[Any]:
    """The Changes of one random operation of a property test that is not an add:
    ``("remove", k)`` removes the k-th intent (by id, modulo how many there are; none: no
    Change); ``("link", i)`` flips link ``i`` in the fake network and tells the core of both
    ports, as the switches' port-status messages would."""
    if op[0] == "remove":
        ids = sorted(i.id for i in core.intents())
        return [core.remove_intent(ids[op[1] % len(ids)], now)] if ids else []
    if op[0] == "link":
        i = op[1]
        up = not net.link_up[i]
        net.set_link(i, up)
        link = topology.links[i]
        return [core.port_status(core.wiring.node_dpid[node], port, up, now)
                for node, port in zip((link.a, link.b), core.wiring.link_ports[i], strict=True)]
    raise ValueError(f"not a remove or link operation: {op!r}")


def ipv4(src_ip: str, dst_ip: str, **extra: Any) -> dict[str, Any]:
    return {"eth_type": 0x0800, "ipv4_src": src_ip, "ipv4_dst": dst_ip, **extra}
