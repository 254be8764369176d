"""Settings: defaults < config file < environment < flags, provenance, and errors that name
the file and line, the variable or the flag."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from waiting import wait_until

from controller.main import _parser, build_service
from controller.settings import FLAGS, Settings, SettingsError, load_settings
from controller.topology.files import topology_file

REPO = Path(__file__).resolve().parents[2]
TRIANGLE = topology_file("triangle")
EXAMPLE = REPO / "controller.example.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m controller.main ARGS`` (nothing in the environment but PATH and ``env``)."""
    return subprocess.run([sys.executable, "-m", "controller.main", *args], cwd=REPO,
                          env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True,
                          text=True, timeout=60)


def flags_of(*argv: str) -> dict[str, object]:
    """The settings the flags in ``argv`` set, as ``main`` hands them to load_settings."""
    return {k: v for k, v in vars(_parser().parse_args(argv)).items() if k in FLAGS}


# -- defaults and precedence -------------------------------------------------------------------

def test_defaults_are_the_documented_values_and_come_from_nowhere() -> None:
    s = load_settings(environ={})
    assert (s.openflow.host, s.openflow.port, s.openflow.barrier_timeout_s) == \
        ("127.0.0.1", 6653, 5.0)
    assert (s.network.fallback, s.network.startup_grace_s, s.network.lldp_interval_s,
            s.network.lldp_timeout_s, s.network.port_stats_interval_s,
            s.network.gc_reclaim_interval_s) == ("best_effort", 10.0, 2.0, 10.0, 2.0, 600.0)
    assert (s.api.host, s.api.port, s.api.token_file, s.api.intent_timeout_s) == \
        ("127.0.0.1", 8080, None, 10.0)
    assert (s.state.dir, s.state.snapshot_file, s.logging.level, s.logging.file) == \
        (None, None, "info", None)
    assert s.topology.file is None
    assert {s.source(p) for p in Settings.paths()} == {"default"}


@pytest.mark.parametrize("path, file_value, env_value, flag, flag_value, expected", [
    ("openflow.port", "7001", "7002", "--ofp-port", "7003", (7001, 7002, 7003)),
    ("network.fallback", "drop", "best_effort", "--fallback", "drop",
     ("drop", "best_effort", "drop")),
    ("network.startup_grace_s", "3", "4.5", "--startup-grace", "6",
     (3.0, 4.5, 6.0)),
    ("logging.level", "debug", "warning", "--log-level", "error",
     ("debug", "warning", "error")),
    ("api.host", "10.0.0.1", "10.0.0.2", "--api-host", "10.0.0.3",
     ("10.0.0.1", "10.0.0.2", "10.0.0.3")),
])
def test_file_beats_default_env_beats_file_flag_beats_env(
        tmp_path: Path, path: str, file_value: str, env_value: str, flag: str,
        flag_value: str, expected: tuple[object, object, object]) -> None:
    section, key = path.split(".")
    cfg = write(tmp_path / "c.yaml", f"# comment\n{section}:\n  {key}: {file_value}\n")
    var = Settings.env_var(path)

    from_file = load_settings(cfg, environ={})
    assert from_file.get(path) == expected[0]
    assert from_file.source(path) == f"{cfg}:3"

    from_env = load_settings(cfg, environ={var: env_value})
    assert from_env.get(path) == expected[1]
    assert from_env.source(path) == f"environment variable {var}"

    from_flag = load_settings(cfg, environ={var: env_value}, flags=flags_of(flag, flag_value))
    assert from_flag.get(path) == expected[2]
    assert from_flag.source(path) == f"flag {flag}"
    # the others stay where they were
    assert from_flag.source("openflow.barrier_timeout_s") == "default"


