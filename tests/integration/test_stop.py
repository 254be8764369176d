"""``cpn-controller`` stops on SIGTERM and on SIGINT in every state, within
:data:`STOP_BOUND_S`, and leaves its OpenFlow and REST ports free for the next controller.

The states: idle (no switch ever); a live read waiting on a switch that does not answer and a
change in flight whose barriers never come (switches here are :class:`FakeSwitch` processes
stopped with SIGSTOP: their connections stay up, nothing answers); and, on one shared
triangle lab of real Open vSwitch bridges, switches connected, switches gone (their bridges
deleted, as a lab teardown does) and a batch of intents being added while the signal comes.
Then a cluster member (real etcd child process) stops the same way and leaves the cluster.

Each controller of the lab cases listens on the lab's one OpenFlow port: each start proves the
previous controller freed it.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster_harness import TOKEN as CLUSTER_TOKEN
from cluster_harness import MemberProcess
from harness import ControllerProcess, free_port, start_lab
from waiting import wait_until

from controller.cluster.etcdproc import EtcdServer
from controller.lab.network import LabNetwork
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

TRIANGLE = topology_file("triangle")
STOP_BOUND_S = 5.0
"""From the signal to the process's exit."""
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"),
           pytest.param(signal.SIGINT, id="SIGINT")]
TOKEN = "stop-test-token"
HOSTS = ("h-s1", "h-s2", "h-s3")

FAKE_SWITCH = r'''
"""An OpenFlow 1.3 switch that answers the handshake, echoes, barriers and multipart
requests (empty but for its ports) and nothing else: enough for the controller to take it as
connected and reconciled. Stopped with SIGSTOP it keeps its connection and answers nothing."""
import socket, struct, sys, time

def msg(kind, xid, body=b""):
    return struct.pack("!BBHI", 4, kind, 8 + len(body), xid) + body

def port_desc(no):
    return struct.pack("!I4x6s2x16sIIIIIIII", no, bytes([2, 0, 0, 0, 0, no]),
                       f"p{no}".encode(), 0, 4, 0, 0, 0, 0, 0, 0)

host, port, dpid, n_ports = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + 20
while True:
    try:
        sock = socket.create_connection((host, port))
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
sock.sendall(msg(0, 1))  # hello
buf = b""
while True:
    data = sock.recv(65536)
    if not data:
        sys.exit(0)
    buf += data
    while len(buf) >= 8:
        _, kind, length, xid = struct.unpack("!BBHI", buf[:8])
        if len(buf) < length:
            break
        body, buf = buf[8:length], buf[length:]
        if kind == 2:  # echo request
            sock.sendall(msg(3, xid, body))
        elif kind == 5:  # features request
            sock.sendall(msg(6, xid, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0x4F, 0)))
        elif kind == 20:  # barrier request
            sock.sendall(msg(21, xid))
        elif kind == 18:  # multipart request: port descriptions, else an empty reply
            part = struct.unpack("!H", body[:2])[0]
            ports = b"".join(port_desc(n) for n in range(1, n_ports + 1)) if part == 13 else b""
            sock.sendall(msg(19, xid, struct.pack("!HH4x", part, 0) + ports))
'''


class FakeSwitch:
    """:data:`FAKE_SWITCH` as a process connected to ``127.0.0.1:port`` as ``dpid``."""

    def __init__(self, port: int, dpid: int, n_ports: int = 3) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", FAKE_SWITCH, "127.0.0.1",
                                      str(port), str(dpid), str(n_ports)])

    def freeze(self) -> None:
        """SIGSTOP: the connection stays up, nothing is answered any more."""
        self.proc.send_signal(signal.SIGSTOP)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait(timeout=10)


