"""What a lab created, recorded so that it can always be removed, and the removal.

The lab marks its bridges and the SSL configuration it sets for ``ssl:`` controllers
(``external_ids:cpn-lab-owner=<pid>``, :data:`OWNER_KEY`), puts the switch ends of its veths
(and, on the userspace datapath, its bridges' tap devices) in a link group of its own (``ip
link ... group N``, :func:`choose_link_group`), and records what it created (bridges, the
switches' veth ends, the link group, host shell pids) in
``/run/cpn-lab/<pid>.json`` (:data:`STATE_DIR`). :meth:`controller.lab.network.LabNetwork.stop`
removes whatever of its record is left after ``net.stop()``; :func:`cleanup_stale` does the same
for labs whose process died. Unlike ``mn -c`` it never kills processes by name nor deletes
bridges it did not create, so other work on the machine is safe.

Why a link group: ``ip link del group N`` unregisters every device of the group in one kernel
batch, where one ``ip link del`` per veth (even in one ``ip -batch``) unregisters them one at a
time, each waiting for its own RCU grace periods: 2.8 s instead of 38 s for the Kdl lab's
1,653 veths. A group is deleted only while every device in it is one the record names (a
switch end of a veth or a bridge), so a group someone else also uses is never swept away (the
lab's devices in it are deleted by name instead).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import Any

from controller.errors import LabError
from controller.lab.ovs import del_ssl, ovsdb_list, run_command, ssl_config

__all__ = ["LINK_GROUP_BASE", "LINK_GROUP_STRIDE", "LINK_GROUP_TRIES", "OWNER_KEY",
           "STATE_DIR", "choose_link_group", "cleanup_stale", "delete_link_group",
           "delete_links", "ip_links", "link_groups_in_use", "live_labs", "process_start_time",
           "remove_recorded", "remove_ssl_of"]

STATE_DIR = Path("/run/cpn-lab")
OWNER_KEY = "cpn-lab-owner"
LINK_GROUP_BASE = 0x43500000
"""The lab of process ``pid`` takes link group ``LINK_GROUP_BASE + pid`` (or one
:data:`LINK_GROUP_STRIDE` further on while that is taken): far from the small numbers people
give groups by hand, and one per process, so two labs never share one."""
LINK_GROUP_STRIDE = 1 << 22
"""Above the largest pid Linux hands out (``pid_max`` is at most 2**22)."""
LINK_GROUP_TRIES = 8


def process_start_time(pid: int) -> str | None:
    """The start time (clock ticks since boot) of process ``pid``, None if there is none;
    with the pid it names one process even when pids are reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _alive(pid: int, start_time: str | None) -> bool:
    now = process_start_time(pid)
    return now is not None and (start_time is None or now == start_time)


def _kill_host_shell(pid: int) -> None:
    """SIGKILL a Mininet host shell we recorded, after checking it is one (pid reuse)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if b"mininet:" in cmdline:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def remove_recorded(record: dict[str, Any]) -> list[str]:
    """Remove what a lab record lists; return a description of what was removed."""
    removed: list[str] = []
    owner = str(record.get("pid"))
    for pid in record.get("host_pids", []):
        if Path(f"/proc/{pid}").exists():
            _kill_host_shell(int(pid))
            removed.append(f"host shell {pid}")
    interfaces = [str(name) for name in record.get("interfaces", [])]
    group = record.get("link_group")
    if isinstance(group, int):  # the veths and the bridges' taps
        removed.extend(f"link {name}" for name in delete_link_group(
            group, interfaces + [str(b) for b in record.get("bridges", [])]))
    bridges = {b["name"]: b for b in ovsdb_list("Bridge", ["name", "external_ids"])}
    doomed = [name for name in record.get("bridges", [])
              if name in bridges and bridges[name]["external_ids"].get(OWNER_KEY) == owner]
    if doomed:
        run_command(["ovs-vsctl", "--timeout=120"] + [
            arg for name in doomed for arg in ("--", "--if-exists", "del-br", name)],
            timeout_s=240)
        removed.extend(f"bridge {name}" for name in doomed)
    if record.get("ssl") and remove_ssl_of(owner):
        removed.append("ssl configuration")
    removed.extend(f"link {name}" for name in
                   delete_links(interfaces + [str(b) for b in record.get("bridges", [])]))
    return removed


def choose_link_group(pid: int, in_use: Collection[int]) -> int:
    """The link group for the lab of process ``pid``: the first of ``LINK_GROUP_BASE + pid
    + k * LINK_GROUP_STRIDE`` (k = 0, 1, ...) that no device is in (``in_use``).
    :class:`LabError` when all :data:`LINK_GROUP_TRIES` are taken."""
    if not 0 < pid < LINK_GROUP_STRIDE:
        raise LabError(f"pid {pid} is outside 1..{LINK_GROUP_STRIDE - 1}")
    candidates = [LINK_GROUP_BASE + pid + k * LINK_GROUP_STRIDE
                  for k in range(LINK_GROUP_TRIES)]
    for group in candidates:
        if group not in in_use:
            return group
    raise LabError(f"link groups {', '.join(map(str, candidates))} are all in use by other "
                   "devices; the lab takes none of them")


def link_groups_in_use() -> set[int]:
    """The link groups of this network namespace's devices (``ip -N -o link show``)."""
    res = run_command(["ip", "-N", "-o", "link", "show"], timeout_s=30)
    if res.returncode != 0:
        raise LabError(f"ip link show failed: {res.stderr.strip()}")
    groups = set()
    for line in res.stdout.splitlines():
        words = line.split()
        for i, word in enumerate(words[:-1]):
            if word == "group" and words[i + 1].isdigit():
                groups.add(int(words[i + 1]))
    return groups