def test_every_existing_flag_keeps_its_name_and_meaning(tmp_path: Path) -> None:
    argv = ["--topology", "t.yaml", "--ofp-port", "7000", "--ofp-host", "0.0.0.0",
            "--fallback", "drop", "--startup-grace", "2.5", "--log-level", "debug",
            "--log-file", "c.log", "--api-host", "0.0.0.0", "--api-port", "9000",
            "--port-stats-interval", "0", "--state-dir", "st", "--api-token-file", "tok",
            "--state-file", "snap.json", "--cluster", "http://127.0.0.1:2379",
            "--member-id", "m1", "--api-tls-cert", "c.pem", "--api-tls-key", "k.pem",
            "--api-tokens-file", "tokens.yaml", "--ofp-tls-cert", "oc.pem", "--ofp-tls-key",
            "ok.pem", "--ofp-tls-ca", "ca.pem", "--etcd-ca", "eca.pem", "--etcd-cert",
            "ec.pem", "--etcd-key", "ek.pem", "--api-allow-plaintext", "--etcd-user", "m1",
            "--etcd-password-file", "pw", "--fast-reroute"]
    s = load_settings(environ={}, flags=flags_of(*argv))
    assert s.model_dump() == {
        "topology": {"file": "t.yaml"},
        "openflow": {"host": "0.0.0.0", "port": 7000, "barrier_timeout_s": 5.0,
                     "barrier_timeout_max_s": 60.0, "delete_delay_s": 0.0,
                     "echo_interval_s": 5.0, "echo_misses": 3,
                     "tls_cert": "oc.pem", "tls_key": "ok.pem", "tls_ca": "ca.pem"},
        "network": {"fallback": "drop", "fast_reroute": True, "startup_grace_s": 2.5,
                    "lldp_interval_s": 2.0,
                    "lldp_max_pps": 100.0, "lldp_timeout_s": 10.0, "lldp_auth": True,
                    "lldp_max_age_s": None, "lldp_clock_skew_s": 0.5,
                    "port_stats_interval_s": 0.0,
                    "gc_reclaim_interval_s": 600.0, "packet_in_pps": 1000,
                    "packet_in_control_pps": 2000, "max_hosts_per_port": 64,
                    "host_move_limit": 5, "host_move_window_s": 60.0, "learn_ban_s": 120.0,
                    "delay_source": "external", "measurement_max_age_s": 30.0,
                    "sla_interval_s": 1.0, "sla_samples": 3, "sla_ewma_alpha": 0.3,
                    "bandwidth_admission": "reserved"},
        "api": {"host": "0.0.0.0", "port": 9000, "token_file": "tok", "intent_timeout_s": 10.0,
                "tls_cert": "c.pem", "tls_key": "k.pem", "tokens_file": "tokens.yaml",
                "audit_retention": 10000, "write_rate_per_s": 100.0, "write_burst": 300,
                "allow_plaintext": True},
        "compute": {"metrics_interval_s": 5.0, "scrape_timeout_s": 2.0,
                    "stale_policy": "no_new_clients", "move_gain_ms": 2.0,
                    "move_gain_pct": 20.0, "move_hold_s": 10.0, "max_moves": 10,
                    "move_interval_s": 60.0, "rebalance_interval_s": 2.0, "move_idle_s": 4.0},
        "state": {"dir": "st", "snapshot_file": "snap.json"},
        "cluster": {"endpoints": "http://127.0.0.1:2379", "member_id": "m1", "prefix": "/cpn",
                    "lease_ttl_s": 1, "peer_host": "127.0.0.1", "etcd_timeout_s": 2.0,
                    "etcd_ca": "eca.pem", "etcd_cert": "ec.pem", "etcd_key": "ek.pem",
                    "etcd_user": "m1", "etcd_password_file": "pw"},
        "logging": {"level": "debug", "file": "c.log"},
    }
    assert sorted(FLAGS.values()) == sorted(a for a in argv if a.startswith("--"))


