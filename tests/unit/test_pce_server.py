"""The PCEP server over real TCP sockets on 127.0.0.1, with test PCCs (tests/unit/pcep_peer.py):
session, path requests, reports, updates after a cut, and hostile peers that must lose only
their own session."""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator

import pytest

from controller.pce import codec
from controller.pce.codec import (
    CloseReason,
    EndPoints,
    Ero,
    ErrorObject,
    Lsp,
    LspIdentifiers,
    MessageType,
    Metric,
    MetricType,
    NoPath,
    Open,
    Rp,
    Srp,
    SrSubobject,
)
from controller.pce.engine import PceEngine
from controller.pce.server import PceServer
from controller.topology.files import topology_file
from controller.topology.loader import load_topology
from tests.unit.pcep_peer import FakePcc

S1, S4 = "10.0.0.1", "10.0.0.4"


@pytest.fixture
def pce() -> Iterator[PceServer]:
    server = PceServer(PceEngine(load_topology(topology_file("diamond-sr"))), "127.0.0.1", 0,
                       open_wait_s=2.0, request_rate=200.0, request_burst=50)
    server.start()
    yield server
    server.stop()


def labels(msg: codec.Message) -> list[int | None]:
    ero = msg.first(Ero)
    assert isinstance(ero, Ero), msg.objects
    return [s.label for s in ero.segments]


def errors(msg: codec.Message) -> list[tuple[int, int]]:
    assert msg.type == MessageType.PCERR, msg
    return [(o.error_type, o.error_value) for o in msg.objects if isinstance(o, ErrorObject)]


