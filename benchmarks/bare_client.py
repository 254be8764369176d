"""A bare OpenFlow client on a running lab: how long Open vSwitch itself takes to apply new
flows and answer, with no controller in the way (``bench_controller.py --bare-client``).

It talks to each bridge's management socket (``/var/run/openvswitch/<bridge>.mgmt``, which
Open vSwitch opens for ``ovs-ofctl``) while the controller stays connected: per bridge, one
ONF bundle (open, the FlowMods, commit) and a barrier, written to every bridge before any
answer is read, as the controller sends a phase. The flows go to a table the controller
never uses (:data:`TABLE`), with the same shape as an intent's ingress flow (IPv4 source
and destination; push an MPLS label, output), and are deleted again after each round. The
time is to the last barrier answered, from the first byte written (every bundle packed
before: Open vSwitch's own time) or from the start of the packing (each bundle written as
soon as it is packed, as the controller's sender does: its packing, with the sender's own
``EntryFlowMod.bundle_wire``, overlaps Open vSwitch's work).
"""

from __future__ import annotations

import select
import socket
import statistics
import struct
import subprocess
import time
from typing import Any

from controller.network import openflow
from controller.network.flows import FlowEntry

TABLE = 200
"""The table the flows go to (the controller's pipeline uses tables 0-3)."""
_HDR = struct.Struct("!BBHI")
_OFPT_ERROR, _OFPT_BARRIER_REQUEST, _OFPT_BARRIER_REPLY = 1, 20, 21


def _connect(bridge: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(5)
    s.connect(f"/var/run/openvswitch/{bridge}.mgmt")
    s.sendall(_HDR.pack(openflow.ofp.OFP_VERSION, 0, 8, 1))  # HELLO
    head = s.recv(8, socket.MSG_WAITALL)
    if len(head) < 8 or head[1] != 0:
        raise RuntimeError(f"{bridge}: no OpenFlow HELLO on its management socket")
    rest = _HDR.unpack(head)[2] - 8
    if rest > 0:
        s.recv(rest, socket.MSG_WAITALL)  # the HELLO's version bitmap
    return s


def _round(socks: list[socket.socket], flows_each: int, first_xid: int, base: int,
           pack_first: bool) -> tuple[float, int]:
    """One bundle of ``flows_each`` new flows and a barrier to every socket; ms until every
    barrier is answered, and the next free xid. ``pack_first``: every bundle is packed before
    the clock starts (Open vSwitch's time alone); else each is written as soon as it is
    packed, as the controller's sender does, and the packing is timed too."""
    xid = first_xid
    pending: dict[socket.socket, int] = {}
    packed = []
    t0 = time.perf_counter()
    for s in socks:
        xid += 1
        bundle_id = xid
        msgs = [openflow.bundle_control(bundle_id, openflow.ofp.ONF_BCT_OPEN_REQUEST, xid)]
        for f in range(flows_each):
            i = base + f
            entry = FlowEntry(TABLE, 100, (
                ("eth_type", 0x800), ("ipv4_dst", "10.250.0.1"),
                ("ipv4_src", f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")),
                (("push_mpls", 0x8847), ("set_field", ("mpls_label", 16 + f)), ("output", 1)),
                0)
            xid += 1
            wire = openflow.flowmod_add(entry).bundle_wire(xid, bundle_id)
            assert wire is not None, "the packer takes an ingress flow"
            msgs.append(wire)
        xid += 1
        msgs.append(openflow.bundle_control(bundle_id, openflow.ofp.ONF_BCT_COMMIT_REQUEST,
                                            xid))
        xid += 1
        msgs.append(_HDR.pack(openflow.ofp.OFP_VERSION, _OFPT_BARRIER_REQUEST, 8, xid))
        pending[s] = xid
        if pack_first:
            packed.append(b"".join(msgs))
        else:
            s.sendall(b"".join(msgs))
    if pack_first:
        t0 = time.perf_counter()
        for s, wire in zip(socks, packed, strict=True):
            s.sendall(wire)
    bufs = {s: bytearray() for s in socks}
    deadline = time.monotonic() + 30
    while pending:  # bounded by the deadline
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} bridges did not answer the barrier in 30 s")
        ready, _, _ = select.select(list(pending), [], [], 1.0)
        for s in ready:
            data = s.recv(1 << 16)
            if not data:
                raise RuntimeError("a bridge closed its management connection")
            buf = bufs[s]
            buf += data
            while len(buf) >= 8:
                _, kind, length, rxid = _HDR.unpack_from(buf)
                if len(buf) < length:
                    break
                if kind == _OFPT_ERROR:
                    raise RuntimeError(f"a bridge refused the bundle: {bytes(buf[8:12]).hex()}")
                if kind == _OFPT_BARRIER_REPLY and rxid == pending.get(s):
                    del pending[s]
                del buf[:length]
    return (time.perf_counter() - t0) * 1000.0, xid


def measure(bridges: list[str], flows_each: int, rounds: int = 5) -> dict[str, Any]:
    """``rounds`` rounds of ``flows_each`` new flows on each of ``bridges``, alternately
    packed before the clock starts and packed as they go; each round's flows are deleted
    (not timed) before the next."""
    socks = [_connect(b) for b in bridges]
    times: dict[bool, list[float]] = {True: [], False: []}
    xid = 1000
    try:
        for r in range(2 * rounds):
            ms, xid = _round(socks, flows_each, xid, r * flows_each, pack_first=r % 2 == 0)
            times[r % 2 == 0].append(ms)
            for b in bridges:
                subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", b,
                                f"table={TABLE}"], check=True, capture_output=True)
    finally:
        for s in socks:
            s.close()
    return {"bridges": len(bridges), "flows_each": flows_each, "ovs_ms": times[True],
            "packed_ms": times[False], "ovs_median_ms": statistics.median(times[True]),
            "packed_median_ms": statistics.median(times[False])}