def test_relative_paths_in_a_file_are_taken_from_its_directory(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    cfg = write(sub / "c.yaml", "topology:\n  file: topo.yaml\nstate:\n  dir: /var/lib/cpn\n"
                                "logging:\n  file: logs/c.log\n")
    s = load_settings(cfg, environ={"CPN_STATE_SNAPSHOT_FILE": "snap.json"})
    assert s.topology.file == str(sub / "topo.yaml")
    assert s.logging.file == str(sub / "logs" / "c.log")
    assert s.state.dir == "/var/lib/cpn"
    assert s.state.snapshot_file == "snap.json"  # the environment's: as given


def test_a_zoo_map_in_a_file_is_a_name_not_a_path(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "topology:\n  file: zoo:Abilene\n")
    settings = load_settings(cfg, environ={})
    assert settings.topology.file == "zoo:Abilene"
    assert build_service(settings).topology.name == "abilene"


def test_environment_values_are_yaml_scalars_text_settings_taken_as_given() -> None:
    s = load_settings(environ={"CPN_OPENFLOW_PORT": "6700", "CPN_API_HOST": "0.0.0.0",
                               "CPN_NETWORK_PORT_STATS_INTERVAL_S": "0",
                               "CPN_STATE_DIR": "1234", "CPN_LOGGING_FILE": ""})
    assert s.openflow.port == 6700
    assert s.network.port_stats_interval_s == 0.0
    assert s.state.dir == "1234"  # a text setting: not the number 1234
    assert s.logging.file is None and s.source("logging.file") == "default"  # empty: unset


def test_other_cpn_variables_are_not_settings() -> None:
    s = load_settings(environ={"CPN_API_TOKEN": "secret", "CPN_URL": "http://x",
                               "CPN_TOKEN": "t"})
    assert {s.source(p) for p in Settings.paths()} == {"default"}
    assert "secret" not in s.to_yaml()


# -- errors ------------------------------------------------------------------------------------

def test_unknown_key_names_file_line_and_key_with_a_suggestion(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "openflow:\n  host: 0.0.0.0\n  prot: 6653\n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, environ={})
    assert str(err.value) == (f"{cfg}:3: openflow.prot: unknown key 'prot' (known: host, "
                              "port, barrier_timeout_s, barrier_timeout_max_s, "
                              "delete_delay_s, echo_interval_s, echo_misses, tls_cert, "
                              "tls_key, tls_ca); "
                              "did you mean 'port'?")
    assert (err.value.source, err.value.line, err.value.field) == (str(cfg), 3, "openflow.prot")


def test_unknown_section_and_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "openflw:\n  port: 1\napi: 8080\n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, environ={})
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{cfg}:1: openflw: unknown section 'openflw'")
    assert lines[0].endswith("did you mean 'openflow'?")
    assert lines[1].startswith(f"{cfg}:3: api: must be a mapping of keys")


@pytest.mark.parametrize("line, message", [
    ("port: abc", "openflow.port: Input should be a valid integer (got 'abc')"),
    ("port: '6653'", "openflow.port: Input should be a valid integer (got '6653')"),
    ("port: true", "openflow.port: Input should be a valid integer (got True)"),
    ("port: 65536", "openflow.port: Input should be less than or equal to 65535"),
    ("barrier_timeout_s: [5]", "openflow.barrier_timeout_s: Input should be a valid number"),
    ("barrier_timeout_s: .nan", "openflow.barrier_timeout_s: Input should be a finite number"),
    ("barrier_timeout_s: 0", "openflow.barrier_timeout_s: Input should be greater than 0"),
    ("host: 127", "openflow.host: Input should be a valid string (got 127)"),
])
def test_ill_typed_value_names_file_line_and_key(tmp_path: Path, line: str,
                                                 message: str) -> None:
    cfg = write(tmp_path / "c.yaml", f"topology:\n  file: t.yaml\nopenflow:\n  {line}\n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, environ={})
    assert str(err.value).startswith(f"{cfg}:4: {message}")
    assert err.value.line == 4


def test_fallback_must_be_one_of_its_choices(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "network:\n  fallback: flood\n")
    with pytest.raises(SettingsError, match=re.escape(
            f"{cfg}:2: network.fallback: Input should be 'best_effort' or 'drop'")):
        load_settings(cfg, environ={})


def test_probe_interval_must_be_below_the_timeout_naming_both_sources(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", "network:\n  lldp_interval_s: 12\n")
    with pytest.raises(SettingsError) as err:
        load_settings(cfg, environ={"CPN_NETWORK_LLDP_TIMEOUT_S": "11"})
    assert str(err.value) == (
        f"{cfg}:2, environment variable CPN_NETWORK_LLDP_TIMEOUT_S: network: lldp_interval_s "
        "(12) must be less than lldp_timeout_s (11), or every link times out between two "
        "probes")


def test_bad_environment_variable_is_named() -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"CPN_API_PORT": "eighty"})
    assert str(err.value) == ("environment variable CPN_API_PORT: api.port: Input should be "
                              "a valid integer (got 'eighty')")
    with pytest.raises(SettingsError) as err:
        load_settings(environ={"CPN_OPENFLOW_PROT": "1"})
    assert str(err.value) == ("environment variable CPN_OPENFLOW_PROT: names no setting; did "
                              "you mean CPN_OPENFLOW_PORT?")


def test_missing_and_empty_and_broken_files(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=re.escape(
            f"{tmp_path / 'none.yaml'}: config file not found")):
        load_settings(tmp_path / "none.yaml", environ={})
    with pytest.raises(SettingsError, match=re.escape(f"{tmp_path / 'e.yaml'}:1: the file is "
                                                      "empty")):
        load_settings(write(tmp_path / "e.yaml", "# nothing\n"), environ={})
    with pytest.raises(SettingsError, match=re.escape(f"{tmp_path / 'b.yaml'}:3: YAML syntax")):
        load_settings(write(tmp_path / "b.yaml", "api:\n  port: 1\n bad: [\n"), environ={})
    with pytest.raises(SettingsError, match=re.escape(
            f"{tmp_path / 'd.yaml'}:3: api.port: duplicate key 'port'")):
        load_settings(write(tmp_path / "d.yaml", "api:\n  port: 1\n  port: 2\n"), environ={})
    with pytest.raises(SettingsError, match=re.escape(
            f"{tmp_path / 'l.yaml'}:1: the top level must be a mapping")):
        load_settings(write(tmp_path / "l.yaml", "- api\n"), environ={})


# -- the command -------------------------------------------------------------------------------

def test_print_config_shows_each_value_and_its_source(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", f"topology:\n  file: {TRIANGLE}\napi:\n  port: 9001\n"
                                     "state:\n  dir: '/tmp/a dir #1'\n")
    done = cli("--config", str(cfg), "--print-config", "--ofp-port", "7000",
               env={"CPN_API_PORT": "9002", "CPN_NETWORK_FALLBACK": "drop"})
    assert done.returncode == 0, done.stderr
    assert re.search(r"port: 7000 +# flag --ofp-port$", done.stdout, re.M)
    assert re.search(r"port: 9002 +# environment variable CPN_API_PORT$", done.stdout, re.M)
    assert re.search(r"fallback: drop +# environment variable CPN_NETWORK_FALLBACK$",
                     done.stdout, re.M)
    assert re.search(rf"dir: \"/tmp/a dir #1\" +# {re.escape(str(cfg))}:6$", done.stdout, re.M)
    assert re.search(r"startup_grace_s: 10.0 +# default$", done.stdout, re.M)
    assert re.search(rf"file: {re.escape(str(TRIANGLE))} +# {re.escape(str(cfg))}:2$",
                     done.stdout, re.M)
    # the printout is itself a config file giving the same settings
    again = load_settings(write(tmp_path / "printed.yaml", done.stdout), environ={})
    first = load_settings(cfg, environ={"CPN_API_PORT": "9002", "CPN_NETWORK_FALLBACK": "drop"},
                          flags=flags_of("--ofp-port", "7000"))
    assert again.model_dump() == first.model_dump()


def test_print_config_needs_no_topology_and_the_command_exits_2_on_bad_settings(
        tmp_path: Path) -> None:
    done = cli("--print-config")
    assert done.returncode == 0 and "  file: null" in done.stdout
    cfg = write(tmp_path / "c.yaml", f"topology:\n  file: {TRIANGLE}\nopenflow:\n  prot: 1\n")
    done = cli("--config", str(cfg))
    assert done.returncode == 2
    assert done.stderr == (f"cpn-controller: error: {cfg}:4: openflow.prot: unknown key 'prot' "
                           "(known: host, port, barrier_timeout_s, barrier_timeout_max_s, "
                           "delete_delay_s, echo_interval_s, echo_misses, tls_cert, tls_key, "
                           "tls_ca); "
                           "did you mean 'port'?\n")
    done = cli("--topology", str(TRIANGLE), env={"CPN_OPENFLOW_PORT": "x"})
    assert (done.returncode, done.stderr) == (2, "cpn-controller: error: environment variable "
                                              "CPN_OPENFLOW_PORT: openflow.port: Input should "
                                              "be a valid integer (got 'x')\n")
    done = cli("--config", str(tmp_path / "missing.yaml"), "--print-config")
    assert (done.returncode, done.stderr) == (
        2, f"cpn-controller: error: {tmp_path / 'missing.yaml'}: config file not found\n")
    done = cli()
    assert (done.returncode, done.stderr) == (  # no topology anywhere: nothing started
        2, "cpn-controller: error: no topology file: give --topology FILE, topology.file in "
           "the --config file, or CPN_TOPOLOGY_FILE\n")


def test_the_service_is_built_with_the_settings(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.yaml", f"topology:\n  file: {TRIANGLE}\nnetwork:\n"
                                     "  startup_grace_s: 3\n  lldp_interval_s: 1.5\n"
                                     "  port_stats_interval_s: 0\n  gc_reclaim_interval_s: 0\n"
                                     "state:\n  snapshot_file: snap.json\n")
    service = build_service(load_settings(cfg, environ={}))
    assert service.topology.name == "triangle"
    assert (service.lldp_interval_s, service.port_stats_interval_s,
            service.gc_reclaim_interval_s) == (1.5, 0.0, 0.0)
    assert service.state_file == str(tmp_path / "snap.json")
    assert service.core.state.startup_grace_s == 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_config_file_alone_is_enough_to_start(tmp_path: Path) -> None:
    ofp_port, api_port = _free_port(), _free_port()
    cfg = write(tmp_path / "c.yaml", f"topology:\n  file: {TRIANGLE}\nopenflow:\n"
                                     f"  port: {ofp_port}\napi:\n  port: {api_port}\n"
                                     "state:\n  dir: state\nlogging:\n  file: c.log\n"
                                     "  level: debug\n")
    proc = subprocess.Popen([sys.executable, "-m", "controller.main", "--config", str(cfg)],
                            cwd=REPO, env={"PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def topology() -> dict:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            return httpx.get(f"http://127.0.0.1:{api_port}/api/v1/topology", timeout=1).json()

        nodes = wait_until(topology, 30, "the REST API answering", ignore=(httpx.HTTPError,),
                           detail=lambda: (tmp_path / "c.log").read_text())
        # OpenFlow listens too; a connection stays open (as a switch's would) while it stops
        def connected() -> socket.socket | None:
            sock = socket.socket()
            if sock.connect_ex(("127.0.0.1", ofp_port)) == 0:
                return sock
            sock.close()
            return None

        peer = wait_until(connected, 30, "the OpenFlow port accepting",
                          detail=lambda: (tmp_path / "c.log").read_text())
        proc.terminate()
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM  # SIGTERM ends it, connected or not
        peer.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert nodes["name"] == "triangle"
    log = (tmp_path / "c.log").read_text()
    assert f"listening on 127.0.0.1:{ofp_port}" in log
    assert " DEBUG " in log  # logging.level from the file
    assert (tmp_path / "state" / "api-token").exists()  # state.dir from the file's directory


# -- the example file and the docs -------------------------------------------------------------

def test_the_example_config_loads_names_every_setting_with_its_default() -> None:
    s = load_settings(EXAMPLE, environ={})
    assert s.topology.file == str(EXAMPLE.parent / "topologies" / "national.yaml")
    assert Path(s.topology.file).exists()
    for path in Settings.paths():
        assert s.source(path).startswith(f"{EXAMPLE}:"), f"{path} missing from the example"
        if path != "topology.file":
            assert s.get(path) == Settings.default(path), path


def test_the_docs_list_every_setting_with_its_variable_and_flag() -> None:
    docs = (REPO / "docs" / "controller.md").read_text()
    section = docs[docs.index("## Configuration"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    for path in Settings.paths():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{path}`")),
                   None)
        assert row is not None, f"{path} has no row in docs/controller.md's Configuration"
        assert f"`{Settings.env_var(path)}`" in row
        if path in FLAGS:
            assert f"`{FLAGS[path]}`" in row


def test_a_cluster_member_needs_a_usable_member_id() -> None:
    with pytest.raises(SettingsError, match="needs member_id"):
        load_settings(environ={}, flags={"cluster.endpoints": "http://127.0.0.1:2379"})
    with pytest.raises(SettingsError, match="letters, digits"):
        load_settings(environ={}, flags={"cluster.endpoints": "http://127.0.0.1:2379",
                                         "cluster.member_id": "a/b"})
    s = load_settings(environ={"CPN_CLUSTER_ENDPOINTS": "http://a:1,http://b:2",
                               "CPN_CLUSTER_MEMBER_ID": "m-2"})
    assert (s.cluster.endpoints, s.cluster.member_id) == ("http://a:1,http://b:2", "m-2")
