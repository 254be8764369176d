"""Open vSwitch on the lab machine: root, binaries, daemons, datapath and netem detection,
and reading OVSDB.

The lab (``controller.lab.network``) calls :func:`require_root` and :func:`probe_environment`
before building a network. It
checks the binaries Mininet and OVS need, starts OVS with its own ``ovs-ctl`` script when the
daemons are not running, and finds out two facts about the kernel:

* whether OVS's kernel datapath exists (the ``openvswitch`` module). Where it does not, the lab
  runs every switch on the userspace datapath (``datapath_type=netdev``, Mininet's
  ``datapath='user'``);
* whether the kernel has the ``netem`` qdisc, which Mininet needs to give links a delay. Where it
  does not, link latency stays configured data (used by the controller) and is not applied.

Every external command runs with a timeout, and every wait is bounded. :func:`ovsdb_list`
reads a whole OVSDB table in one ``ovs-vsctl`` call (the lab's readiness polls use it for all
switches at once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import LabError

__all__ = [
    "LabEnvironment",
    "OVS_CTL_PATHS",
    "ensure_ovs_running",
    "kernel_datapath_available",
    "missing_binaries",
    "netem_available",
    "ovs_running",
    "ovsdb_list",
    "ovs_version",
    "probe_environment",
    "require_binaries",
    "require_root",
    "run_command",
    "set_ssl",
    "ssl_config",
    "del_ssl",
]

OVS_CTL_PATHS = (
    Path("/usr/share/openvswitch/scripts/ovs-ctl"),
    Path("/usr/local/share/openvswitch/scripts/ovs-ctl"),
)
"""Where Debian (and a source install) put ``ovs-ctl``, the script that starts both daemons."""

#: binary -> the Debian package that provides it (for the error message)
REQUIRED_BINARIES: dict[str, str] = {
    "ovs-vsctl": "openvswitch-switch",
    "ovs-ofctl": "openvswitch-switch",
    "ovs-appctl": "openvswitch-switch",
    "ovsdb-server": "openvswitch-switch",
    "ovs-vswitchd": "openvswitch-switch",
    "mnexec": "mininet",
    "ping": "iputils-ping",
    "ip": "iproute2",
    "tc": "iproute2",
    "unshare": "util-linux",
}

_PROBE_BRIDGE = "cpn-dp-probe"
_OVS_LOCAL_PORT = "65534"


@dataclass(frozen=True, slots=True)
class LabEnvironment:
    """What the lab found on this machine."""

    datapath: str
    """``"kernel"`` or ``"user"``: the Mininet ``OVSSwitch(datapath=...)`` value to use."""
    netem: bool
    """True when the kernel has the netem qdisc (link delays can be applied)."""
    ovs_version: str
    ovs_started: bool
    """True when this process started the OVS daemons."""


def run_command(args: list[str], timeout_s: float = 10.0, *, input_text: str | None = None
                ) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (with ``input_text`` on its standard input) with a timeout; a timeout or
    a missing binary raises :class:`LabError`."""
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s,
                              check=False, input=input_text)
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(args)!r} did not finish within {timeout_s:g} s") from None
    except FileNotFoundError:
        raise LabError(f"{args[0]!r} is not installed") from None


def _ovs_ctl() -> str | None:
    for path in OVS_CTL_PATHS:
        if path.is_file():
            return str(path)
    return shutil.which("ovs-ctl")


def missing_binaries() -> list[str]:
    """The binaries the lab needs that are not installed, as ``"name (package)"`` strings."""
    missing = [f"{name} (Debian package {pkg})" for name, pkg in REQUIRED_BINARIES.items()
               if shutil.which(name) is None]
    if _ovs_ctl() is None:
        missing.append("ovs-ctl (Debian package openvswitch-switch)")
    return missing


def require_binaries() -> None:
    """Raise :class:`LabError` naming every missing binary (and its package)."""
    missing = missing_binaries()
    if missing:
        raise LabError("the Mininet lab needs these programs, which are not installed: "
                       + ", ".join(missing))


def ovs_running(timeout_s: float = 2.0) -> bool:
    """True when ``ovs-vsctl show`` answers (ovsdb-server is up) and ovs-vswitchd answers."""
    t = max(1, round(timeout_s))
    try:
        db = run_command(["ovs-vsctl", f"--timeout={t}", "show"], timeout_s=timeout_s + 2)
        if db.returncode != 0:
            return False
        sw = run_command(["ovs-appctl", f"--timeout={t}", "version"], timeout_s=timeout_s + 2)
    except LabError:
        return False
    return sw.returncode == 0


def ensure_ovs_running(timeout_s: float = 30.0) -> bool:
    """Start OVS with ``ovs-ctl start`` unless it already runs; True if this call started it.

    Waits (bounded by ``timeout_s``) until ``ovs-vsctl show`` answers. Raises
    :class:`LabError` with ovs-ctl's output when OVS cannot be started.
    """
    if ovs_running():
        return False
    ovs_ctl = _ovs_ctl()
    if ovs_ctl is None:
        raise LabError("Open vSwitch is not running and ovs-ctl was not found "
                       "(install the Debian package openvswitch-switch)")
    # ovs-ctl warns that it cannot raise the open-files ulimit in a container: harmless.
    started = run_command([ovs_ctl, "start", "--system-id=random"], timeout_s=timeout_s)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ovs_running():
            return True
        time.sleep(0.2)
    raise LabError(
        f"Open vSwitch did not answer within {timeout_s:g} s after '{ovs_ctl} start' "
        f"(exit {started.returncode}): {(started.stdout + started.stderr).strip()[-800:]}")


