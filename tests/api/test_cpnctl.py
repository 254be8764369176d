"""cpnctl against the live server, as a subprocess (exit codes are its contract)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from .conftest import ROOT, Api


def cpnctl(api_url: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CPN_URL", "CPN_TOKEN")}
    env["CPN_URL"] = api_url
    env["XDG_DATA_HOME"] = "/nonexistent-cpnctl-test"  # no default token file
    if token is not None:
        env["CPN_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "controller.api.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_intents_add_list_show_delete(diamond: Api) -> None:
    r = cpnctl(diamond.url, "--json", "intents", "add", "h1", "h2", "--max-latency-ms", "4",
               "--name", "gold", "--priority", "250", token=diamond.token)
    assert r.returncode == 0, r.stderr
    added = json.loads(r.stdout)
    assert added["name"] == "gold" and added["path"] == ["s1", "s2", "s4"]
    table = cpnctl(diamond.url, "intents", "list")
    assert table.returncode == 0 and "gold" in table.stdout and "s1 → s2 → s4" in table.stdout
    listed = json.loads(cpnctl(diamond.url, "--json", "intents", "list").stdout)
    assert [i["id"] for i in listed] == [1, 2, added["id"]]
    show = cpnctl(diamond.url, "intents", "show", str(added["id"]))
    assert show.returncode == 0 and "gold" in show.stdout and "pending" in show.stdout
    no_token = cpnctl(diamond.url, "intents", "delete", str(added["id"]))
    assert no_token.returncode == 1 and "401" in no_token.stderr
    gone = cpnctl(diamond.url, "intents", "delete", str(added["id"]), token=diamond.token)
    assert gone.returncode == 0 and "deleted" in gone.stdout
    assert [i.id for i in diamond.service.intents()] == [1, 2]


def test_reads_as_tables_and_json(diamond: Api) -> None:
    for args, needle in ((("topology",), "s3"), (("switches",), "0x4"), (("hosts",), "h2"),
                         (("links",), "s2"), (("health",), "diamond"),
                         (("paths", "h1", "h2", "-k", "2"), "s1 → s3 → s4"),
                         (("circles", "--center", "s1"), "s2"), (("routes",), "synced"),
                         (("events",), "events"), (("flows", "s1"), "intent:1"),
                         (("ports", "s4"), "h2")):
        r = cpnctl(diamond.url, *args)
        assert r.returncode == 0 and needle in r.stdout, (args, r.stdout, r.stderr)
    for args in (("topology",), ("paths", "h1", "h2", "-k", "2"), ("routes",)):
        j = cpnctl(diamond.url, "--json", *args)
        assert j.returncode == 0
        assert isinstance(json.loads(j.stdout), dict)


def test_exit_codes(diamond: Api) -> None:
    r = cpnctl(diamond.url, "paths", "h1", "h2", "--max-latency-ms", "1")
    assert r.returncode == 1 and "409 infeasible" in r.stderr and "2.00 ms" in r.stderr
    r = cpnctl(diamond.url, "intents", "show", "77")
    assert r.returncode == 1 and "404" in r.stderr
    assert cpnctl(diamond.url, "intents").returncode == 2
    assert cpnctl(diamond.url, "frobnicate").returncode == 2
    assert cpnctl(diamond.url, "intents", "show", "x").returncode == 2
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    r = cpnctl(dead, "intents", "list")
    assert r.returncode == 3 and dead in r.stderr and "cannot reach" in r.stderr
