"""OpenFlow over TLS: the settings (all three files or none)."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import SettingsError, load_settings

TLS_FLAGS = {"openflow.tls_cert": "c.pem", "openflow.tls_key": "k.pem",
             "openflow.tls_ca": "ca.pem"}


def test_tls_takes_all_three_files_or_none() -> None:
    s = load_settings(environ={}, flags=TLS_FLAGS)
    assert (s.openflow.tls_cert, s.openflow.tls_key, s.openflow.tls_ca) == (
        "c.pem", "k.pem", "ca.pem")
    plain = load_settings(environ={})
    assert (plain.openflow.tls_cert, plain.openflow.tls_key, plain.openflow.tls_ca) == (
        None, None, None)


@pytest.mark.parametrize("given", [("openflow.tls_cert",), ("openflow.tls_key",),
                                   ("openflow.tls_ca",),
                                   ("openflow.tls_cert", "openflow.tls_ca")])
def test_a_partial_tls_setting_names_what_is_missing(given: tuple[str, ...]) -> None:
    with pytest.raises(SettingsError) as err:
        load_settings(environ={}, flags={k: TLS_FLAGS[k] for k in given})
    missing = [k.split(".")[1] for k in TLS_FLAGS if k not in given]
    message = str(err.value)
    assert message.endswith(f"{', '.join(missing)} missing"), message
    # it is reported at the flags that were given
    assert message.startswith(", ".join(f"flag --ofp-tls-{k.split('_')[1]}" for k in given))


def test_the_environment_and_a_config_file_set_tls_too(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("openflow:\n  tls_cert: pki/controller-cert.pem\n"
                   "  tls_key: pki/controller-key.pem\n")
    s = load_settings(cfg, environ={"CPN_OPENFLOW_TLS_CA": "/etc/cpn/ca.pem"})
    # relative paths in a file are taken from its directory
    assert s.openflow.tls_cert == str(tmp_path / "pki" / "controller-cert.pem")
    assert s.openflow.tls_ca == "/etc/cpn/ca.pem"
    assert s.source("openflow.tls_ca") == "environment variable CPN_OPENFLOW_TLS_CA"