def wait_for(cond, what: str, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_open_capabilities_and_a_request(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pce_open = pcc.open(msd=5)
    assert pce_open.stateful_flags == codec.STATEFUL_U | codec.STATEFUL_I
    assert pce_open.sr_msd == 0
    rep = pcc.request(S1, S4, bound_ms=5.0)
    rp = rep.first(Rp)
    assert isinstance(rp, Rp) and rp.request_id == 1 and rp.path_setup_type == codec.PST_SR
    assert labels(rep) == [16005, 16004]
    ero = rep.first(Ero)
    assert isinstance(ero, Ero) and ero.segments[0].nai == ("10.0.0.5",)
    metrics = {m.metric_type: m.value for m in rep.objects if isinstance(m, Metric)}
    assert metrics == {MetricType.PATH_DELAY: 4000.0, MetricType.TE: 8.0}
    [session] = pce.sessions()
    assert session["state"] == "up" and session["msd"] == 5 and session["instantiation"]
    assert session["counters"]["replies_path"] == 1
    pcc.close()


def test_no_path_when_the_bound_is_tighter_than_any_path(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pcc.open()
    rep = pcc.request(S1, S4, bound_ms=1.5)
    nopath = rep.first(NoPath)
    assert isinstance(nopath, NoPath) and nopath.unsatisfied and rep.first(Ero) is None
    bound = rep.first(Metric)
    assert isinstance(bound, Metric) and bound.bound and bound.value == 1500.0
    rep = pcc.request("10.9.9.9", S4, bound_ms=10.0)
    nopath = rep.first(NoPath)
    assert isinstance(nopath, NoPath) and nopath.reason_flags == 0x4  # unknown source
    assert pce.stats()["replies_no_path"] == 2
    pcc.close()


def _report(plsp_id: int, segments: list[SrSubobject], *, srp_id: int = 0,
            sync: bool = False) -> list[codec.PcepObject]:
    return [Srp(srp_id=srp_id),
            Lsp(plsp_id=plsp_id, delegate=True, sync=sync, administrative=True, operational=2,
                name="p1-dyn", identifiers=LspIdentifiers(S1, 0, 0, S1, S4)),
            Ero(segments=segments)]


def test_report_sync_delegation_and_an_update_after_a_cut(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pcc.open()
    rep = pcc.request(S1, S4, bound_ms=5.0)
    segs = [SrSubobject(label=x, nai=(f"10.0.0.{x - 16000}",)) for x in labels(rep)
            if x is not None]
    pcc.send(MessageType.PCRPT, _report(1, segs, sync=True))
    pcc.send(MessageType.PCRPT, [Lsp(plsp_id=0), Ero()])  # end of synchronisation
    wait_for(lambda: pce.sessions()[0]["synced"], "the end of synchronisation")
    [lsp] = pce.lsps()
    assert lsp["delegated"] and lsp["max_latency_ms"] == 5.0
    assert [s["label"] for s in lsp["segments"]] == [16005, 16004]
    moved = pce.set_link("s1", "s5", up=False)
    assert [m["plsp_id"] for m in moved] == [1]
    upd = pcc.recv_type(MessageType.PCUPD)
    srp, lsp_obj = upd.objects[0], upd.objects[1]
    assert isinstance(srp, Srp) and isinstance(lsp_obj, Lsp) and lsp_obj.plsp_id == 1
    assert srp.srp_id == moved[0]["srp_id"] and lsp_obj.delegate
    assert labels(upd) == [16002, 16004]
    assert len([o for o in upd.objects if isinstance(o, Ero)]) == 1
    new = [SrSubobject(label=x, nai=(f"10.0.0.{x - 16000}",)) for x in (16002, 16004)]
    pcc.send(MessageType.PCRPT, _report(1, new, srp_id=srp.srp_id))
    wait_for(lambda: pce.lsps()[0]["history"][-1]["event"] == "acknowledged", "the ack")
    assert pce.lsps()[0]["history"][-1]["labels"] == [16002, 16004]
    # bringing the link back moves nothing: the new path still meets its bound
    assert pce.set_link("s1", "s5", up=True) == []
    pcc.close()
    wait_for(lambda: pce.lsps() == [], "the LSPs of a closed session to go")


def test_initiate_needs_the_capability_and_sends_a_path(pce: PceServer) -> None:
    from controller.pce.engine import PathRequest

    plain = FakePcc(pce.port, source="127.0.0.3")
    plain.open(stateful_flags=codec.STATEFUL_U)
    wait_for(lambda: [s["state"] for s in pce.sessions()] == ["up"], "the session")
    with pytest.raises(LookupError, match="instantiation"):
        pce.initiate("127.0.0.3", PathRequest(S1, S4, max_latency_ms=5.0), "x")
    pcc = FakePcc(pce.port)
    pcc.open()
    wait_for(lambda: [s["state"] for s in pce.sessions()] == ["up", "up"], "the sessions")
    out = pce.initiate("127.0.0.2", PathRequest(S1, S4, max_latency_ms=3.0), "fast")
    msg = pcc.recv_type(MessageType.PCINITIATE)
    lsp = msg.first(Lsp)
    assert isinstance(lsp, Lsp) and lsp.plsp_id == 0 and lsp.create and lsp.name == "fast"
    ends = msg.first(EndPoints)
    assert isinstance(ends, EndPoints) and (ends.source, ends.destination) == (S1, S4)
    assert labels(msg) == [16002, 16004] and out["sent"]
    plain.close()
    pcc.close()


# hostile peers --------------------------------------------------------------------------------

def _healthy(pce: PceServer, source: str = "127.0.0.9") -> None:
    """Another PCC still gets its answer: the PCE and its other sessions keep working."""
    pcc = FakePcc(pce.port, source=source)
    pcc.open()
    assert labels(pcc.request(S1, S4, bound_ms=12.0)) == [16004]
    pcc.close()


def test_wrong_version_and_wrong_lengths_close_only_that_session(pce: PceServer) -> None:
    other = FakePcc(pce.port, source="127.0.0.8")
    other.open()
    for bad in (b"\x40\x02\x00\x04",  # version 2
                b"\x20\x02\x00\x02",  # length shorter than the header
                # an RP object of length 6 (not a multiple of 4)
                b"\x20\x03\x00\x0c" + b"\x02\x10\x00\x06" + b"\x00\x00\x00\x00"):
        pcc = FakePcc(pce.port)
        pcc.open()
        pcc.send_raw(bad)
        assert pcc.closed_with() == CloseReason.MALFORMED
        pcc.close()
    assert labels(other.request(S1, S4, bound_ms=5.0)) == [16005, 16004]
    other.close()
    _healthy(pce)


def test_bad_objects_get_errors_and_the_session_goes_on(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pcc.open()
    rp = Rp(request_id=9).encode()
    unknown_class = struct.pack("!BBH", 200, 0x10, 8) + b"\0" * 4
    pcc.send_raw(struct.pack("!BBH", 0x20, 3, 4 + len(rp) + len(unknown_class)) + rp
                 + unknown_class)
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(3, 1)]
    pcc.send(MessageType.PCREQ, [Rp(request_id=10)])  # END-POINTS missing
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(6, 3)]
    pcc.send(MessageType.PCREQ, [EndPoints(source=S1, destination=S4)])  # RP missing
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(6, 1)]
    short_metric = struct.pack("!BBH", 6, 0x10, 8) + b"\0" * 4  # METRIC with 4 bytes
    pcc.send_raw(struct.pack("!BBH", 0x20, 3, 4 + len(rp) + 8) + rp + short_metric)
    assert pcc.closed_with() == CloseReason.MALFORMED  # an object too short to read
    pcc = FakePcc(pce.port)
    pcc.open()
    pcc.send(MessageType.PCRPT, [Ero()])  # a report without an LSP object
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(6, 8)]
    assert labels(pcc.request(S1, S4, bound_ms=3.0)) == [16002, 16004]
    for value in (float("nan"), -5.0, float("inf")):  # bounds no path can be held to
        objs = pcc.request_objects(S1, S4)
        objs.insert(2, Metric(metric_type=MetricType.PATH_DELAY, value=value, bound=True))
        objs.insert(2, codec.Bandwidth(bytes_per_s=value))
        pcc.send(MessageType.PCREQ, objs)
        assert isinstance(pcc.recv_type(MessageType.PCREP).first(NoPath), NoPath)
    pcc.send(MessageType.PCREQ, [Rp(request_id=11), EndPoints(source="fc00::1",
                                                               destination="fc00::4")])
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(4, 2)]  # IPv6: not supported
    of = codec.ObjectiveFunction(code=7)
    of.p_flag = True  # a function it must use, and this PCE does not have
    pcc.send(MessageType.PCREQ, [*pcc.request_objects(S1, S4)[:2], of])
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(4, 4)]
    pcc.send(MessageType.OPEN, [Open()])  # a second Open
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(9, 1)]
    pcc.close()
    _healthy(pce)


