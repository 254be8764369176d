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

``cpn-lab pki DIR --etcd-member NAME ...`` also makes, in ``DIR/etcd/``, what a TLS etcd
and its clients need, under a CA of their own (a switch's certificate, whose key sits on
every switch, must not open etcd):

==============================  ===========================================================
``ca-cert.pem``, ``ca-key.pem``  the etcd CA (etcd's ``--trusted-ca-file``; members'
                                 ``--etcd-ca``)
``server-cert.pem``, ``-key``    etcd's ``--cert-file`` / ``--key-file`` (names
                                 ``localhost``, ``127.0.0.1`` and each ``--etcd-host``;
                                 client use too: etcd's gateway presents it to etcd's own
                                 gRPC server)
``client-NAME-cert.pem``, ``-key``  member NAME's ``--etcd-cert`` / ``--etcd-key`` (no
                                 common name: see :func:`issue`)
==============================  ===========================================================

Idempotent: files that exist are kept unless ``force``; missing end certificates are signed
by the existing CA. A CA missing while certificates it would have signed exist, or a
certificate without its key (or the reverse), is an error that changes nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controller.errors import LabError

if TYPE_CHECKING:
    from controller.cluster.etcd import EtcdTls
    from controller.cluster.etcdproc import ServerTls

__all__ = ["DEFAULT_DAYS", "EtcdPkiFiles", "PkiFiles", "PkiResult", "etcd_pki_files", "server_tls",
           "make_etcd_pki", "make_pki", "pki_files"]

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
class EtcdPkiFiles:
    """Where ``cpn-lab pki DIR --etcd-member NAME`` puts etcd's files (``DIR/etcd``)."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    def client_cert(self, member: str) -> Path:
        """Member ``member``'s client certificate (``--etcd-cert``)."""
        return self.dir / f"client-{member}-cert.pem"

    def client_key(self, member: str) -> Path:
        """Its private key (``--etcd-key``)."""
        return self.dir / f"client-{member}-key.pem"

    def client_tls(self, member: str) -> EtcdTls:
        """Member ``member``'s side of TLS to etcd (``--etcd-ca``, ``--etcd-cert``,
        ``--etcd-key``)."""
        from controller.cluster.etcd import EtcdTls

        return EtcdTls(str(self.ca_cert), str(self.client_cert(member)),
                       str(self.client_key(member)))

    def pairs(self, members: Iterable[str]) -> list[tuple[str, Path, Path]]:
        """(role, certificate, key): the CA first, then the server, then each member."""
        return [("ca", self.ca_cert, self.ca_key),
                ("server", self.server_cert, self.server_key),
                *((f"client-{m}", self.client_cert(m), self.client_key(m)) for m in members)]


def etcd_pki_files(directory: str | Path) -> EtcdPkiFiles:
    """The etcd files under ``directory`` (the ``DIR`` of ``cpn-lab pki``)."""
    d = Path(directory) / "etcd"
    return EtcdPkiFiles(d, d / "ca-cert.pem", d / "ca-key.pem", d / "server-cert.pem",
                        d / "server-key.pem")


FilesT = TypeVar("FilesT", PkiFiles, EtcdPkiFiles)


@dataclass(frozen=True, slots=True)
class PkiResult(Generic[FilesT]):
    files: FilesT
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
          client: bool, days: int = DEFAULT_DAYS, now: datetime.datetime | None = None,
          also_client: bool = False, unit_only: bool = False,
          hosts: Iterable[str] = ()) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a new end certificate ``subject_cn`` signed by the CA:
    for a TLS client (a switch) when ``client``, else for a server (the controller, named
    ``localhost`` and ``127.0.0.1`` too; a client as well with ``also_client``). ``now``
    shifts the validity (tests make expired certificates with it). ``unit_only``: the name
    goes in the subject's organizational unit and the subject has no common name (etcd
    refuses, through its HTTP gateway with authentication on, a client certificate that has
    one). ``hosts``: more names (DNS names or IP addresses) a server certificate holds."""
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    if also_client and not client:
        usage.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    names: list[x509.GeneralName] = [] if client else [
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        *(_general_name(h) for h in hosts if h not in ("localhost", "127.0.0.1"))]
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "CPN lab"),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, subject_cn)]) \
        if unit_only else _name(subject_cn)
    cert = _certificate(subject, key, ca_cert.subject, ca_key, days, ca=False,
                        usage=usage, names=names, now=now)
    return cert.public_bytes(serialization.Encoding.PEM), _key_bytes(key)


_DNS_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


def _is_host(host: str) -> bool:
    """``host`` is an IP address or a DNS name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return _DNS_NAME.fullmatch(host) is not None


