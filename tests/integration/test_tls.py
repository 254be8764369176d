"""OpenFlow over TLS on real Open vSwitch: ``cpn-controller --ofp-tls-*`` and ``cpn-lab``'s
``--tls-dir`` (``ovs-vsctl set-ssl``) with the certificates of ``cpn-lab pki``.

* The national backbone runs over TLS end to end: every switch connects with an ``ssl:``
  target, is programmed (reconciled), and pings along the file's intents are answered.
* Switches whose certificate another CA signed (they trust the controller's CA, as an
  attacker who knows the public CA certificate would) are refused: each refusal is an
  ``ofp_tls_refused`` event and counted in ``cpn_ofp_tls_refused_total``, and no switch ever
  connects. A plain-TCP OpenFlow hello to the TLS listener is refused too. The controller
  keeps serving: once the switches get certificates the CA signed they connect, are
  programmed and forward.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import NATIONAL, ControllerProcess, start_lab
from waiting import wait_until

from controller.lab.build import ControllerAddress
from controller.lab.cleanup import OWNER_KEY
from controller.lab.ovs import ovsdb_list, set_ssl, ssl_config
from controller.lab.pki import PkiFiles, issue, make_pki, new_ca, pki_files
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

HELLO = bytes([4, 0, 0, 8, 0, 0, 0, 1])  # OpenFlow 1.3 OFPT_HELLO
INTENT_PINGS = 8
"""At most this many of the national file's intents (it has 7) are pinged along, both ways."""


