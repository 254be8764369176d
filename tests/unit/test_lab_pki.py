"""``cpn-lab pki DIR``: what it makes (files, modes, extensions, the chain), idempotence,
``--force``, refusals that change nothing, and the lab's TLS arguments (no root needed)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from controller.errors import LabError
from controller.lab.cli import main as cpn_lab
from controller.lab.pki import make_pki, new_ca, pki_files

KEYS = ("ca-key.pem", "controller-key.pem", "switch-key.pem")
CERTS = ("ca-cert.pem", "controller-cert.pem", "switch-cert.pem")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _snapshot(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.iterdir())}


def test_it_makes_a_ca_and_certificates_for_each_side(tmp_path: Path) -> None:
    d = tmp_path / "pki"
    result = make_pki(d)
    files = result.files
    assert sorted(p.name for p in result.made) == sorted(KEYS + CERTS) and result.kept == []
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    for name in KEYS:
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o600, name
    for name in CERTS:
        assert stat.S_IMODE((d / name).stat().st_mode) == 0o644, name
    ca, ctl, sw = (_cert(p) for p in (files.ca_cert, files.controller_cert, files.switch_cert))
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for leaf, usage in ((ctl, ExtendedKeyUsageOID.SERVER_AUTH),
                        (sw, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert _signed_by(leaf, ca)
        assert not _signed_by(leaf, new_ca("Another CA")[0])
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert list(leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
            usage]
        days = (leaf.not_valid_after_utc - leaf.not_valid_before_utc).days
        assert days == 365
    names = ctl.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]


def test_a_second_run_keeps_everything_and_fills_in_what_is_missing(tmp_path: Path) -> None:
    files = make_pki(tmp_path).files
    before = _snapshot(tmp_path)
    again = make_pki(tmp_path)
    assert again.made == [] and len(again.kept) == 6
    assert _snapshot(tmp_path) == before
    files.switch_cert.unlink()
    files.switch_key.unlink()
    refill = make_pki(tmp_path)
    assert refill.made == [files.switch_cert, files.switch_key]
    after = _snapshot(tmp_path)
    assert after["switch-cert.pem"] != before["switch-cert.pem"]
    assert {k: v for k, v in after.items() if not k.startswith("switch")} == \
        {k: v for k, v in before.items() if not k.startswith("switch")}
    assert _signed_by(_cert(files.switch_cert), _cert(files.ca_cert))


def test_force_makes_all_anew(tmp_path: Path) -> None:
    make_pki(tmp_path)
    before = _snapshot(tmp_path)
    result = make_pki(tmp_path, force=True)
    assert len(result.made) == 6
    after = _snapshot(tmp_path)
    assert all(after[name] != before[name] for name in before)


@pytest.mark.parametrize(("remove", "message"), [
    (("switch-key.pem",), "switch-cert.pem exists but switch-key.pem does not"),
    (("ca-cert.pem", "ca-key.pem"), "end certificates exist but not the CA that signed them"),
])
def test_a_broken_directory_is_refused_and_left_as_it_was(
        tmp_path: Path, remove: tuple[str, ...], message: str) -> None:
    make_pki(tmp_path)
    for name in remove:
        (tmp_path / name).unlink()
    before = _snapshot(tmp_path)
    with pytest.raises(LabError, match=message):
        make_pki(tmp_path)
    assert _snapshot(tmp_path) == before
    assert len(make_pki(tmp_path, force=True).made) == 6  # --force repairs it


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="--days must be at least 1"):
        make_pki(tmp_path / "d", days=0)
    assert not (tmp_path / "d").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(LabError, match="is not a directory"):
        make_pki(tmp_path / "f")


def test_the_command_prints_what_it_made_and_how_to_use_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "pki"
    assert cpn_lab(["pki", str(d), "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert out.count("made  ") == 6
    files = pki_files(d)
    assert (f"cpn-controller --ofp-tls-cert {files.controller_cert} --ofp-tls-key "
            f"{files.controller_key} --ofp-tls-ca {files.ca_cert}") in out
    sw = _cert(files.switch_cert)
    assert (sw.not_valid_after_utc - sw.not_valid_before_utc).days == 30
    assert cpn_lab(["pki", str(d)]) == 0
    assert capsys.readouterr().out.count("kept  ") == 6
    (d / "ca-cert.pem").unlink()
    assert cpn_lab(["pki", str(d)]) == 2
    assert "not the CA that signed them" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--controller", "ssl:127.0.0.1:6653"], "an ssl: controller needs --tls-dir DIR"),
    (["--controller", "tcp:127.0.0.1:6653", "--tls-dir", "x"],
     "--tls-dir is for ssl: controllers"),
    (["--controller", "tls:127.0.0.1:6653"], "expected tcp:HOST:PORT or ssl:HOST:PORT"),
])
def test_the_lab_checks_its_tls_arguments_before_anything_runs(
        argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cpn_lab(["check", "topologies/triangle.yaml", *argv]) == 2
    assert message in capsys.readouterr().err