def ovs_version() -> str:
    """The OVS version, e.g. ``"3.1.0"``."""
    out = run_command(["ovs-vsctl", "--version"]).stdout
    first = out.splitlines()[0] if out else ""
    return first.rsplit(" ", 1)[-1] if first else "unknown"


def kernel_datapath_available() -> bool:
    """True when OVS can create a bridge on the kernel datapath (``datapath_type=system``).

    A loaded ``openvswitch`` module settles it at once. Otherwise a throwaway bridge is created
    on the system datapath: without the module vswitchd fails to open the datapath and the
    bridge gets no local port (ovs-vsctl still exits 0, so its exit code proves nothing).
    """
    if Path("/sys/module/openvswitch").exists():
        return True
    run_command(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", _PROBE_BRIDGE])
    try:
        made = run_command(["ovs-vsctl", "--timeout=5", "add-br", _PROBE_BRIDGE, "--", "set",
                            "bridge", _PROBE_BRIDGE, "datapath_type=system"], timeout_s=10)
        if made.returncode != 0 or "Error detected" in made.stderr:
            return False
        ofport = run_command(["ovs-vsctl", "--timeout=5", "get", "Interface", _PROBE_BRIDGE,
                              "ofport"])
        return ofport.returncode == 0 and ofport.stdout.strip() == _OVS_LOCAL_PORT
    finally:
        run_command(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", _PROBE_BRIDGE])


def netem_available() -> bool:
    """True when the kernel has the netem qdisc.

    Tried on the loopback of a throwaway network namespace (``unshare --net``), so nothing on
    the host changes.
    """
    probe = run_command(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root",
                         "netem", "delay", "1ms"], timeout_s=10)
    return probe.returncode == 0


def probe_environment(start_ovs: bool = True) -> LabEnvironment:
    """Check binaries, start OVS if needed (``start_ovs``), detect datapath and netem."""
    require_binaries()
    started = ensure_ovs_running() if start_ovs else False
    if not started and not ovs_running():
        raise LabError("Open vSwitch is not running (start it with "
                       "'/usr/share/openvswitch/scripts/ovs-ctl start --system-id=random')")
    return LabEnvironment(
        datapath="kernel" if kernel_datapath_available() else "user",
        netem=netem_available(),
        ovs_version=ovs_version(),
        ovs_started=started,
    )


def require_root(euid: int | None = None) -> None:
    """Raise :class:`LabError` unless running as root (``euid`` injectable for tests)."""
    uid = os.geteuid() if euid is None else euid
    if uid != 0:
        raise LabError(f"the Mininet lab must run as root (effective uid is {uid}): Mininet "
                       "creates network namespaces and veth links, and OVS bridges; "
                       "run it with sudo")


def _ovsdb_value(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
        kind, body = v
        if kind == "set":
            return [_ovsdb_value(x) for x in body]
        if kind == "map":
            return {_ovsdb_value(k): _ovsdb_value(x) for k, x in body}
        if kind in ("uuid", "named-uuid"):
            return body
    return v


def ovsdb_list(table: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of an OVSDB table as dicts (sets -> lists, maps -> dicts, uuids -> str)."""
    res = run_command(["ovs-vsctl", "--timeout=5", "--format=json",
                       f"--columns={','.join(columns)}", "list", table], timeout_s=10)
    if res.returncode != 0:
        raise LabError(f"ovs-vsctl list {table} failed: {res.stderr.strip()}")
    doc = json.loads(res.stdout)
    return [{h: _ovsdb_value(v) for h, v in zip(doc["headings"], row, strict=True)}
            for row in doc["data"]]


def ssl_config() -> dict[str, Any] | None:
    """The SSL configuration of this machine's Open vSwitch (``private_key``,
    ``certificate``, ``ca_cert``, ``external_ids``), None when there is none."""
    rows = ovsdb_list("Open_vSwitch", ["ssl"])
    if not rows or not rows[0]["ssl"]:
        return None
    uuid = rows[0]["ssl"]
    for row in ovsdb_list("SSL", ["_uuid", "private_key", "certificate", "ca_cert",
                                  "external_ids"]):
        if row["_uuid"] == uuid:
            return row
    return None


def set_ssl(private_key: Path, certificate: Path, ca_cert: Path,
            external_ids: dict[str, str]) -> None:
    """What ``ovs-vsctl set-ssl KEY CERT CACERT`` does (every switch of this ``ovs-vswitchd``
    then uses these files for ``ssl:`` controllers), with ``external_ids`` on the record in
    the same transaction. Paths are made absolute (the daemon's working directory is not
    ours). :class:`LabError` when ``ovs-vsctl`` fails."""
    ids = ",".join(f'"{k}"="{v}"' for k, v in external_ids.items())
    args = ["ovs-vsctl", "--timeout=10", "--", "--id=@ssl", "create", "SSL",
            f'private_key="{private_key.resolve()}"', f'certificate="{certificate.resolve()}"',
            f'ca_cert="{ca_cert.resolve()}"', f"external_ids={{{ids}}}", "--", "set",
            "Open_vSwitch", ".", "ssl=@ssl"]
    res = run_command(args, timeout_s=20)
    if res.returncode != 0:
        raise LabError(f"ovs-vsctl could not set the SSL configuration: {res.stderr.strip()}")


def del_ssl() -> None:
    """``ovs-vsctl del-ssl``: no SSL configuration (``ssl:`` controllers cannot connect)."""
    res = run_command(["ovs-vsctl", "--timeout=10", "del-ssl"], timeout_s=20)
    if res.returncode != 0:
        raise LabError(f"ovs-vsctl del-ssl failed: {res.stderr.strip()}")