def _general_name(host: str) -> x509.GeneralName:
    """``host`` as a subject alternative name: an IP address, else a DNS name."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def new_ca(common_name: str = "CPN lab CA", days: int = 10 * DEFAULT_DAYS
           ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A new self-signed CA (certificate, key) that may sign end certificates only."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _certificate(_name(common_name), key, _name(common_name), key, days, ca=True)
    return cert, key


def _check_pairs(directory: Path, pairs: list[tuple[str, Path, Path]]) -> None:
    """Refuse half pairs and end certificates whose CA (the first pair) is gone (nothing
    is written)."""
    problems = []
    for role, cert, key in pairs:
        if cert.exists() != key.exists():
            have, lack = (cert, key) if cert.exists() else (key, cert)
            problems.append(f"{have.name} exists but {lack.name} does not ({role})")
    _, ca_cert, ca_key = pairs[0]
    ca_exists = ca_cert.exists() and ca_key.exists()
    if not ca_exists and any(cert.exists() for _, cert, _ in pairs[1:]):
        problems.append("end certificates exist but not the CA that signed them")
    if problems:
        raise LabError(f"{directory}: " + "; ".join(problems)
                       + " - remove the directory's files or give --force to make all anew")


def make_pki(directory: str | Path, *, force: bool = False, days: int = DEFAULT_DAYS
             ) -> PkiResult[PkiFiles]:
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
        _check_pairs(files.dir, files.pairs())
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    result: PkiResult[PkiFiles] = PkiResult(files, [], [])
    ca_cert, ca_key = _ca(files.dir, files.ca_cert, files.ca_key, "CPN lab CA", force, days,
                          result)
    for role, cert_path, key_path in files.pairs()[1:]:
        _end(f"cpn-{role}", cert_path, key_path, ca_cert, ca_key, force, days, result,
             client=role == "switch")
    return result


def make_etcd_pki(directory: str | Path, members: Iterable[str], *, force: bool = False,
                  days: int = DEFAULT_DAYS, hosts: Iterable[str] = ()
                  ) -> PkiResult[EtcdPkiFiles]:
    """Make what is missing of etcd's CA, its server certificate (named ``localhost``,
    ``127.0.0.1`` and each of ``hosts``: the names or addresses members reach etcd at) and a
    client certificate per member name in ``directory``/etcd (see the module's table); with
    ``force``, make all anew (an existing server certificate is kept, with the names it
    has). The same checks and modes as :func:`make_pki` (:class:`LabError`, nothing
    written, for bad input)."""
    names = list(members)
    host_names = list(hosts)
    bad_hosts = [h for h in host_names if not _is_host(h)]
    if bad_hosts:
        raise LabError(f"--etcd-host: a DNS name or an IP address each (got {bad_hosts!r})")
    bad = [m for m in names if not m or not m.replace("-", "").replace("_", "").replace(
        ".", "").isalnum()]
    if bad:
        raise LabError(f"etcd member names: use letters, digits, '-', '_' and '.' only "
                       f"(got {bad!r})")
    if days < 1:
        raise LabError(f"--days must be at least 1 (got {days})")
    files = etcd_pki_files(directory)
    if not force:
        _check_pairs(files.dir, files.pairs(names))
    files.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    result: PkiResult[EtcdPkiFiles] = PkiResult(files, [], [])
    ca_cert, ca_key = _ca(files.dir, files.ca_cert, files.ca_key, "CPN etcd CA", force, days,
                          result)
    _end("cpn-etcd-server", files.server_cert, files.server_key, ca_cert, ca_key, force, days,
         result, client=False, also_client=True, hosts=host_names)
    for m in names:
        _end(f"cpn-etcd-client-{m}", files.client_cert(m), files.client_key(m), ca_cert,
             ca_key, force, days, result, client=True, unit_only=True)
    return result


def _ca(directory: Path, cert_path: Path, key_path: Path, common_name: str, force: bool,
        days: int, result: PkiResult[Any]
        ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA of ``cert_path``/``key_path``: made (and recorded in ``result``) when missing
    or ``force``, else read."""
    if force or not cert_path.exists():
        ca_cert, ca_key = new_ca(common_name, days=10 * days)
        _write(key_path, _key_bytes(ca_key), 0o600)
        _write(cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
        result.made.extend([cert_path, key_path])
        return ca_cert, ca_key
    try:
        ca_cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise LabError(f"{directory}: the CA's files cannot be read ({exc}); give --force "
                       "to make all anew") from None
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise LabError(f"{key_path}: not an ECDSA key made by cpn-lab pki")
    result.kept.extend([cert_path, key_path])
    return ca_cert, loaded


def _end(common_name: str, cert_path: Path, key_path: Path, ca_cert: x509.Certificate,
         ca_key: ec.EllipticCurvePrivateKey, force: bool, days: int, result: PkiResult[Any], *,
         client: bool, also_client: bool = False, unit_only: bool = False,
         hosts: Iterable[str] = ()) -> None:
    """Issue the end certificate at ``cert_path``/``key_path`` unless it exists (and not
    ``force``)."""
    if not force and cert_path.exists():
        result.kept.extend([cert_path, key_path])
        return
    cert_pem, key_pem = issue(common_name, ca_cert, ca_key, client=client, days=days,
                              also_client=also_client, unit_only=unit_only, hosts=hosts)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    result.made.extend([cert_path, key_path])


def server_tls(pki_dir: str | Path, member: str = "launcher") -> ServerTls:
    """etcd's side of TLS for :class:`~controller.cluster.etcdproc.EtcdServer` from the files
    of ``cpn-lab pki DIR --etcd-member member`` under ``pki_dir`` (made when missing; kept
    when present)."""
    from controller.cluster.etcdproc import ServerTls

    files = make_etcd_pki(pki_dir, [member]).files
    return ServerTls(ca=str(files.ca_cert), cert=str(files.server_cert),
                     key=str(files.server_key), client=files.client_tls(member))