class StopController(ControllerProcess):
    """A controller with a known write token (and a given OpenFlow port, for the lab)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        super().__init__(TRIANGLE, workdir, startup_grace_s=1.0)
        if port is not None:
            self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def start(self, timeout_s: float = 20.0) -> None:
        self.api_token = TOKEN
        super().start(timeout_s)

    def metric(self, msg_type: str) -> float:
        """OpenFlow messages of ``msg_type`` sent so far (``/metrics``)."""
        text = httpx.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=5.0).text
        for line in text.splitlines():
            if line.startswith("cpn_openflow_messages_total{") and \
                    f'type="{msg_type}"' in line and 'direction="out"' in line:
                return float(line.rsplit(" ", 1)[1])
        return 0.0


def port_free(port: int) -> bool:
    """A new listener can bind ``127.0.0.1:port`` (with SO_REUSEADDR, as servers do: left
    TIME_WAIT connections do not count)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
        return True


def stop_with(ctl: ControllerProcess, signum: int) -> float:
    """Send ``signum``; assert the controller exits within :data:`STOP_BOUND_S` with status
    128 + signum, frees both ports and logs its stop; the seconds it took."""
    assert ctl.proc is not None and ctl.proc.poll() is None, ctl.log_tail()
    t0 = time.monotonic()
    ctl.proc.send_signal(signum)
    try:
        rc = ctl.proc.wait(timeout=STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        ctl.proc.send_signal(signal.SIGUSR1)  # if a thread dump handler is there
        pytest.fail(f"still running {STOP_BOUND_S:g} s after {signal.Signals(signum).name}:\n"
                    f"{ctl.log_tail(40)}", pytrace=False)
    took = time.monotonic() - t0
    assert rc == 128 + signum, f"exit status {rc}:\n{ctl.log_tail(40)}"
    assert port_free(ctl.port), f"OpenFlow port {ctl.port} still taken after the exit"
    assert port_free(ctl.api_port), f"REST port {ctl.api_port} still taken after the exit"
    log = ctl.log_text()
    name = signal.Signals(signum).name
    assert f"stopping ({name}) | event=stop\n" in log, log[-2000:]
    assert "event=stopped" in log, log[-2000:]
    assert "event=stop_forced" not in log, log[-2000:]
    return took


def in_background(call: Any) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``call()`` in a thread; its result (or exception) lands in the dict."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = call()
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, out


def batch(n: int, first_port: int = 1000) -> dict[str, Any]:
    """``n`` intents between the triangle's hosts, told apart by their UDP port."""
    return {"intents": [{"src": HOSTS[i % 3], "dst": HOSTS[(i + 1) % 3],
                         "max_latency_ms": 100.0,
                         "match": {"ip_proto": 17, "dst_port": first_port + i}}
                        for i in range(n)]}


def post_batch(ctl: StopController, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{ctl.url}/intents/batch", json=body, timeout=60.0,
                      headers={"Authorization": f"Bearer {TOKEN}"})


# -- no switches: idle, and fake switches that stop answering ---------------------------------

@pytest.mark.parametrize("signum", SIGNALS)
def test_idle_controller_stops(signum: int, tmp_path: Path) -> None:
    ctl = StopController(tmp_path)
    ctl.start()
    try:
        took = stop_with(ctl, signum)
    finally:
        ctl.stop()
    print(f"stopped in {took:.2f} s")


WATCHDOG = """
import logging, sys, threading
from controller.main import StructuredFormatter, _watchdog
handler = logging.FileHandler(sys.argv[1])
handler.setFormatter(StructuredFormatter())
logging.getLogger().addHandler(handler)
threading.Thread(target=threading.Event().wait, name="stuck-worker").start()
_watchdog(0.3, 143)
"""


def test_the_watchdog_ends_a_stop_that_hangs_and_names_what_ran(tmp_path: Path) -> None:
    """The last resort: a non-daemon thread that never ends would hold the process; the
    watchdog ends it after its grace and logs the thread."""
    log = tmp_path / "watchdog.log"
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", WATCHDOG, str(log)], timeout=10)
    assert done.returncode == 143
    assert time.monotonic() - t0 < 5.0
    text = log.read_text()
    assert "event=stop_forced" in text and " ERROR " in text, text
    assert "stuck-worker (not daemon) at " in text, text


@pytest.fixture
def frozen_switches(tmp_path: Path) -> Iterator[tuple[StopController, list[FakeSwitch]]]:
    """A controller with the triangle's three switches (:class:`FakeSwitch`) connected and
    reconciled."""
    ctl = StopController(tmp_path)
    ctl.start()
    switches = [FakeSwitch(ctl.port, dpid) for dpid in (1, 2, 3)]
    try:
        ctl.wait_synced(3, 20.0, "the three fake switches")
        yield ctl, switches
    finally:
        ctl.stop()
        for sw in switches:
            sw.close()


@pytest.mark.parametrize("signum", SIGNALS)
def test_stops_while_a_live_read_waits_on_a_switch_that_does_not_answer(
        signum: int, frozen_switches: tuple[StopController, list[FakeSwitch]]) -> None:
    ctl, switches = frozen_switches
    switches[0].freeze()
    sent = ctl.metric("OFPFlowStatsRequest")
    reader, out = in_background(lambda: httpx.get(
        f"{ctl.url}/switches/0x1/flows", params={"source": "switch"}, timeout=30.0))
    wait_until(lambda: ctl.metric("OFPFlowStatsRequest") > sent, 5.0,
               "the live read's request sent")
    assert reader.is_alive(), out  # waiting: the switch does not answer
    took = stop_with(ctl, signum)
    reader.join(5.0)
    assert not reader.is_alive()
    # the waiting read is answered, not cut off: the controller is stopping
    answer = out.get("result")
    assert answer is not None and answer.status_code == 503, out
    assert "stopping" in answer.json()["detail"], answer.text
    print(f"stopped in {took:.2f} s")


@pytest.mark.parametrize("signum", SIGNALS)
def test_stops_while_a_change_waits_for_barriers_that_never_come(
        signum: int, frozen_switches: tuple[StopController, list[FakeSwitch]]) -> None:
    ctl, switches = frozen_switches
    for sw in switches:
        sw.freeze()
    sent = ctl.metric("OFPBarrierRequest")
    writer, out = in_background(lambda: post_batch(ctl, batch(300)))
    wait_until(lambda: ctl.metric("OFPBarrierRequest") > sent, 10.0,
               "the batch's change sent")
    assert writer.is_alive(), out  # the change is in flight: no barrier reply comes
    took = stop_with(ctl, signum)
    writer.join(5.0)
    assert not writer.is_alive()
    # the batch was accepted and stored before the stop: it answers with its intents pending
    answer = out.get("result")
    assert answer is not None and answer.status_code == 201, out
    assert {i["state"] for i in answer.json()} == {"pending"}, answer.text[:500]
    print(f"stopped in {took:.2f} s")


# -- one triangle lab of Open vSwitch bridges ---------------------------------------------------

@pytest.fixture(scope="module")
def lab(lab_env: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabNetwork]:
    """The triangle lab, its switches pointed at one OpenFlow port that every controller of
    the lab cases listens on; they retry at most every second (OVS backs off to 8 s)."""
    first = StopController(tmp_path_factory.mktemp("stop-lab"), port=free_port())
    first.start()
    try:
        net, _ = start_lab(lab_env, load_topology(TRIANGLE), first, timeout_s=60.0)
    finally:
        first.stop()
    try:
        for node in net.topology.nodes:
            bridge = net.plan.switch(node.name)
            uuids = net.switch(node.name).vsctl("get", "Bridge", bridge, "controller")
            for uuid in uuids.strip().strip("[]").split(","):
                net.switch(node.name).vsctl("set", "Controller", uuid.strip(),
                                            "max_backoff=1000")
        net.stop_port = first.port  # type: ignore[attr-defined]
        yield net
    finally:
        net.stop()


@pytest.fixture
def lab_controller(lab: LabNetwork, tmp_path: Path) -> Iterator[StopController]:
    """A controller on the lab's port, every switch of the lab connected and reconciled
    (bridges an earlier case deleted are made again)."""
    ctl = StopController(tmp_path, port=lab.stop_port)  # type: ignore[attr-defined]
    ctl.start()
    try:
        gone = [n.name for n in lab.topology.nodes
                if not lab.switch(n.name).vsctl("--if-exists", "get", "Bridge",
                                                lab.plan.switch(n.name), "name").strip()]
        for node in gone:
            lab.start_switch(node, timeout_s=30.0)
        ctl.wait_synced(3, 30.0, "every triangle switch")
        yield ctl
    finally:
        print(f"--- controller log (tail) ---\n{ctl.log_tail(40)}")
        ctl.stop()


@pytest.mark.parametrize("signum", SIGNALS)
def test_stops_with_switches_connected(signum: int, lab_controller: StopController) -> None:
    took = stop_with(lab_controller, signum)
    print(f"stopped in {took:.2f} s")


@pytest.mark.parametrize("signum", SIGNALS)
def test_stops_while_a_batch_of_intents_is_added(signum: int,
                                                lab_controller: StopController) -> None:
    ctl = lab_controller
    sent = ctl.metric("OFPFlowMod")
    writer, out = in_background(lambda: post_batch(ctl, batch(2000)))
    wait_until(lambda: ctl.metric("OFPFlowMod") > sent or not writer.is_alive(), 20.0,
               "the batch's FlowMods leaving")
    took = stop_with(ctl, signum)
    writer.join(5.0)
    assert not writer.is_alive()
    # accepted and stored before the stop, whether its change was finished or given up
    answer = out.get("result")
    assert answer is not None and answer.status_code == 201, out
    abandoned = "event=change_abandoned" in ctl.log_text()
    print(f"stopped in {took:.2f} s; the batch's change {'given up' if abandoned else 'done'}")


@pytest.mark.parametrize("signum", SIGNALS)
def test_stops_after_the_switches_are_gone(signum: int, lab: LabNetwork,
                                           lab_controller: StopController) -> None:
    for node in lab.topology.nodes:
        lab.stop_switch(node.name)
    wait_until(lambda: httpx.get(f"{lab_controller.url}/health", timeout=5.0)
               .json()["switches_connected"] == 0, 15.0, "every switch gone",
               detail=lab_controller.log_tail)
    took = stop_with(lab_controller, signum)
    print(f"stopped in {took:.2f} s")


# -- a cluster member ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    server = EtcdServer(workdir=tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_cluster_member_stops_and_leaves_the_cluster(signum: int, etcd: EtcdServer,
                                                       tmp_path: Path) -> None:
    member = MemberProcess(TRIANGLE, tmp_path, "m1", etcd.client_url, startup_grace_s=1.0)
    member.api_token = CLUSTER_TOKEN
    member.start(timeout_s=30.0)
    switches = [FakeSwitch(member.port, dpid) for dpid in (1, 2, 3)]
    try:
        wait_until(lambda: set(member.masters().values()) == {"m1"}, 20.0,
                   "the member mastering the three fake switches", ignore=(httpx.HTTPError,),
                   detail=member.log_tail)
        took = stop_with(member, signum)
    finally:
        member.stop()
        for sw in switches:
            sw.close()
    # it left: its id is free at once (a live member's id is refused)
    again = MemberProcess(TRIANGLE, tmp_path / "again", "m1", etcd.client_url,
                          startup_grace_s=1.0)
    again.api_token = CLUSTER_TOKEN
    again.start(timeout_s=30.0)
    try:
        assert again.cluster()["member_id"] == "m1"
    finally:
        again.stop()
    print(f"stopped in {took:.2f} s")
