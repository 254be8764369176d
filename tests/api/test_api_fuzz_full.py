"""The full schemathesis run against a real controller (uvicorn on loopback, real SQLite, the
token): every check, the coverage, fuzzing and stateful phases, as the ``schemathesis`` command
runs them. It passes clean: no server error, every 405 names its methods in ``Allow``, no
schema-valid request refused for a constraint the document does not state, and the document's
links lead from each created resource to the operations on it.

Bounded: a fixed seed, at most ``MAX_EXAMPLES`` per operation, one worker, a timeout on the
process. ``tests/api/schemathesis.toml`` allows one documented 5xx: the live
reads of a switch answer 503 while the switch is not connected (this controller has none).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx

from .conftest import TOKEN, Api

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 40
TIMEOUT_S = 110
"""the run takes about 40 s on the CI machine; --max-time would make fuzzing repeat until the
budget is spent, so the bound is the process's timeout"""
SEED = 3


def _schemathesis() -> list[str]:
    return [str(Path(sys.executable).with_name("schemathesis"))]


def test_openapi_document_links_created_resources_to_their_operations(diamond: Api) -> None:
    doc = httpx.get(f"{diamond.url}/openapi.json", timeout=10).json()
    paths = doc["paths"]
    ids = {op["operationId"]: (p, m) for p, ops in paths.items() for m, op in ops.items()}

    def targets(path: str, status: str) -> set[tuple[str, str]]:
        links = paths[path]["post"]["responses"][status]["links"]
        for link in links.values():
            target_path, _ = ids[link["operationId"]]
            # every parameter of the target's path is given by the link
            assert set(re.findall(r"{(\w+)}", target_path)) == set(link["parameters"]), link
        return {ids[link["operationId"]] for link in links.values()}

    v1 = "/api/v1"
    assert targets(f"{v1}/placements", "201") == {
        (f"{v1}/placements/{{placement_id}}", "get"),
        (f"{v1}/placements/{{placement_id}}", "delete")}
    assert (f"{v1}/services/{{name}}", "get") in targets(f"{v1}/services", "201")
    assert (f"{v1}/compute-sites/{{site_id}}", "patch") in targets(f"{v1}/compute-sites", "201")
    assert (f"{v1}/intents/{{intent_id}}", "delete") in targets(f"{v1}/intents", "201")


def test_405_names_the_methods_of_the_path(diamond: Api) -> None:
    for method, path, allow in (("TRACE", "/intents", "GET, POST"),
                                ("GET", "/intents/batch", "POST"),
                                ("PUT", "/intents/1", "DELETE, GET"),
                                ("POST", "/health", "GET")):
        r = httpx.request(method, f"{diamond.url}/api/v1{path}", timeout=10,
                          headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 405, (method, path, r.text)
        assert r.headers["allow"] == allow, (method, path)
        assert r.json()["error"] == "method_not_allowed"


def test_full_schemathesis_run_is_clean(diamond: Api, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    cmd = [*_schemathesis(), "--config-file", str(CONFIG), "run",
           f"{diamond.url}/openapi.json", "--checks", "all",
           "--phases", "examples,coverage,fuzzing,stateful", "--workers", "1",
           "--seed", str(SEED), "--max-examples", str(MAX_EXAMPLES),
           "--request-timeout", "10",
           "--header", f"Authorization: Bearer {TOKEN}",
           "--report", "json", "--report-json-path", str(report)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S,
                         cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-6000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", out)
    assert summary is not None, out[-3000:]
    generated, passed = int(summary[1]), int(summary[2])
    print(f"schemathesis: {generated} cases generated, {passed} passed")
    assert generated >= 1000 and passed == generated, out[-3000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert re.search(rf"✅\s+{phase}", out), (phase, out[-3000:])
    assert json.loads(report.read_text()), "the JSON report is written"
