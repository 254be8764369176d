"""A controller cluster for tests: an etcd child process (or three), members as processes
(``cpn-controller --cluster ... --member-id ...``), a lab whose switches connect to every
member, and what the tests read of them (``GET /api/v1/cluster``, roles as Open vSwitch
reports them, OpenFlow message counters from ``/metrics``)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
from harness import ControllerProcess, start_lab
from waiting import wait_until

from controller.cluster.etcdproc import EtcdCluster, EtcdServer
from controller.lab.network import LabNetwork
from controller.topology.loader import load_topology

TOKEN = "cluster-test-token"


class MemberProcess(ControllerProcess):
    """One cluster member: ``cpn-controller`` with ``--cluster`` and ``--member-id``, its
    own OpenFlow and API ports, logs and state dir."""

    def __init__(self, topology_file: Path, workdir: Path, member_id: str, endpoints: str,
                 *, startup_grace_s: float = 10.0, extra: Sequence[str] = ()) -> None:
        member_dir = workdir / member_id
        member_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(topology_file, member_dir, startup_grace_s=startup_grace_s)
        self.member_id = member_id
        self.endpoints = endpoints
        self.extra = list(extra)

    def command(self) -> list[str]:
        return [*super().command(), "--cluster", self.endpoints, "--member-id",
                self.member_id, *self.extra]

    readiness = "joined the cluster and listening for OpenFlow"

    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            return bool(self.get("/cluster").get("member_id") == self.member_id)
        except (httpx.HTTPError, ValueError):
            return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def get(self, path: str, timeout_s: float = 5.0) -> Any:
        r = httpx.get(f"{self.url}{path}", timeout=timeout_s)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any, timeout_s: float = 15.0) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=timeout_s,
                          headers={"Authorization": f"Bearer {TOKEN}"})

    def delete(self, path: str, timeout_s: float = 15.0) -> httpx.Response:
        return httpx.delete(f"{self.url}{path}", timeout=timeout_s,
                            headers={"Authorization": f"Bearer {TOKEN}"})

    def cluster(self) -> dict[str, Any]:
        return dict(self.get("/cluster"))

    def masters(self) -> dict[str, str | None]:
        """switch name -> master member id, as this member sees it."""
        return {s["name"]: s["master"] for s in self.cluster()["switches"]}

    def metric(self, name: str, **labels: str) -> float:
        """One sample of ``/metrics`` (0 when absent)."""
        text = httpx.get(f"http://127.0.0.1:{self.api_port}/metrics", timeout=5.0).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if m is None or m.group(1) != name:
                continue
            got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) if m.group(2) else ""
            if got == want:
                return float(m.group(3))
        return 0.0

    def flowmods_sent(self) -> float:
        return self.metric("cpn_openflow_messages_total", direction="out", type="OFPFlowMod")

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(19)  # SIGSTOP

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(18)  # SIGCONT


def ovs_roles(lab: LabNetwork, node: str) -> dict[int, str]:
    """OpenFlow port of each controller connection of ``node``'s bridge -> its role as Open
    vSwitch reports it (``master``, ``slave``, ``other``)."""
    bridge = lab.switch(node).name
    ids = subprocess.run(["ovs-vsctl", "get", "bridge", bridge, "controller"],
                         capture_output=True, text=True, check=True, timeout=10).stdout
    wanted = {u.strip() for u in ids.strip().strip("[]").split(",") if u.strip()}
    out = subprocess.run(["ovs-vsctl", "--format=json", "--columns=_uuid,target,role",
                          "list", "controller"], capture_output=True, text=True, check=True,
                         timeout=10).stdout
    roles: dict[int, str] = {}
    for (_, uuid), target, role in json.loads(out)["data"]:
        if uuid in wanted:
            roles[int(target.rsplit(":", 1)[1])] = role if isinstance(role, str) else ""
    return roles


class Cluster:
    """etcd plus ``n`` members on one topology (not started: see :func:`cluster_and_lab`)."""

    def __init__(self, topology_file: Path, workdir: Path, n: int = 3, *,
                 etcd_members: int = 1, startup_grace_s: float = 10.0) -> None:
        self.workdir = workdir
        self.etcd: EtcdServer | EtcdCluster = (
            EtcdServer(workdir=workdir / "etcd") if etcd_members == 1
            else EtcdCluster(etcd_members, workdir=workdir / "etcd"))
        self.topology_file = topology_file
        self.startup_grace_s = startup_grace_s
        self.n = n
        self.members: list[MemberProcess] = []
        self.api_token: str | None = None
        """every member's ``$CPN_API_TOKEN`` (None: each makes its own)"""

    @property
    def endpoints(self) -> str:
        etcd = self.etcd
        return etcd.endpoints if isinstance(etcd, EtcdCluster) else etcd.client_url

    def member(self, member_id: str) -> MemberProcess:
        return next(m for m in self.members if m.member_id == member_id)

    def start(self) -> None:
        self.etcd.start()
        for i in range(1, self.n + 1):
            m = MemberProcess(self.topology_file, self.workdir, f"m{i}", self.endpoints,
                              startup_grace_s=self.startup_grace_s)
            m.api_token = self.api_token
            m.start(timeout_s=30.0)
            self.members.append(m)

    def stop(self) -> None:
        for m in self.members:
            with contextlib.suppress(Exception):
                m.thaw()
            m.stop()
        self.etcd.stop()

    def live(self) -> list[MemberProcess]:
        return [m for m in self.members if m.proc is not None and m.proc.poll() is None]

    def every_switch_mastered(self, count: int, members: Sequence[MemberProcess] | None = None
                              ) -> bool:
        """Every live member sees ``count`` switches, each with a live master, and each
        master's role confirmed by the switch on the master itself."""
        live = list(members or self.live())
        ids = {m.member_id for m in live}
        try:
            views = [m.cluster() for m in live]
        except (httpx.HTTPError, ValueError):
            return False
        for v in views:
            sws = v["switches"]
            if len(sws) != count or any(s["master"] not in ids for s in sws):
                return False
        for m, v in zip(live, views, strict=True):
            for s in v["switches"]:
                if s["master"] == m.member_id and s["role_here"] != "master":
                    return False
        return True

    def wait_mastered(self, count: int, timeout_s: float = 30.0,
                      members: Sequence[MemberProcess] | None = None) -> None:
        wait_until(lambda: self.every_switch_mastered(count, members), timeout_s,
                   f"every one of {count} switches mastered by a live member",
                   poll_s=0.1, detail=self.tails)

    def tails(self) -> str:
        return "\n".join(f"--- {m.member_id} ---\n{m.log_tail(15)}" for m in self.members)


