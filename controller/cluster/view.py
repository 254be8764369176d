"""What the REST API, ``cpnctl`` and the web map read of the cluster: :class:`ClusterView`.

The API depends on this protocol only; :class:`~controller.cluster.member.ClusterMember`
implements it for a member of a cluster and :class:`Standalone` for a controller that runs
alone.

``status()`` is plain JSON data::

    {"mode": "cluster" | "standalone",
     "member_id": "m1" | None,              # this member
     "writable": bool,                       # False: writes answer 503 cluster_unavailable
     "stale": bool,                          # reads may lag the cluster (cut off from etcd)
     "applied_revision": int | None,         # etcd revision this member has applied
     "etcd": {"endpoints": [...], "healthy": bool,
              "status": [{"endpoint", "healthy", "leader", "revision", "error"}]} | None,
     "members": [{"id", "api_url", "openflow", "alive", "applied_revision", "masters",
                  "self"}],
     "switches": [{"dpid" (int), "name", "master" (member id or None), "standbys" [ids],
                   "generation_id" (int or None), "role_here" ("master"/"slave"/...)}]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from controller.network.service import ControllerService

__all__ = ["ClusterView", "Standalone"]


@runtime_checkable
class ClusterView(Protocol):
    @property
    def member_id(self) -> str | None:
        """This member's id (None: running alone)."""
        ...

    def status(self) -> dict[str, Any]:
        """The cluster as this member sees it (the module docstring gives the shape)."""
        ...

    def writable(self) -> bool:
        """Writes may be accepted now (False: cut off from etcd, or etcd without quorum)."""
        ...

    def stale(self) -> bool:
        """Reads come from a state that may lag the cluster's (cut off from etcd)."""
        ...

    def switch_masters(self) -> dict[int, str | None]:
        """dpid -> the member id mastering it (None: no master now)."""
        ...


class Standalone:
    """The cluster view of a controller running alone: one member, master of every switch,
    always writable."""

    @property
    def member_id(self) -> str | None:
        return None

    def __init__(self, service: ControllerService, *, api_url: str | None = None,
                 openflow: str | None = None) -> None:
        self._service = service
        self.api_url = api_url
        self.openflow = openflow

    def status(self) -> dict[str, Any]:
        switches: list[dict[str, Any]] = [
            {"dpid": v.dpid, "name": v.name, "master": "standalone" if v.connected else None,
             "standbys": [], "generation_id": None,
             "role_here": "equal" if v.connected else None}
            for v in self._service.switch_views()]
        return {"mode": "standalone", "member_id": None, "writable": True, "stale": False,
                "applied_revision": None, "etcd": None,
                "members": [{"id": "standalone", "api_url": self.api_url,
                             "openflow": self.openflow, "alive": True,
                             "applied_revision": None,
                             "masters": sum(1 for s in switches if s["master"]),
                             "self": True}],
                "switches": switches}

    def writable(self) -> bool:
        return True

    def stale(self) -> bool:
        return False

    def switch_masters(self) -> dict[int, str | None]:
        return {v.dpid: ("standalone" if v.connected else None)
                for v in self._service.switch_views()}
