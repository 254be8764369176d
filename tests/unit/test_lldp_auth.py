"""Signed discovery: probes carry an HMAC; unsigned, wrongly signed, stale, replayed and
host-port LLDP is dropped, counted and reported (paced); the links stay as they are."""

from __future__ import annotations

import os
import stat
import struct
from pathlib import Path
from typing import Any

import pytest
from fakeoftable import FakeNetwork, running
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.cluster.etcd import EtcdClient
from controller.cluster.etcdproc import EtcdServer
from controller.discovery import load_lldp_secret, shared_lldp_secret
from controller.errors import CpnError
from controller.network import packets
from controller.network.core import ControllerCore
from controller.network.lldpauth import EVENT_INTERVAL_S, LldpAuth, LldpGuard
from controller.settings import load_settings
from controller.topology.model import Topology

KEY = bytes(range(32))
WALL = 1_800_000_000.0
"""the wall clock of these tests (seconds since the epoch); the core's own clock is ``now``"""
AUTH = LldpAuth(KEY, max_age_s=6.0, skew_s=0.5)


def signed_core(diamond: Topology) -> tuple[ControllerCore, FakeNetwork]:
    return running(diamond, lldp_auth=AUTH)


def dp(core: ControllerCore, node: str) -> int:
    return core.wiring.node_dpid[node]


def probes_by_port(core: ControllerCore, wall_s: float) -> dict[tuple[int, int], bytes]:
    out = {}
    for dpid, msg in core.lldp_probes(5.0, wall_s=wall_s):
        (port,) = [a.port for a in msg.actions]
        out[(dpid, port)] = bytes(msg.data)
    return out


def deliver_all(core: ControllerCore, probes: dict[tuple[int, int], bytes], wall_s: float
                ) -> None:
    for (dpid, port), data in probes.items():
        peer = core.wiring.link_peer(dpid, port)
        assert peer is not None
        res = core.packet_in(peer[1], peer[2], data, 5.0, wall_s=wall_s)
        assert res.change is None and res.messages == []


def rejected_events(core: ControllerCore) -> list[dict[str, Any]]:
    return [e for e in core.state.events if e["kind"] == "lldp_rejected"]


def link_state(core: ControllerCore) -> tuple[list[bool], list[tuple[str, ...]]]:
    return list(core.state.link_up), [i.path for i in core.intents()]


def test_signed_probes_verify_every_link(diamond: Topology) -> None:
    core, _ = signed_core(diamond)
    probes = probes_by_port(core, WALL)
    for data in probes.values():
        probe = packets.parse_lldp(data)
        assert probe is not None and probe.signature is not None
        assert probe.signature.time_ms == int(WALL * 1000)
    assert len({packets.parse_lldp(d).signature.nonce for d in probes.values()}  # type: ignore[union-attr]
               ) == len(probes)
    deliver_all(core, probes, WALL + 0.01)
    report = core.state.link_report(5.5)
    assert len(report["verified"]) == len(diamond.links) and report["unexpected"] == []
    assert sum(core.lldp.rejected.values()) == 0 and rejected_events(core) == []


def test_a_forged_neighbour_is_dropped_and_reported(diamond: Topology) -> None:
    """The attack: a frame at s3's port to s1 naming s1's port to s2. Unsigned, or signed with
    another key, it is dropped: no link goes down, no intent moves."""
    core, _ = signed_core(diamond)
    deliver_all(core, probes_by_port(core, WALL), WALL)
    before = link_state(core)
    s1, s3 = dp(core, "s1"), dp(core, "s3")
    port = core.wiring.link_port(next(i for i, lk in enumerate(diamond.links)
                                      if {lk.a, lk.b} == {"s1", "s3"}), "s3")
    unsigned = packets.lldp_probe(s1, 1)
    other = LldpGuard(LldpAuth(b"\x01" * 32, max_age_s=6.0)).probe(s1, 1, WALL)
    assert core.packet_in(s3, port, unsigned, 6.0, wall_s=WALL).change is None
    assert core.packet_in(s3, port, other, 6.0, wall_s=WALL).change is None
    assert link_state(core) == before
    assert core.state.link_report(6.0)["unexpected"] == []
    assert core.lldp.rejected["unsigned"] == 1 and core.lldp.rejected["bad_mac"] == 1
    (event,) = rejected_events(core)  # the second frame on the port within 10 s: counted only
    assert event["dpid"] == s3 and event["port_no"] == port and event["switch"] == "s3"
    assert event["reason"] == "unsigned" and event["claimed"] == {"dpid": s1, "port_no": 1}