class TlsController(ControllerProcess):
    """The controller with OpenFlow over TLS (the certificates of ``pki``)."""

    def __init__(self, topology: Path, workdir: Path, pki: PkiFiles) -> None:
        super().__init__(topology, workdir)
        self.pki = pki

    @property
    def address(self) -> ControllerAddress:
        return ControllerAddress("127.0.0.1", self.port, "ssl")

    def command(self) -> list[str]:
        return super().command() + [
            "--ofp-tls-cert", str(self.pki.controller_cert),
            "--ofp-tls-key", str(self.pki.controller_key),
            "--ofp-tls-ca", str(self.pki.ca_cert)]

    readiness = "listening for OpenFlow over TLS"

    def ready(self) -> bool:
        # a probe connection would itself be a refused handshake: look at the socket table
        out = subprocess.run(["ss", "-ltnH", f"sport = :{self.port}"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
        return f":{self.port} " in out

    def get(self, path: str) -> Any:
        r = httpx.get(f"http://127.0.0.1:{self.api_port}{path}", timeout=10.0)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("content-type", "") else r.text

    def refusals(self) -> list[dict[str, Any]]:
        return [e for e in self.get("/api/v1/events?limit=1000")
                if e["kind"] == "ofp_tls_refused"]

    def refused_total(self, reason: str) -> float:
        m = re.search(rf'^cpn_ofp_tls_refused_total{{reason="{reason}"}} (\S+)$',
                      self.get("/metrics"), re.M)
        return float(m.group(1)) if m else 0.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    return make_pki(tmp_path_factory.mktemp("pki")).files


def _controllers_over_ssl(port: int) -> list[dict[str, Any]]:
    return [c for c in ovsdb_list("Controller", ["target", "is_connected"])
            if c["target"] == f"ssl:127.0.0.1:{port}"]


def test_the_national_backbone_runs_over_tls_end_to_end(lab_env: object, pki: PkiFiles,
                                                       tmp_path: Path) -> None:
    topo = load_topology(NATIONAL)
    ctl = TlsController(NATIONAL, tmp_path, pki)
    ctl.start()
    try:
        lab, took_s = start_lab(lab_env, topo, ctl, timeout_s=180, tls=pki)
        try:
            ssl = ssl_config()
            assert ssl is not None and ssl["private_key"] == str(pki.switch_key.resolve())
            ctl.wait_synced(len(topo.nodes), 60, "every national switch over TLS")
            over_ssl = _controllers_over_ssl(ctl.port)
            assert len(over_ssl) == len(topo.nodes)
            assert all(c["is_connected"] for c in over_ssl)
            accepted = ctl.log_text().count("event=ofp_tls_accepted")
            assert accepted >= len(topo.nodes), accepted
            assert all(s["connected"] for s in ctl.get("/api/v1/switches"))
            # traffic along intents, both ways
            pairs = [(i.src, i.dst) for i in topo.intents][:INTENT_PINGS]
            pairs += [(b, a) for a, b in pairs]
            for name in [i.name for i in topo.intents][:INTENT_PINGS]:
                ctl.wait_intent(name, lambda i: i["state"] == "installed", timeout_s=30)
            lab.wait_until_reachable(*pairs[0], timeout_s=20)
            matrix = lab.ping_matrix(pairs, count=2, wait_s=2)
            assert matrix.failed == [], matrix.summary_table(lab.plan)
            assert ctl.refusals() == []
            print(f"\nnational over TLS: lab up in {took_s:.1f} s, {accepted} TLS sessions, "
                  f"{len(pairs)} intent pairs pinged")
        finally:
            lab.stop()
        assert ssl_config() is None  # the lab's stop removed its SSL configuration
    finally:
        print(f"--- controller log (tail) ---\n{ctl.log_tail(40)}")
        ctl.stop()


def _rogue_switch_files(pki: PkiFiles, where: Path) -> PkiFiles:
    """Switch key and certificate from a CA of their own, with the real CA's certificate
    (the switches trust the controller; the controller must not trust them)."""
    rogue = pki_files(where)
    where.mkdir(mode=0o700)
    cert_pem, key_pem = issue("cpn-switch", *new_ca("Rogue CA"), client=True)
    rogue.switch_cert.write_bytes(cert_pem)
    rogue.switch_key.write_bytes(key_pem)
    os.chmod(rogue.switch_key, 0o600)
    shutil.copy(pki.ca_cert, rogue.ca_cert)
    return rogue


def test_a_switch_from_another_ca_and_plain_tcp_are_refused_and_the_controller_keeps_serving(
        lab_env: object, pki: PkiFiles, tmp_path: Path) -> None:
    path = topology_file("triangle")
    topo = load_topology(path)
    ctl = TlsController(path, tmp_path / "ctl", pki)
    (tmp_path / "ctl").mkdir()
    ctl.start()
    try:
        rogue = _rogue_switch_files(pki, tmp_path / "rogue")
        lab, _ = start_lab(lab_env, topo, ctl, timeout_s=60, tls=rogue, connected=False)
        try:
            # every switch is refused (counted each time); the event and the log line come
            # once per peer address and reason per 10 s, and every lab switch is 127.0.0.1
            wait_until(lambda: ctl.refused_total("untrusted_certificate") >= len(topo.nodes),
                       20.0, "every rogue switch refused", detail=lambda: str(ctl.refusals()))
            event = ctl.refusals()[0]
            assert (event["reason"], event["peer"].split(":")[0]) == (
                "untrusted_certificate", "127.0.0.1")
            assert event["detail"] == "certificate: unable to get local issuer certificate"
            assert "event=ofp_tls_refused" in ctl.log_text()
            switches = ctl.get("/api/v1/switches")
            assert [(s["connected"], s["ports"]) for s in switches] == \
                [(False, None)] * len(topo.nodes)
            assert ctl.get("/api/v1/health")["switches_connected"] == 0

            # plain TCP: an OpenFlow hello gets no OpenFlow answer
            with socket.create_connection(("127.0.0.1", ctl.port), timeout=5) as plain:
                plain.sendall(HELLO)
                try:
                    answer = plain.recv(64)
                except ConnectionResetError:
                    answer = b""
            assert not answer.startswith(b"\x04"), answer
            wait_until(lambda: any(e["reason"] == "not_tls" for e in ctl.refusals()), 5.0,
                       "the plain-TCP hello refused", detail=lambda: str(ctl.refusals()))
            assert ctl.refused_total("not_tls") == 1.0

            # the controller keeps serving: certificates the CA signed are accepted
            set_ssl(pki.switch_key, pki.switch_cert, pki.ca_cert,
                    {OWNER_KEY: str(os.getpid())})
            ctl.wait_synced(len(topo.nodes), 30, "every triangle switch once its "
                                                 "certificate is the CA's")
            hosts = [h.name for h in topo.hosts]
            lab.wait_until_reachable(hosts[0], hosts[-1], timeout_s=20)
            assert all(s["connected"] for s in ctl.get("/api/v1/switches"))
        finally:
            lab.stop()
        assert ssl_config() is None
    finally:
        print(f"--- controller log (tail) ---\n{ctl.log_tail(40)}")
        ctl.stop()
