"""``cpn-lab pki DIR``: a certificate authority and the certificates of an OpenFlow-over-TLS lab.

Made with the ``cryptography`` package, in process: the extensions each certificate needs
(a CA that may sign only end certificates; ``serverAuth`` for the controller, ``clientAuth``
for the switches, which OpenSSL checks on each side of the handshake) are set directly, with
no OpenSSL configuration file, no ``ovs-pki`` directory layout and no external program; it
works where Open vSwitch is not installed (a controller host).

The files, in ``DIR``:

========================  =====================================================
``ca-cert.pem``           the CA's certificate: both sides trust what it signed
``ca-key.pem``            the CA's private key (to sign more certificates), 0600
``controller-cert.pem``   ``cpn-controller --ofp-tls-cert``
``controller-key.pem``    ``cpn-controller --ofp-tls-key``, 0600
``switch-cert.pem``       the switches' certificate (``ovs-vsctl set-ssl``)
``switch-key.pem``        the switches' private key, 0600
========================  =====================================================

Keys are ECDSA P-256. All switches of a lab share one certificate: Open vSwitch has one SSL
configuration per ``ovs-vswitchd``, and a lab's switches all run in the machine's one.

Idempotent: files that exist are kept unless ``force``; missing end certificates are signed
by the existing CA. A CA missing while certificates it would have signed exist, or a
certificate without its key (or the reverse), is an error that changes nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.errors import LabError

__all__ = ["DEFAULT_DAYS", "PkiFiles", "PkiResult", "make_pki", "pki_files"]

DEFAULT_DAYS = 365
"""Validity of the controller's and the switches' certificates, days (the CA: ten times)."""


@dataclass(frozen=True, slots=True)
class PkiFiles:
    """Where ``cpn-lab pki DIR`` puts each file."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    controller_cert: Path
    controller_key: Path
    switch_cert: Path
    switch_key: Path

    def pairs(self) -> list[tuple[str, Path, Path]]:
        """(role, certificate, key): the CA first."""
        return [("ca", self.ca_cert, self.ca_key),
                ("controller", self.controller_cert, self.controller_key),
                ("switch", self.switch_cert, self.switch_key)]


def pki_files(directory: str | Path) -> PkiFiles:
    d = Path(directory)
    return PkiFiles(d, d / "ca-cert.pem", d / "ca-key.pem", d / "controller-cert.pem",
                    d / "controller-key.pem", d / "switch-cert.pem", d / "switch-key.pem")


@dataclass(frozen=True, slots=True)
class PkiResult:
    files: PkiFiles
    made: list[Path]
    kept: list[Path]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPN lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` with ``mode`` from the start (a key is never readable by
    others, not even for a moment): a temporary file created with the mode, then renamed."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)  # the umask may have taken bits away
    tmp.replace(path)


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
                 issuer_key: ec.EllipticCurvePrivateKey, days: int, *, ca: bool,
                 usage: Iterable[x509.ObjectIdentifier] = (),
                 names: Iterable[x509.GeneralName] = (),
                 now: datetime.datetime | None = None) -> x509.Certificate:
    start = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder()
               .subject_name(subject).issuer_name(issuer).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=not ca, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=ca,
                   crl_sign=ca, encipher_only=False, decipher_only=False), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if not ca:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    alt = list(names)
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def issue(subject_cn: str, ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          client: bool, days: int = DEFAULT_DAYS, now: datetime.datetime | None = None
          ) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new end certificate ``subject_cn`` signed by the CA:
    for a TLS client (a switch) when ``client``, else for a server (the controller, named
    ``localhost`` and ``127.0.0.1`` too). ``now`` shifts the validity (tests make expired
    certificates with it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    names: list[x509.GeneralName] = [] if client else [
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = _certificate(_name(subject_cn), key, ca_cert.subject, ca_key, days, ca=False,
                        usage=usage, names=names, now=now)
    return cert.public_bytes(serialization.Encoding.PEM), _key_bytes(key)


def new_ca(common_name: str = "CPN lab CA", days: int = 10 * DEFAULT_DAYS
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA (certificate, key) that may sign end certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(common_name), key, _name(common_name), key, days, ca=True)
    return cert, key


def _check_pairs(files: PkiFiles) -> None:
    """Refuse half pairs and end certificates whose CA is gone (nothing is written)."""
    problems = []
    for role, cert, key in files.pairs():
        if cert.exists() != key.exists():
            have, lack = (cert, key) if cert.exists() else (key, cert)
            problems.append(f"{have.name} exists but {lack.name} does not ({role})")
    ca_exists = files.ca_cert.exists() and files.ca_key.exists()
    if not ca_exists and (files.controller_cert.exists() or files.switch_cert.exists()):
        problems.append("end certificates exist but not the CA that signed them")
    if problems:
        raise LabError(f"{files.dir}: " + "; ".join(problems)
                       + " - remove the directory's files or give --force to make all anew")


def make_pki(directory: str | Path, *, force: bool = False, days: int = DEFAULT_DAYS
             ) -> PkiResult:
    """Make what is missing of the CA, the controller's and the switches' certificates and
    keys in ``directory`` (created 0700 if absent); with ``force``, make all anew. Keys are
    written 0600, certificates 0644. Raises :class:`LabError` for bad input (nothing
    written)."""
    if days < 1:
        raise LabError(f"--days must be at least 1 (got {days})")
    files = pki_files(directory)
    if files.dir.exists() and not files.dir.is_dir():
        raise LabError(f"{files.dir} exists and is not a directory")
    if not force:
        _check_pairs(files)
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    made: list[Path] = []
    kept: list[Path] = []
    if force or not files.ca_cert.exists():
        ca_cert, ca_key = new_ca(days=10 * days)
        _write(files.ca_key, _key_bytes(ca_key), 0o600)
        _write(files.ca_cert, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        made += [files.ca_cert, files.ca_key]
    else:
        try:
            ca_cert = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
            loaded = serialization.load_pem_private_key(files.ca_key.read_bytes(),
                                                        password=None)
        except (ValueError, TypeError) as exc:
            raise LabError(f"{files.dir}: the CA's files cannot be read ({exc}); give --force "
                           "to make all anew") from None
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise LabError(f"{files.ca_key}: not an ECDSA key made by cpn-lab pki")
        ca_key = loaded
        kept += [files.ca_cert, files.ca_key]
    for role, cert_path, key_path in files.pairs()[1:]:
        if not force and cert_path.exists():
            kept += [cert_path, key_path]
            continue
        cert_pem, key_pem = issue(f"cpn-{role}", ca_cert, ca_key, client=role == "switch",
                                  days=days)
        _write(key_path, key_pem, 0o600)
        _write(cert_path, cert_pem, 0o644)
        made += [cert_path, key_path]
    return PkiResult(files, made, kept)