def test_a_signed_probe_of_the_wrong_port_still_marks_the_link(diamond: Topology) -> None:
    """Signing keeps miswiring detection: a genuine probe where the file says another
    neighbour is (a real cabling error) marks the link unusable, as before."""
    core, _ = signed_core(diamond)
    s1, s3 = dp(core, "s1"), dp(core, "s3")
    port = core.wiring.link_port(next(i for i, lk in enumerate(diamond.links)
                                      if {lk.a, lk.b} == {"s1", "s3"}), "s3")
    genuine = core.lldp.probe(s1, 1, WALL)
    res = core.packet_in(s3, port, genuine, 6.0, wall_s=WALL + 0.01)
    assert res.change is not None
    assert core.state.link_report(6.0)["unexpected"][0]["dst_dpid"] == s3


@pytest.mark.parametrize(("delay_s", "reason"), [
    (6.4, None),          # within max age + skew
    (6.6, "stale"),       # older than 6 s + 0.5 s
    (-0.4, None),         # from a clock 0.4 s ahead: within the skew
    (-0.6, "stale"),      # from the future beyond the skew
])
def test_age_window(diamond: Topology, delay_s: float, reason: str | None) -> None:
    core, _ = signed_core(diamond)
    s1, s2 = dp(core, "s1"), dp(core, "s2")
    data = core.lldp.probe(s1, 1, WALL)
    peer = core.wiring.link_peer(s1, 1)
    assert peer is not None and peer[1] == s2
    core.packet_in(s2, peer[2], data, 6.0, wall_s=WALL + delay_s)
    assert core.lldp.rejected["stale"] == (reason == "stale")
    assert (core.state.lldp_seen.get((s2, peer[2])) is not None) == (reason is None)


def test_a_replayed_probe_is_dropped(diamond: Topology) -> None:
    """A captured probe, copied to another trunk port inside the window, would claim a false
    neighbour there: refused as replayed (and again at its own port). After the window the
    same copy is stale."""
    core, _ = signed_core(diamond)
    probes = probes_by_port(core, WALL)
    deliver_all(core, probes, WALL)
    before = link_state(core)
    s1, s3 = dp(core, "s1"), dp(core, "s3")
    captured = probes[(s1, 1)]
    peer = core.wiring.link_peer(s1, 1)
    assert peer is not None
    s3_port = next(p for p in core.wiring.ports_of(s3) if core.wiring.is_link_port(s3, p))
    assert core.packet_in(s3, s3_port, captured, 6.0, wall_s=WALL + 1).change is None
    assert core.packet_in(peer[1], peer[2], captured, 6.0, wall_s=WALL + 1).change is None
    assert core.lldp.rejected["replayed"] == 2
    assert link_state(core) == before and core.state.link_report(6.0)["unexpected"] == []
    core.packet_in(s3, s3_port, captured, 20.0, wall_s=WALL + 7)
    assert core.lldp.rejected["stale"] == 1 and link_state(core) == before


def test_the_replay_cache_forgets_what_is_stale_anyway() -> None:
    guard = LldpGuard(AUTH)
    for i in range(100):
        data = guard.probe(1, 1 + i % 4, WALL + i)
        assert guard.check(packets.parse_lldp(data), 2, 1, WALL + i) is None
    # only the probes of the last max age + 2 x skew (7 s) are remembered
    assert len(guard._seen) <= 8  # noqa: SLF001 - the bound is the point


def test_lldp_on_a_host_port_is_never_used(diamond: Topology) -> None:
    core, _ = signed_core(diamond)
    h1 = diamond.hosts[0]
    node, port = core.wiring.host_port[h1.name]
    dpid = core.wiring.node_dpid[node]
    assert core.host_facing(dpid, port)
    assert all(p != (dpid, port) for p in probes_by_port(core, WALL))  # none sent there
    s2 = dp(core, "s2")
    genuine = core.lldp.probe(s2, 1, WALL)  # even a valid signature
    assert core.packet_in(dpid, port, genuine, 6.0, wall_s=WALL).change is None
    assert core.lldp.rejected["host_port"] == 1
    assert (dpid, port) not in core.state.lldp_seen
    (event,) = rejected_events(core)
    assert event["reason"] == "host_port" and event["port_no"] == port


