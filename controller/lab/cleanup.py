"""What a lab created, recorded so that it can always be removed, and the removal.

The lab marks its bridges and the SSL configuration it sets for ``ssl:`` controllers
(``external_ids:cpn-lab-owner=<pid>``, :data:`OWNER_KEY`) and records
what it created (bridges, inter-switch veths, host shell pids) in ``/run/cpn-lab/<pid>.json``
(:data:`STATE_DIR`). :meth:`controller.lab.network.LabNetwork.stop` removes whatever of its
record is left after ``net.stop()``; :func:`cleanup_stale` does the same for labs whose process
died. Unlike ``mn -c`` it never kills processes by name nor deletes bridges it did not create,
so other work on the machine is safe.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path
from typing import Any

from controller.lab.ovs import del_ssl, ovsdb_list, run_command, ssl_config

__all__ = ["OWNER_KEY", "STATE_DIR", "cleanup_stale", "ip_links", "live_labs",
           "process_start_time", "remove_recorded", "remove_ssl_of"]

STATE_DIR = Path("/run/cpn-lab")
OWNER_KEY = "cpn-lab-owner"


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
    bridges = {b["name"]: b for b in ovsdb_list("Bridge", ["name", "external_ids"])}
    doomed = [name for name in record.get("bridges", [])
              if name in bridges and bridges[name]["external_ids"].get(OWNER_KEY) == owner]
    if doomed:
        run_command(["ovs-vsctl", "--timeout=10"] + [
            arg for name in doomed for arg in ("--", "--if-exists", "del-br", name)],
            timeout_s=20)
        removed.extend(f"bridge {name}" for name in doomed)
    if record.get("ssl") and remove_ssl_of(owner):
        removed.append("ssl configuration")
    # Deleting one end of a veth deletes its peer, so check the list again each time.
    existing = set(ip_links())
    for name in record.get("interfaces", []) + record.get("bridges", []):
        if name in existing and run_command(["ip", "link", "del", name]).returncode == 0:
            removed.append(f"link {name}")
            existing = set(ip_links())
    return removed


def remove_ssl_of(owner: str) -> bool:
    """Remove Open vSwitch's SSL configuration if the lab of process ``owner`` set it;
    True if it did."""
    current = ssl_config()
    if current is None or current["external_ids"].get(OWNER_KEY) != owner:
        return False
    del_ssl()
    return True


def ip_links() -> list[str]:
    """Names of the machine's network interfaces."""
    res = run_command(["ip", "-o", "link", "show"])
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
