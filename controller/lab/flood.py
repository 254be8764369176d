"""A host that floods the control plane: IPv4 frames to random unknown destinations, mixed
with gratuitous ARP from random addresses, at a paced rate, out of one interface.

Run inside a lab host's namespace (``python -m controller.lab.flood IFACE ...``; root, a raw
``AF_PACKET`` socket). The frames are built once (a ring of distinct ones) and sent in
batches with a sleep to keep the pace, so a plain Python loop reaches several hundred
thousand frames/s on one core here; the rate asked for is the ceiling, the rate reached is
printed. Prints one JSON line: ``{"sent", "garp", "seconds", "pps"}``.

Every frame is addressed so that no flow of the controller knows it: the destinations are
drawn from ``--dst-net`` (default 10.200.0.0/16, no host of any shipped topology), and each
gratuitous ARP names a random sender address in ``--garp-net`` with a random locally
administered MAC.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import struct
import sys
import time

__all__ = ["flood_command", "flood_frames", "main", "send_paced"]

RING = 8192
"""distinct frames built before sending (the destinations repeat after this many)"""
BATCH = 128
"""frames sent between two looks at the clock"""


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4_udp(src_mac: bytes, dst_mac: bytes, src_ip: bytes, dst_ip: bytes) -> bytes:
    udp = struct.pack("!HHHH", 9, 9, 8 + 18, 0) + bytes(18)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src_ip, dst_ip)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return dst_mac + src_mac + b"\x08\x00" + head + udp


def _garp(mac: bytes, ip: bytes) -> bytes:
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, bytes(6), ip)
    return b"\xff" * 6 + mac + b"\x08\x06" + arp + bytes(18)


def flood_frames(src_mac: str, src_ip: str, *, dst_net: str = "10.200.0.0/16",
                 garp_net: str = "10.201.0.0/16", garp_every: int = 0, seed: int = 1,
                 count: int = RING) -> list[bytes]:
    """``count`` frames from ``src_mac``/``src_ip`` to random addresses of ``dst_net`` (to a
    made-up gateway MAC); with ``garp_every`` N > 0, every Nth is a gratuitous ARP from a
    random address of ``garp_net`` and a random locally administered MAC."""
    rng = random.Random(seed)
    dst = ipaddress.IPv4Network(dst_net)
    garp = ipaddress.IPv4Network(garp_net)
    smac, sip = _mac(src_mac), socket.inet_aton(src_ip)
    gateway = _mac("02:fe:00:00:00:01")
    out = []
    for i in range(count):
        if garp_every > 0 and i % garp_every == garp_every - 1:
            mac = bytes([0x02, rng.randrange(256)]) + rng.randbytes(4)
            ip = garp.network_address + rng.randrange(1, garp.num_addresses - 1)
            out.append(_garp(mac, ip.packed))
        else:
            ip = dst.network_address + rng.randrange(1, dst.num_addresses - 1)
            out.append(_ipv4_udp(smac, gateway, sip, ip.packed))
    return out


def send_paced(sock: socket.socket, frames: list[bytes], pps: float, seconds: float) -> int:
    """Send ``frames`` round and round at up to ``pps`` for ``seconds``; the count sent."""
    send = sock.send
    n = 0
    ring = len(frames)
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        start = n % ring
        for frame in frames[start:start + BATCH]:
            try:
                send(frame)
            except OSError:  # a full queue: the frame is dropped, as a NIC would
                continue
            n += 1
        now = time.perf_counter()
        if now >= end:
            return n
        ahead = n / pps - (now - t0)
        if ahead > 0:
            time.sleep(min(ahead, end - now))


def flood_command(iface: str, src_mac: str, src_ip: str, *, pps: float, seconds: float,
                  garp_every: int = 0, seed: int = 1) -> list[str]:
    """The command line that runs this module in a host (``host.popen(...)``)."""
    return [sys.executable, "-m", "controller.lab.flood", iface, "--src-mac", src_mac,
            "--src-ip", src_ip, "--pps", str(pps), "--seconds", str(seconds),
            "--garp-every", str(garp_every), "--seed", str(seed)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m controller.lab.flood", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("iface")
    p.add_argument("--src-mac", required=True)
    p.add_argument("--src-ip", required=True)
    p.add_argument("--pps", type=float, default=50_000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--garp-every", type=int, default=0,
                   help="every Nth frame a gratuitous ARP from a random address (0: none)")
    p.add_argument("--dst-net", default="10.200.0.0/16")
    p.add_argument("--garp-net", default="10.201.0.0/16")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    if a.pps <= 0 or not 0 < a.seconds <= 600:
        p.error("--pps must be > 0 and --seconds within (0, 600]")
    frames = flood_frames(a.src_mac, a.src_ip, dst_net=a.dst_net, garp_net=a.garp_net,
                          garp_every=a.garp_every, seed=a.seed)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((a.iface, 0))
        t0 = time.perf_counter()
        sent = send_paced(sock, frames, a.pps, a.seconds)
        took = time.perf_counter() - t0
    garps = sum(1 for f in frames if f[12:14] == b"\x08\x06")
    print(json.dumps({"sent": sent, "garp": sent * garps // len(frames),
                      "seconds": round(took, 3), "pps": round(sent / took)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