def test_a_port_the_file_does_not_know_is_host_facing_once_a_host_speaks(
        diamond: Topology) -> None:
    core, _ = signed_core(diamond)
    s3 = dp(core, "s3")
    assert not core.host_facing(s3, 7)
    arp = packets.arp_reply(target_mac="02:cc:00:00:00:07", target_ip="10.0.7.1",
                            requester_mac="02:cc:00:00:00:08", requester_ip="10.0.7.7")
    core.packet_in(s3, 7, arp, 5.0)
    assert core.host_facing(s3, 7)


def test_malformed_lldp_is_counted(diamond: Topology) -> None:
    core, _ = signed_core(diamond)
    s1 = dp(core, "s1")
    junk = bytes.fromhex("0180c200000e") + bytes(6) + b"\x88\xcc" + b"\xff" * 20
    truncated = core.lldp.probe(dp(core, "s2"), 1, WALL)[:-30]
    for data in (junk, truncated):
        assert core.packet_in(s1, 1, data, 5.0, wall_s=WALL).change is None
    assert core.lldp.rejected["malformed"] == 2


def test_events_are_paced_per_port_and_counters_count_all(diamond: Topology) -> None:
    core, _ = signed_core(diamond)
    s1, s2 = dp(core, "s1"), dp(core, "s2")
    frame = packets.lldp_probe(s2, 9)
    for i in range(500):
        core.packet_in(s1, 1, frame, 10.0 + i * 0.01, wall_s=WALL)
    core.packet_in(s1, 2, frame, 12.0, wall_s=WALL)
    assert core.lldp.rejected["unsigned"] == 501
    assert [(e["port_no"], e["dropped"]) for e in rejected_events(core)] == [(1, 1), (2, 1)]
    core.packet_in(s1, 1, frame, 10.0 + EVENT_INTERVAL_S, wall_s=WALL)
    assert [(e["port_no"], e["dropped"]) for e in rejected_events(core)][-1] == (1, 500)


def test_unsigned_discovery_when_signing_is_off(diamond: Topology) -> None:
    core, _ = running(diamond)
    probes = probes_by_port(core, WALL)
    assert all(packets.parse_lldp(d).signature is None for d in probes.values())  # type: ignore[union-attr]
    deliver_all(core, probes, WALL)
    assert len(core.state.link_report(5.5)["verified"]) == len(diamond.links)
    # the host-port rule holds without signatures too
    node, port = core.wiring.host_port[diamond.hosts[0].name]
    core.packet_in(core.wiring.node_dpid[node], port, packets.lldp_probe(dp(core, "s2"), 1), 6.0)
    assert core.lldp.rejected["host_port"] == 1


_SIGNED = LldpGuard(AUTH).probe(0x52, 3, WALL)


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=14, max_value=len(_SIGNED) - 1), st.integers(1, 255))
def test_any_flipped_byte_is_refused(index: int, flip: int) -> None:
    """Changing any byte of a signed probe past the Ethernet header (sender, TTL, the
    signature TLV) never gives a frame the guard accepts for another sender or time."""
    data = bytearray(_SIGNED)
    data[index] ^= flip
    probe = packets.parse_lldp(bytes(data))
    reason = LldpGuard(AUTH).check(probe, 1, 1, WALL)
    original = packets.parse_lldp(_SIGNED)
    assert reason is not None or probe == original  # only bytes nothing reads (the TTL)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_random_lldp_payloads_never_raise(payload: bytes) -> None:
    data = bytes.fromhex("0180c200000e") + bytes(6) + b"\x88\xcc" + payload
    assert LldpGuard(AUTH).check(packets.parse_lldp(data), 1, 1, WALL) is not None


def test_the_mac_covers_sender_time_and_nonce() -> None:
    base = packets.lldp_mac(KEY, 1, 2, 3, 4)
    assert len(base) == 32
    assert len({base, packets.lldp_mac(KEY, 9, 2, 3, 4), packets.lldp_mac(KEY, 1, 9, 3, 4),
                packets.lldp_mac(KEY, 1, 2, 9, 4), packets.lldp_mac(KEY, 1, 2, 3, 9),
                packets.lldp_mac(b"k" * 32, 1, 2, 3, 4)}) == 6