def delete_link_group(group: int, ours: Iterable[str]) -> list[str]:
    """Delete the devices of link group ``group`` in one kernel batch (``ip link del group``)
    if every one of them is in ``ours``; return the names deleted (none when the group is
    empty or holds a device that is not ours: that group is left as it is)."""
    members = ip_links(group)
    if not members or not set(members) <= set(ours):
        return []
    res = run_command(["ip", "link", "del", "group", str(group)], timeout_s=120)
    if res.returncode != 0:
        return []
    left = set(ip_links(group))
    return [name for name in members if name not in left]


def delete_links(names: Iterable[str]) -> list[str]:
    """Delete those of the devices ``names`` that exist (one ``ip -force -batch``; deleting
    one end of a veth deletes its peer too); return the names that were there and are gone."""
    existing = set(ip_links())
    doomed = [name for name in dict.fromkeys(names) if name in existing]
    if not doomed:
        return []
    run_command(["ip", "-force", "-batch", "-"], timeout_s=240,
                input_text="".join(f"link del dev {name}\n" for name in doomed))
    left = set(ip_links())
    return [name for name in doomed if name not in left]


def remove_ssl_of(owner: str) -> bool:
    """Remove Open vSwitch's SSL configuration if the lab of process ``owner`` set it;
    True if it did."""
    current = ssl_config()
    if current is None or current["external_ids"].get(OWNER_KEY) != owner:
        return False
    del_ssl()
    return True


def ip_links(group: int | None = None) -> list[str]:
    """Names of the network interfaces of this namespace (those of link group ``group``)."""
    res = run_command(["ip", "-o", "link", "show"]
                      + ([] if group is None else ["group", str(group)]), timeout_s=30)
    names = []
    for line in res.stdout.splitlines():
        parts = line.split(": ", 2)
        if len(parts) >= 2:
            names.append(parts[1].split("@", 1)[0])
    return names


def cleanup_stale(state_dir: Path = STATE_DIR) -> list[str]:
    """Remove what labs whose process has died left behind; return what was removed.

    Reads the records in ``state_dir`` and also removes bridges marked with the owner key
    whose owner process is gone (a lab killed before it wrote its record).
    """
    removed: list[str] = []
    if state_dir.is_dir():
        for path in sorted(state_dir.glob("*.json")):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                path.unlink(missing_ok=True)
                continue
            if _alive(int(record.get("pid", 0)), record.get("start_time")):
                continue
            removed.extend(remove_recorded(record))
            path.unlink(missing_ok=True)
    orphans = []
    for b in ovsdb_list("Bridge", ["name", "external_ids"]):
        owner = b["external_ids"].get(OWNER_KEY)
        if owner is not None and owner.isdigit() and process_start_time(int(owner)) is None:
            orphans.append(b["name"])
    if orphans:
        run_command(["ovs-vsctl", "--timeout=10"] + [
            arg for name in orphans for arg in ("--", "--if-exists", "del-br", name)],
            timeout_s=20)
        removed.extend(f"bridge {name}" for name in orphans)
    ssl = ssl_config()
    owner = ssl["external_ids"].get(OWNER_KEY) if ssl is not None else None
    if owner is not None and owner.isdigit() and process_start_time(int(owner)) is None:
        del_ssl()
        removed.append("ssl configuration")
    return removed


def live_labs(state_dir: Path = STATE_DIR) -> list[int]:
    """Pids of the other processes running a lab now."""
    pids = []
    if state_dir.is_dir():
        for path in state_dir.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_text())
                pid = int(record.get("pid", 0))
                if pid != os.getpid() and _alive(pid, record.get("start_time")):
                    pids.append(pid)
    return pids
