"""A stand-in for the controller service that cluster members talk to (no switches): it
records the roles it is told and answers each MASTER request as a switch would, at once. Run
as a script it is one member in its own process, for tests that kill it:

    python tests/unit/cluster_fakes.py ENDPOINT PREFIX MEMBER_ID N_SWITCHES
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.network.views import RoleEvent, RoleView


@dataclass(frozen=True)
class _Switch:
    dpid: int
    name: str


class FakeService:
    """What :class:`~controller.cluster.member.ClusterMember` uses of the service."""

    def __init__(self, n_switches: int) -> None:
        self.role_listeners: list[Callable[[RoleEvent], None]] = []
        self._switches = [_Switch(d, f"s{d}") for d in range(1, n_switches + 1)]
        self.wanted: dict[int, tuple[bool, int]] = {}
        self.demotions = 0
        self._lock = threading.Lock()

    def switch_views(self) -> list[_Switch]:
        return list(self._switches)

    def want_role(self, dpid: int, master: bool, generation_id: int) -> None:
        with self._lock:
            self.wanted[dpid] = (master, generation_id)
        if master:
            t = time.perf_counter()
            for listener in self.role_listeners:
                listener(RoleEvent(dpid, "master", generation_id, t, t, None))

    def demote_all(self) -> None:
        with self._lock:
            self.demotions += 1
            self.wanted = {d: (False, g) for d, (_, g) in self.wanted.items()}

    def mastered(self) -> set[int]:
        with self._lock:
            return {d for d, (m, _) in self.wanted.items() if m}

    def roles(self) -> dict[int, RoleView]:
        with self._lock:
            return {d: RoleView(d, "master" if m else "slave", "master" if m else "slave", g,
                                m, None, None) for d, (m, g) in self.wanted.items()}


def run_member(endpoint: str, prefix: str, member_id: str, n_switches: int) -> None:
    from controller.cluster.etcd import EtcdClient
    from controller.cluster.member import ClusterMember

    service: Any = FakeService(n_switches)
    member = ClusterMember(EtcdClient([endpoint]), service, member_id=member_id,
                           prefix=prefix, api_url=f"http://{member_id}", openflow="tcp:x")
    member.join()
    print("joined", flush=True)
    while True:
        time.sleep(1.0)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    run_member(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