@contextlib.contextmanager
def cluster_and_lab(lab_env: Any, cluster: Cluster, *, synced_timeout_s: float = 90.0
                    ) -> Iterator[tuple[Cluster, LabNetwork]]:
    """``cluster`` started and a lab whose switches connect to all its members; every switch
    mastered and reconciled. Everything stopped at the end (logs printed)."""
    cluster.api_token = TOKEN
    try:
        cluster.start()
        topology = load_topology(cluster.topology_file)
        lab, _ = start_lab(lab_env, topology, cluster.members, timeout_s=120.0)
        try:
            count = len(topology.nodes)
            for m in cluster.members:
                m.wait_synced(count, synced_timeout_s, f"every switch on {m.member_id}")
            cluster.wait_mastered(count)
            yield cluster, lab
        finally:
            lab.stop()
    finally:
        print(cluster.tails())
        cluster.stop()


def role_request_answer(lab: LabNetwork, node: str, generation_id: int,
                        timeout_s: float = 10.0) -> tuple[str, int, int]:
    """Connect one more controller (this test) to ``node``'s bridge and send
    ``ROLE_REQUEST(MASTER, generation_id)``, as a member that still believed it led would:
    ``("role_reply", role, generation)`` or ``("error", type, code)`` as the switch answered.
    The extra controller is removed again."""
    import socket
    import struct

    bridge = lab.switch(node).name
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(timeout_s)
        port = listener.getsockname()[1]
        target = f"tcp:127.0.0.1:{port}"
        subprocess.run(["ovs-vsctl", "--", "--id=@c", "create", "controller",
                        f"target=\"{target}\"", "--", "add", "bridge", bridge, "controller",
                        "@c"], check=True, capture_output=True, timeout=10)
        try:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(timeout_s)
                conn.sendall(struct.pack("!BBHI", 4, 0, 8, 1))  # HELLO
                conn.sendall(struct.pack("!BBHIIIQ", 4, 24, 24, 2, 2, 0, generation_id))
                buf = b""
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    while len(buf) >= 8:
                        _, kind, length, xid = struct.unpack("!BBHI", buf[:8])
                        if len(buf) < length:
                            break
                        msg, buf = buf[:length], buf[length:]
                        if kind == 1 and xid == 2:  # ERROR
                            etype, ecode = struct.unpack("!HH", msg[8:12])
                            return "error", etype, ecode
                        if kind == 25 and xid == 2:  # ROLE_REPLY
                            role, _, gen = struct.unpack("!IIQ", msg[8:24])
                            return "role_reply", role, gen
                        if kind == 2:  # ECHO_REQUEST: answer, or the switch drops us
                            conn.sendall(struct.pack("!BBHI", 4, 3, length, xid) + msg[8:])
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
                raise AssertionError(f"{node}: no answer to the role request")
        finally:
            uuid = subprocess.run(["ovs-vsctl", "--bare", "--columns=_uuid", "find",
                                   "controller", f"target=\"{target}\""], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
            if uuid:
                subprocess.run(["ovs-vsctl", "remove", "bridge", bridge, "controller", uuid],
                               capture_output=True, timeout=10)
