"""Anycast steering on the national lab (real OVS in Mininet, the controller as a process).

A client in a demand city pings the service's anycast address and gets answers from it; the
site host that receives the echo requests (its own ICMP counters, in its namespace) is the one
the policy chose, and the anycast flows on the client's switch count the packets. Marking that
site down moves the client: the next pings are answered by the next site, within the bound.

A second client, never assigned over REST, is assigned on its first packet to the anycast
address (the controller sees it as a table-2 miss) and answered by the policy's site; stopping
that site's switch moves it to the next site automatically (no API call).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from harness import (
    NATIONAL,
    ControllerProcess,
    controller_and_lab,
    packets_by_cookie,
    tx_offload_off,
    wait_until_listening,
)
from waiting import wait_until

from controller.errors import LabError
from controller.lab.network import LabNetwork
from controller.network.flows import OWNER_ANYCAST, make_cookie
from controller.topology.model import Topology

ANYCAST_IP = "10.255.0.1"
CLIENT = "h-city-lanzhou"
FIRST, NEXT = "cs:gansu-qingyang:ai-01", "cs:sichuan-tianfu:ai-01"
AUTO_CLIENT = "h-dcp-chengdu"
# nearest intelligent sites of dcp-chengdu: sichuan-tianfu 0.13 ms, then chongqing 2.04 ms
AUTO_FIRST, AUTO_NEXT = "cs:sichuan-tianfu:ai-01", "cs:chongqing:ai-01"
SERVICE = {"name": "infer", "anycast_ip": ANYCAST_IP, "kind": "intelligent",
           "demand_per_client": 0.01, "max_latency_ms": 5.0, "policy": "nearest"}


@dataclass
class Env:
    ctl: ControllerProcess
    lab: LabNetwork
    topo: Topology
    token: str

    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"http://127.0.0.1:{self.ctl.api_port}/api/v1{path}",
                             headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0,
                             **kw)


@pytest.fixture(scope="module")
def env(lab_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with controller_and_lab(lab_env, NATIONAL, tmp_path_factory.mktemp("ctl-anycast"),
                            startup_grace_s=5.0, lab_timeout_s=180,
                            synced_timeout_s=90) as (ctl, lab):
        token = (ctl.state_dir / "api-token").read_text().strip()
        yield Env(ctl, lab, lab.topology, token)


def in_echos(env: Env, host: str) -> int:
    """ICMP echo requests the host's own stack received (its namespace's /proc/net/snmp)."""
    text = env.lab.host(host).cmd("cat /proc/net/snmp")
    lines = [ln.split() for ln in text.splitlines() if ln.startswith("Icmp:")]
    header, values = lines[0], lines[1]
    return int(values[header.index("InEchos")])


def ping_anycast(env: Env, count: int, client: str = CLIENT) -> tuple[int, str]:
    out = env.lab.host(client).cmd(f"ping -n -c {count} -i 0.2 -W 1 {ANYCAST_IP}")
    m = re.search(r"(\d+) packets transmitted, (\d+) (?:packets )?received", out)
    assert m is not None, out
    return int(m.group(2)), out


def site_host(env: Env, site_id: str) -> str:
    return next(s.host for s in env.topo.compute_sites if s.id == site_id)


def test_anycast_ping_reaches_the_chosen_site_and_moves_when_it_goes_down(env: Env) -> None:
    r = env.api("POST", "/services", json=SERVICE)
    assert r.status_code == 201, r.text
    r = env.api("POST", "/services/infer/assignments", json={"client": CLIENT})
    assert r.status_code == 200, r.text
    first = r.json()
    assert first["site_id"] == FIRST
    cookie = make_cookie(OWNER_ANYCAST, int.from_bytes(bytes(
        int(x) for x in env.topo.host(CLIENT).ip.split(".")), "big"))
    client_node = env.topo.host(CLIENT).node
    wait_until(lambda: any(f"cookie={cookie:#x}" in ln for ln in env.lab.dump_flows(client_node)),
               10, "anycast flows on the client's switch",
               detail=lambda: "\n".join(env.lab.dump_flows(client_node, table=1)))

    # read back from the switch, the NAT flows equal the controller's plan (set-fields
    # included), so reconciliation after a restart keeps them instead of churning
    def nat(source: str) -> list[tuple[Any, ...]]:
        got = env.api("GET", f"/switches/{client_node}/flows", params={"source": source})
        assert got.status_code == 200, got.text
        owner = f"anycast:{cookie & ((1 << 56) - 1)}"
        return sorted((f["priority"], str(f["match"]), str(f["instructions"]))
                      for f in got.json()["flows"] if f["owner"] == owner)

    on_switch = nat("switch")
    assert len(on_switch) == 2 and on_switch == nat("controller"), on_switch
    assert "set_field" in str(on_switch)

    a_host, b_host = site_host(env, FIRST), site_host(env, NEXT)
    a0, b0 = in_echos(env, a_host), in_echos(env, b_host)
    received, out = ping_anycast(env, 5)
    assert received == 5, out
    assert f"from {ANYCAST_IP}" in out  # the client only ever sees the anycast address
    a1, b1 = in_echos(env, a_host), in_echos(env, b_host)
    assert a1 - a0 >= 5 and b1 == b0, (a0, a1, b0, b1)
    # OVS pushes datapath counts to OpenFlow flows about once a second: wait (bounded)
    counted = wait_until(
        lambda: (lambda c: c if c.get(client_node, 0) >= 10 else None)(
            packets_by_cookie(env.lab, cookie)),
        8, "the NAT flows count the pings", poll_s=0.5,
        detail=lambda: str(packets_by_cookie(env.lab, cookie)))
    assert set(first["path"]) <= set(counted), counted

    t0 = time.monotonic()
    r = env.api("PATCH", f"/compute-sites/{FIRST}", json={"state": "down"})
    assert r.status_code == 200, r.text
    moves = r.json()["moves"]
    assert [(m["client_host"], m["to_site"]) for m in moves] == [(CLIENT, NEXT)]
    assert moves[0]["latency_ms"] <= 5.0
    tries = 0
    while tries < 5:  # bounded: the first try is expected to answer (the PATCH waited for
        tries += 1    # the barriers); more tries only make a slow case visible in the print
        received, out = ping_anycast(env, 1)
        if received == 1:
            break
    moved_s = time.monotonic() - t0
    print(f"\nsite down -> client answered by {NEXT} after {moved_s * 1000:.0f} ms "
          f"(PATCH with barriers + first answered ping, {tries} ping(s))")
    assert received == 1, out
    a2, b2 = in_echos(env, a_host), in_echos(env, b_host)
    received, out = ping_anycast(env, 5)
    assert received == 5, out
    a3, b3 = in_echos(env, a_host), in_echos(env, b_host)
    assert b3 - b2 >= 5 and a3 == a2, (a2, a3, b2, b3)
    assigned = env.api("GET", "/services/infer/assignments").json()
    assert [x["site_id"] for x in assigned] == [NEXT]


def test_first_packet_assigns_a_client_and_a_stopped_site_switch_moves_it(env: Env) -> None:
    if env.api("GET", "/services/infer").status_code == 404:  # this test run alone
        assert env.api("POST", "/services", json=SERVICE).status_code == 201
    clients = [x["client_host"] for x in env.api("GET", "/services/infer/assignments").json()]
    assert AUTO_CLIENT not in clients
    a_host, b_host = site_host(env, AUTO_FIRST), site_host(env, AUTO_NEXT)
    a0, b0 = in_echos(env, a_host), in_echos(env, b_host)
    # the first echo request misses table 2 and reaches the controller, which assigns the
    # client, installs its NAT flows and re-injects that packet: all five are answered
    received, out = ping_anycast(env, 5, AUTO_CLIENT)
    assert received == 5, out
    assert f"from {ANYCAST_IP}" in out
    a1, b1 = in_echos(env, a_host), in_echos(env, b_host)
    assert a1 - a0 >= 5 and b1 == b0, (a0, a1, b0, b1)
    mine = [x for x in env.api("GET", "/services/infer/assignments").json()
            if x["client_host"] == AUTO_CLIENT]
    assert [x["site_id"] for x in mine] == [AUTO_FIRST], mine
    site_node = mine[0]["site_node"]

    t0 = time.time()  # wall clock: ping -D stamps each reply with it
    env.lab.stop_switch(site_node)
    stopped_s = time.time() - t0
    try:
        # a ping every 20 ms until 100 are answered (at most 15 s: on a loaded machine
        # Open vSwitch may take seconds to drop a deleted bridge's controller connection,
        # which is when the controller learns of the loss); the first reply's own timestamp
        # times the move
        out = env.lab.host(AUTO_CLIENT).cmd(
            f"ping -D -n -c 100 -w 15 -i 0.02 -W 1 {ANYCAST_IP}")
        replies = [(float(t), int(seq)) for t, seq in
                   re.findall(r"\[(\d+\.\d+)\] \d+ bytes from .* icmp_seq=(\d+)", out)]
        assert replies, out
        answered = [seq for _, seq in replies]
        moved_ms = (replies[0][0] - t0) * 1000.0
        moved_log = [ln for ln in env.ctl.log_tail(400).splitlines()
                     if "anycast client(s) moved" in ln]
        print(f"\nswitch {site_node} stopped at {t0:.3f} -> {AUTO_CLIENT} answered by "
              f"{AUTO_NEXT} after {moved_ms:.0f} ms (stopping the bridge took "
              f"{stopped_s * 1000:.0f} ms); controller: {moved_log[-1:]}")
        # once answered, answered for good (the later sequence numbers all came back, one
        # in flight at the move aside)
        assert max(answered) - min(answered) + 1 - len(answered) <= 1, out
        mine = [x for x in env.api("GET", "/services/infer/assignments").json()
                if x["client_host"] == AUTO_CLIENT]
        assert [x["site_id"] for x in mine] == [AUTO_NEXT], mine
        assert site_node not in mine[0]["path"] and mine[0]["latency_ms"] <= 5.0
        b2 = in_echos(env, b_host)
        received, out = ping_anycast(env, 5, AUTO_CLIENT)
        assert received == 5, out
        assert in_echos(env, b_host) - b2 >= 5
    finally:
        try:
            env.lab.start_switch(site_node, timeout_s=20)
        except LabError as exc:  # the lab is torn down after the module anyway
            print(f"restarting {site_node}: {exc}")


TCP_CLIENT = "h-city-yinchuan"
TCP_PORT = 8000
# answers the site id it was started with (argv[1]) to whoever connects, then closes
TCP_SERVER = (
    "import socketserver, sys\n"
    "class H(socketserver.BaseRequestHandler):\n"
    "    def handle(self):\n"
    "        self.request.sendall(sys.argv[1].encode())\n"
    "socketserver.TCPServer.allow_reuse_address = True\n"
    "socketserver.TCPServer(('0.0.0.0', int(sys.argv[2])), H).serve_forever()\n"
)
# connects to argv[1]:argv[2] (bounded), prints the peer address it sees and what it received
TCP_CLIENT_CODE = (
    "import json, socket, sys\n"
    "s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)\n"
    "s.settimeout(3)\n"
    "peer = s.getpeername()[0]\n"
    "data = b''\n"
    "while True:\n"
    "    chunk = s.recv(256)\n"
    "    if not chunk:\n"
    "        break\n"
    "    data += chunk\n"
    "s.close()\n"
    "print(json.dumps({'peer': peer, 'data': data.decode()}))\n"
)


def test_tcp_to_the_anycast_address_reaches_the_assigned_site(env: Env) -> None:
    """Runs in whatever state the tests above left (a site down, a switch restarted): the
    client is new and the expected site is the one the controller reports for it."""
    if env.api("GET", "/services/infer").status_code == 404:  # this test run alone
        assert env.api("POST", "/services", json=SERVICE).status_code == 201
    site_of_host = {s.host: s.id for s in env.topo.compute_sites
                    if s.kind == SERVICE["kind"]}
    tx_offload_off(env.lab, [*site_of_host, TCP_CLIENT])
    servers = [env.lab.host(host).popen(["python3", "-c", TCP_SERVER, site_id, str(TCP_PORT)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
               for host, site_id in site_of_host.items()]
    try:
        wait_until_listening(env.lab, site_of_host, TCP_PORT,
                             detail=lambda: str([p.poll() for p in servers]))
        r = env.api("POST", "/services/infer/assignments", json={"client": TCP_CLIENT})
        assert r.status_code == 200, r.text
        mine = [x for x in env.api("GET", "/services/infer/assignments").json()
                if x["client_host"] == TCP_CLIENT]
        assert len(mine) == 1, mine
        expected = mine[0]["site_id"]
        assert expected == r.json()["site_id"] and expected in site_of_host.values(), mine

        code = shlex.quote(TCP_CLIENT_CODE)
        out = env.lab.host(TCP_CLIENT).cmd(
            f"timeout 8 python3 -c {code} {ANYCAST_IP} {TCP_PORT} 2>&1")
        m = re.search(r"\{\"peer\".*\}", out)  # the shell echoes continuation prompts first
        assert m is not None, out
        got = json.loads(m.group(0))
        print(f"\n{TCP_CLIENT} -> {ANYCAST_IP}:{TCP_PORT} answered by {got['data']} "
              f"(controller: {expected}, {mine[0]['latency_ms']} ms)")
        assert got == {"peer": ANYCAST_IP, "data": expected}, (got, mine)
    finally:
        for p in servers:
            p.kill()
            p.wait(timeout=5)
