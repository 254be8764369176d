"""``cpn-pce`` as a process: it starts, serves, stops on SIGTERM; bad input is refused with a
clear message and exit status 2."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from controller.pce.main import main, parse_address
from controller.topology.files import topology_file

REPO = Path(__file__).resolve().parents[2]


def cpn_pce(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``cpn-pce ARGS`` in this process (it refuses before it starts anything)."""
    code = main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize(("text", "want"), [
    ("127.0.0.1", ("127.0.0.1", 4189)), ("127.0.0.1:0", ("127.0.0.1", 0)),
    ("[::1]:4190", ("::1", 4190)), ("::1", ("::1", 4189)),
])
def test_addresses(text: str, want: tuple[str, int]) -> None:
    assert parse_address(text, 4189) == want


def test_bad_input_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad-sr.yaml"
    bad.write_text(topology_file("diamond-sr").read_text().replace(
        "node_sid_index: 3}", "node_sid_index: 9000}"))
    code, err = cpn_pce(capsys, "--topology", str(bad), "--api", "off")
    assert code == 2
    assert re.search(r"bad-sr\.yaml:\d+: nodes\[2\]\.node_sid_index: node SID index 9000 is "
                     r"outside the SRGB", err), err
    code, err = cpn_pce(capsys, "--topology", str(topology_file("diamond")), "--api", "off")
    assert code == 2 and "not a segment routing topology" in err
    sr = str(topology_file("diamond-sr"))
    code, err = cpn_pce(capsys, "--topology", sr, "--pcep", "no-such-host", "--api", "off")
    assert code == 2 and err.startswith("cpn-pce: ")
    code, err = cpn_pce(capsys, "--topology", sr, "--pcep", "127.0.0.1:70000", "--api", "off")
    assert code == 2 and "outside 0-65535" in err


def test_starts_serves_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "controller.pce.main", "--topology",
                                 str(topology_file("diamond-sr")), "--pcep", "127.0.0.1:0",
                                 "--api", "127.0.0.1:0"], cwd=REPO, stdout=out,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not (found := re.search(r"PCEP on 127\.0\.0\.1:(\d+), API on (http://\S+)",
                                      log.read_text())):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        health = httpx.get(f"{found.group(2)}/health", timeout=10).json()
        assert health == {"status": "ok", "pcep": f"127.0.0.1:{found.group(1)}"}
        assert httpx.get(f"{found.group(2)}/api/v1/pce/sessions", timeout=10).json() == []
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
