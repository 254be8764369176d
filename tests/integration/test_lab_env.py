"""controller.lab.ovs on the real machine: binaries, starting OVS, datapath and netem detection."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from controller.errors import LabError
from controller.lab import ovs


def test_missing_binaries_are_named_with_their_package(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.setattr(ovs, "OVS_CTL_PATHS", (tmp_path / "ovs-ctl",))
    missing = ovs.missing_binaries()
    assert "ovs-vsctl (Debian package openvswitch-switch)" in missing
    assert "mnexec (Debian package mininet)" in missing
    assert "ping (Debian package iputils-ping)" in missing
    assert "ovs-ctl (Debian package openvswitch-switch)" in missing
    with pytest.raises(LabError, match="not installed: .*mnexec"):
        ovs.require_binaries()


def test_all_binaries_present_here(lab_env) -> None:
    assert ovs.missing_binaries() == []


def test_ensure_ovs_running_starts_stopped_ovs(lab_env) -> None:
    bridges = subprocess.run(["ovs-vsctl", "--timeout=5", "list-br"], capture_output=True,
                             text=True, check=True).stdout.split()
    if bridges:
        pytest.fail(f"OVS is in use (bridges {bridges}); this test stops OVS and will not "
                    "do that under someone else's bridges")
    ovs_ctl = next(str(p) for p in ovs.OVS_CTL_PATHS if p.is_file())
    subprocess.run([ovs_ctl, "stop"], capture_output=True, timeout=60, check=True)
    assert not ovs.ovs_running()
    assert ovs.ensure_ovs_running(timeout_s=30) is True
    assert ovs.ovs_running()
    assert ovs.ensure_ovs_running() is False  # already running: nothing to do


def test_datapath_choice_matches_the_kernel(lab_env) -> None:
    # independent evidence: the module is loaded, or modprobe could load it
    loadable = subprocess.run(["modprobe", "-n", "openvswitch"], capture_output=True).returncode
    has_module = Path("/sys/module/openvswitch").exists() or loadable == 0
    assert ovs.kernel_datapath_available() == has_module
    assert lab_env.datapath == ("kernel" if has_module else "user")
    listed = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    assert "cpn-dp-probe" not in listed, "the probe bridge must not linger"


def test_netem_detection_matches_a_netns_probe(lab_env) -> None:
    ns = f"cpn-netem-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        probe = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "lo",
                                "root", "netem", "delay", "1ms"], capture_output=True)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=True)
    assert ovs.netem_available() == (probe.returncode == 0)
    assert lab_env.netem == (probe.returncode == 0)