def test_not_open_first_unknown_messages_and_a_second_session(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pcc.recv_type(MessageType.OPEN)
    pcc.send(MessageType.KEEPALIVE, [])
    assert errors(pcc.recv_type(MessageType.PCERR)) == [(1, 1)]
    assert pcc.closed_with() == CloseReason.NO_EXPLANATION
    pcc = FakePcc(pce.port)
    pcc.open()
    twin = FakePcc(pce.port)  # the same address again
    assert errors(twin.recv_type(MessageType.PCERR)) == [(9, 1)]
    assert twin.closed_with() == CloseReason.NO_EXPLANATION
    for _ in range(codec_unknown_limit() + 1):
        pcc.send_raw(b"\x20\x63\x00\x04")  # message type 99
    assert pcc.closed_with() == CloseReason.TOO_MANY_UNKNOWN_MESSAGES
    _healthy(pce)


def codec_unknown_limit() -> int:
    from controller.pce.server import MAX_UNKNOWN_MESSAGES

    return MAX_UNKNOWN_MESSAGES


def test_dead_timer_and_a_peer_that_stops_mid_message(pce: PceServer) -> None:
    pcc = FakePcc(pce.port)
    pcc.open(keepalive_s=0, dead_timer_s=1)
    started = time.monotonic()
    assert pcc.closed_with() == CloseReason.DEAD_TIMER
    assert 0.9 < time.monotonic() - started < 5
    half = FakePcc(pce.port, source="127.0.0.4")
    half.open()
    half.send_raw(b"\x20\x03\x00\x40" + b"\x02\x10")  # 64 bytes announced, 2 sent
    half.close()
    wait_for(lambda: all(s["peer"] != "127.0.0.4" for s in pce.sessions()), "cleanup")
    _healthy(pce)


def test_reports_past_the_lsp_limit_are_refused(pce: PceServer) -> None:
    pce.max_lsps_per_pcc = 3
    pcc = FakePcc(pce.port)
    pcc.open()
    seg = [SrSubobject(label=16004, nai=("10.0.0.4",))]
    for plsp in range(1, 6):
        pcc.send(MessageType.PCRPT, _report(plsp, seg))
    assert errors(pcc.recv_type(MessageType.PCERR))[-1] == (20, 1)  # the 4th
    assert errors(pcc.recv_type(MessageType.PCERR))[-1] == (20, 1)  # the 5th
    pcc.send(MessageType.PCRPT, _report(2, seg))  # one it has: still taken
    pcc.send(MessageType.PCRPT, [Lsp(plsp_id=3, remove=True)])
    pcc.send(MessageType.PCRPT, _report(6, seg))  # room again
    wait_for(lambda: sorted(r["plsp_id"] for r in pce.lsps()) == [1, 2, 6], "the database")
    pcc.close()


def test_a_peer_that_never_reads_is_dropped() -> None:
    """A message that waits longer than write_timeout_s for the peer to read (its buffers
    full) aborts the connection: the session ends instead of holding on for ever."""
    import asyncio

    from controller.pce.server import SessionInfo, _Session, _SessionClosed

    class StuckWriter:
        def __init__(self) -> None:
            self.aborted = False
            self.transport = self

        def write(self, data: bytes) -> None:
            pass

        async def drain(self) -> None:
            await asyncio.sleep(3600)  # the peer never reads

        def abort(self) -> None:
            self.aborted = True

    server = PceServer(PceEngine(load_topology(topology_file("diamond-sr"))),
                       write_timeout_s=0.2)
    writer = StuckWriter()
    sess = _Session(server, None, writer, SessionInfo("127.0.0.2", 4189, 1, 0.0))  # type: ignore[arg-type]
    started = time.monotonic()
    with pytest.raises(_SessionClosed, match="stopped reading"):
        asyncio.run(sess.send(MessageType.KEEPALIVE, []))
    assert writer.aborted and 0.15 < time.monotonic() - started < 2


def test_a_flood_of_requests_is_limited_and_others_are_served(pce: PceServer) -> None:
    flood = FakePcc(pce.port)
    flood.open()
    one = codec.encode_message(MessageType.PCREQ, flood.request_objects(S1, S4, bound_ms=5.0))
    flood.send_raw(one * 2000)
    _healthy(pce)  # served while the flood is being answered
    answered = limited = 0
    while answered + limited < 2000:
        rep = flood.recv_type(MessageType.PCREP)
        nopath = rep.first(NoPath)
        if isinstance(nopath, NoPath):
            assert nopath.reason_flags == 0x1  # PCE unavailable
            limited += 1
        else:
            answered += 1
    assert limited > 0 and answered >= 50  # the burst is served, the rest refused
    assert pce.stats()["rate_limited"] == limited
    flood.close()
