"""PCEP on the wire: objects and messages survive encode -> decode, and any bytes a peer can
send either decode or raise PcepDecodeError (never another exception)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.pce import codec
from controller.pce.codec import (
    Bandwidth,
    Close,
    EndPoints,
    Ero,
    ErrorObject,
    Lsp,
    LspIdentifiers,
    MessageType,
    Metric,
    MetricType,
    NoPath,
    ObjectiveFunction,
    Open,
    PcepDecodeError,
    Rp,
    Srp,
    SrSubobject,
)

SAMPLE = [
    Open(keepalive_s=30, dead_timer_s=120, session_id=7, stateful_flags=5, sr_msd=10),
    Rp(request_id=42, flags=0x23),
    NoPath(reason_flags=0x4),
    EndPoints(source="10.0.0.1", destination="10.0.0.4"),
    Bandwidth(bytes_per_s=125000.0),
    Metric(metric_type=MetricType.PATH_DELAY, value=5000.0, bound=True),
    Ero(segments=[SrSubobject(label=16005, nai=("10.0.0.5",)),
                  SrSubobject(label=24012, nai_type=codec.NAI_IPV4_ADJACENCY,
                              nai=("10.1.12.1", "10.1.12.2"))]),
    ObjectiveFunction(code=1),
    Lsp(plsp_id=1048575, delegate=True, sync=True, administrative=True, operational=2,
        create=True, name="p1-dyn",
        identifiers=LspIdentifiers("10.0.0.1", 3, 4, "10.0.0.1", "10.0.0.4")),
    Srp(srp_id=0xFFFFFFFD, remove=True),
    ErrorObject(error_type=6, error_value=3),
    Close(reason=3),
]


def roundtrip(obj: codec.PcepObject) -> codec.PcepObject:
    data = codec.encode_message(MessageType.PCRPT, [obj])
    [back] = codec.decode_message(data).objects
    return back


@pytest.mark.parametrize("obj", SAMPLE, ids=lambda o: type(o).__name__)
def test_objects_survive_a_round_trip(obj: codec.PcepObject) -> None:
    back = roundtrip(obj)
    assert type(back) is type(obj)
    fields = {k: v for k, v in vars(obj).items() if k != "tlvs"}
    assert {k: getattr(back, k) for k in fields} == fields


def test_object_lengths_are_multiples_of_four() -> None:
    for obj in SAMPLE:
        data = obj.encode()
        assert len(data) % 4 == 0 and struct.unpack("!H", data[2:4])[0] == len(data)


def test_the_open_carries_both_sr_capability_forms() -> None:
    data = Open(stateful_flags=1, sr_msd=6).body()
    tlvs = codec.decode_tlvs(data[4:], "OPEN")
    assert [t.type for t in tlvs] == [codec.TLV_STATEFUL_CAPABILITY,
                                      codec.TLV_PATH_SETUP_TYPE_CAPABILITY,
                                      codec.TLV_SR_PCE_CAPABILITY]
    # a peer that sends only the RFC 8664 form (SR capability inside the PST capability)
    only_pst = data[:4] + tlvs[0].encode() + tlvs[1].encode()
    assert Open.from_body(only_pst).sr_msd == 6


@pytest.mark.parametrize(("data", "etype", "evalue", "close"), [
    (b"\x40\x02\x00\x04", 0, 0, codec.CloseReason.MALFORMED),  # version 2
    (b"\x20\x02\x00\x08", 0, 0, codec.CloseReason.MALFORMED),  # length past the bytes
    (b"\x20\x03\x00\x0c\xc8\x10\x00\x08\x00\x00\x00\x00", 3, 1, None),  # class 200
    (b"\x20\x03\x00\x0c\x02\x70\x00\x08\x00\x00\x00\x00", 3, 2, None),  # RP of type 7
    (b"\x20\x03\x00\x0c\x04\x30\x00\x08\x00\x00\x00\x00", 4, 2, None),  # END-POINTS type 3
    (b"\x20\x63\x00\x04", 0, 0, None),  # message type 99
    (b"\x20\x03\x00\x0c\x07\x10\x00\x08\x24\x09\x00\x00", 0, 0, codec.CloseReason.MALFORMED),
])
def test_bad_messages_say_how_to_answer(data: bytes, etype: int, evalue: int,
                                        close: codec.CloseReason | None) -> None:
    with pytest.raises(PcepDecodeError) as info:
        codec.decode_message(data)
    assert (info.value.error_type, info.value.error_value, info.value.close_reason) == \
        (etype, evalue, close)


VALID = codec.encode_message(MessageType.PCRPT, SAMPLE[6:10])


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_decode_or_raise_a_pcep_error(body: bytes) -> None:
    data = struct.pack("!BBH", 0x20, MessageType.PCREQ, 4 + len(body)) + body
    try:
        codec.decode_message(data)
    except PcepDecodeError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(4, len(VALID) - 1), st.integers(0, 255)),
                min_size=1, max_size=6))
def test_mutated_reports_decode_or_raise_a_pcep_error(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    try:
        codec.decode_message(bytes(data))
    except PcepDecodeError:
        pass


def test_wiresharks_pcep_dissector_reads_what_the_pce_sends(tmp_path: Path) -> None:
    """An independent decoder: our PCRep (node and adjacency SIDs with their NAI, metrics),
    PCUpd and PCErr wrapped in TCP by text2pcap and read by tshark."""
    for tool in ("text2pcap", "tshark"):
        assert shutil.which(tool), f"{tool} is missing (Debian's tshark; scripts/setup.sh)"
    messages = [
        codec.encode_message(MessageType.PCREP, [Rp(request_id=3), SAMPLE[6], Metric(
            metric_type=MetricType.PATH_DELAY, value=4000.0, computed=True)]),
        codec.encode_message(MessageType.PCUPD, [Srp(srp_id=9), Lsp(plsp_id=4, delegate=True),
                                                 SAMPLE[6]]),
        codec.encode_message(MessageType.PCERR, [ErrorObject(error_type=6, error_value=3)]),
    ]
    hexdump = tmp_path / "messages.txt"
    hexdump.write_text("".join("0000 " + " ".join(f"{b:02x}" for b in m) + "\n"
                               for m in messages))
    pcap = tmp_path / "messages.pcap"
    subprocess.run(["text2pcap", "-q", "-T", "4189,4189", str(hexdump), str(pcap)],
                   check=True, capture_output=True, timeout=60)
    fields = ["pcep.msg", "pcep.subobj.sr.sid.label", "pcep.subobj.sr.nai.ipv4node",
              "pcep.subobj.sr.nai.localipv4addr", "pcep.subobj.sr.nai.remoteipv4addr",
              "pcep.obj.metric.type", "pcep.obj.metric.metric_value", "pcep.error.type",
              "pcep.error.value"]
    out = subprocess.run(["tshark", "-r", str(pcap), "-d", "tcp.port==4189,pcep", "-T",
                          "fields", *[x for f in fields for x in ("-e", f)]],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    rows = [dict(zip(fields, line.split("\t"), strict=True)) for line in out.splitlines()]
    assert len(rows) == 3
    rep, upd, err = rows
    assert rep["pcep.msg"] == "4"
    assert rep["pcep.subobj.sr.sid.label"] == "16005,24012"
    assert rep["pcep.subobj.sr.nai.ipv4node"] == "10.0.0.5"
    assert (rep["pcep.subobj.sr.nai.localipv4addr"],
            rep["pcep.subobj.sr.nai.remoteipv4addr"]) == ("10.1.12.1", "10.1.12.2")
    assert "12" in rep["pcep.obj.metric.type"].split(",")
    assert float(rep["pcep.obj.metric.metric_value"]) == 4000.0
    assert upd["pcep.msg"] == "11" and upd["pcep.subobj.sr.sid.label"] == "16005,24012"
    assert (err["pcep.msg"], err["pcep.error.type"], err["pcep.error.value"]) == ("6", "6", "3")