def test_auth_refuses_a_short_key() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        LldpAuth(b"short", max_age_s=6.0)


# --- the secret ------------------------------------------------------------------------------


def test_secret_file_is_generated_0600_and_kept(tmp_path: Path) -> None:
    key = load_lldp_secret(tmp_path / "state")
    path = tmp_path / "state" / "lldp-secret"
    assert len(key) == 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_lldp_secret(tmp_path / "state") == key
    assert [p.name for p in path.parent.iterdir()] == ["lldp-secret"]  # no temporary left


def test_a_bad_secret_file_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "lldp-secret"
    path.write_text("not hex\n")
    os.chmod(path, 0o600)
    with pytest.raises(CpnError, match="lldp-secret.*32 hex digits"):
        load_lldp_secret(tmp_path)
    assert path.read_text() == "not hex\n"


def test_cluster_members_share_one_secret(etcd_server: EtcdServer) -> None:
    prefix = f"/test-lldp-{os.getpid()}"
    with EtcdClient(etcd_server.client_url) as a, EtcdClient(etcd_server.client_url) as b:
        first = shared_lldp_secret(a, prefix)
        assert shared_lldp_secret(b, prefix) == first and len(first) == 32
        kv = a.get(f"{prefix}/secrets/lldp")
        assert kv is not None and bytes.fromhex(kv.value.decode()) == first
        assert shared_lldp_secret(b, "/another-prefix-" + str(os.getpid())) != first


def test_one_member_checks_another_members_probe(etcd_server: EtcdServer) -> None:
    """Two members, one secret from etcd: a probe one signs passes the other's checks while
    their clocks differ by less than the skew allowance, and is stale beyond it."""
    prefix = f"/test-lldp-members-{os.getpid()}"
    with EtcdClient(etcd_server.client_url) as a, EtcdClient(etcd_server.client_url) as b:
        key_a, key_b = shared_lldp_secret(a, prefix), shared_lldp_secret(b, prefix)
    sender = LldpGuard(LldpAuth(key_a, max_age_s=6.0, skew_s=0.5))
    for offset_s, reason in ((0.4, None), (-0.4, None), (-0.6, "stale"), (6.6, "stale")):
        receiver = LldpGuard(LldpAuth(key_b, max_age_s=6.0, skew_s=0.5))
        probe = packets.parse_lldp(sender.probe(7, 1, WALL))
        assert receiver.check(probe, 8, 1, WALL + offset_s) == reason


def test_settings_default_to_signed_discovery() -> None:
    s = load_settings(environ={})
    assert s.network.lldp_auth is True and s.network.lldp_max_age_s is None
    off = load_settings(environ={"CPN_NETWORK_LLDP_AUTH": "false"})
    assert off.network.lldp_auth is False


def test_frame_layout_is_the_documented_one() -> None:
    """The signature TLV: type 127, OUI 02:43:50, subtype 1, time ms, nonce, 32-byte MAC."""
    data = LldpGuard(AUTH).probe(0x52, 3, WALL)
    tlv = struct.pack("!H", (127 << 9) | 52) + packets.LLDP_AUTH_OUI + b"\x01"
    at = data.index(tlv)
    time_ms, nonce = struct.unpack("!QQ", data[at + 6:at + 22])
    assert time_ms == int(WALL * 1000) and nonce == 1
    assert data[at + 22:at + 54] == packets.lldp_mac(KEY, 0x52, 3, time_ms, nonce)


def test_rejections_are_exported_by_reason(diamond: Topology) -> None:
    from controller.api.metrics import Metrics
    from controller.network.service import ControllerService

    svc = ControllerService(diamond)
    svc.set_lldp_auth(AUTH)
    svc.packet_in(1, 1, packets.lldp_probe(2, 1))
    svc.set_lldp_auth(AUTH)  # a new key keeps the counts
    svc.packet_in(1, 1, b"\x01\x80\xc2\x00\x00\x0e" + bytes(6) + b"\x88\xcc\x00")
    lines = Metrics(svc).exposition().decode().splitlines()
    assert 'cpn_lldp_rejected_total{reason="unsigned"} 1.0' in lines
    assert 'cpn_lldp_rejected_total{reason="malformed"} 1.0' in lines
    assert 'cpn_lldp_rejected_total{reason="stale"} 0.0' in lines
