"""The ``cpn-lab`` command: refusal when not root, and ``check`` on looped files (RSTP)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from controller.errors import LabError
from controller.lab.cli import main
from controller.lab.ovs import require_root
from controller.topology.files import topology_file


def test_require_root_refuses_other_euids() -> None:
    with pytest.raises(LabError, match=r"must run as root \(effective uid is 1000\)"):
        require_root(euid=1000)
    require_root(euid=0)  # root passes


def test_cli_refuses_when_not_root(monkeypatch, capsys) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["check", str(topology_file("triangle"))]) == 2
    err = capsys.readouterr().err
    assert "cpn-lab: error:" in err and "must run as root" in err


def test_cli_reports_a_bad_file_without_building(lab_env, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nnodes:\n  - {name: a}\nlinks:\n  - {a: a, b: nowhere}\n")
    assert main(["check", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "nowhere" in err


@pytest.mark.parametrize("name, pairs", [("triangle", 6), ("diamond", 2)])
def test_check_on_looped_file_uses_rstp_and_passes(lab_env, capsys, caplog, name: str,
                                                   pairs: int) -> None:
    with caplog.at_level(logging.INFO, logger="controller.lab"):
        assert main(["check", str(topology_file(name))]) == 0
    assert "with RSTP (the topology has a loop)" in caplog.text
    out = capsys.readouterr().out
    assert f"all {pairs} ordered pairs" in out
    assert f"OK: {pairs} pairs, {pairs} echo requests, 0% loss" in out
    assert "network up in" in out
