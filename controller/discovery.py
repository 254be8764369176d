"""The discovery secret: the key of the HMAC on every LLDP probe
(:mod:`controller.network.lldpauth`).

A controller alone keeps it in ``<state.dir>/lldp-secret`` (64 hex digits, mode 0600),
generated on first start and read after, so a restart checks the probes it sent before.
The members of a cluster must share it (one member's probe arrives at a switch another
member masters): the first member to start creates it in etcd under the cluster's prefix,
``{prefix}/secrets/lldp``, in a transaction that writes only if the key is absent, and every
member reads that value.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from controller.errors import CpnError

if TYPE_CHECKING:
    from controller.cluster.etcd import EtcdClient

__all__ = ["SECRET_BYTES", "SECRET_FILE_NAME", "load_lldp_secret", "shared_lldp_secret"]

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "lldp-secret"
SECRET_BYTES = 32


def _parse(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        key = b""
    if len(key) < 16:
        raise CpnError(f"{where}: the LLDP discovery secret must be at least 32 hex digits; "
                       "delete it to have a new one generated (every member at once)")
    return key


def load_lldp_secret(state_dir: str | Path) -> bytes:
    """The secret in ``<state_dir>/lldp-secret``, generated (mode 0600) when missing.
    Two processes starting together on one directory end up with the same secret (the file
    is created by a hard link, which fails if it exists). :class:`CpnError` when the file
    cannot be read or does not hold a secret."""
    path = Path(state_dir) / SECRET_FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{SECRET_FILE_NAME}.{os.getpid()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w",
                       encoding="ascii") as out:
            out.write(f"{secrets.token_hex(SECRET_BYTES)}\n")
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
            log.info(f"generated the LLDP discovery secret in {path} (mode 0600)",
                     extra={"event": "lldp_secret_created"})
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise CpnError(f"cannot read the LLDP discovery secret {path}: {exc}") from exc
    if mode & 0o077:
        log.warning(f"LLDP discovery secret {path} is readable by group/others; chmod 600 it",
                    extra={"event": "lldp_secret_mode"})
    return _parse(text, str(path))


def shared_lldp_secret(client: EtcdClient, prefix: str) -> bytes:
    """The cluster's secret at ``{prefix}/secrets/lldp``: created by this call if absent
    (one transaction: only the first of several members starting at once writes), read
    otherwise."""
    key = f"{prefix.rstrip('/')}/secrets/lldp"
    mine = secrets.token_hex(SECRET_BYTES)
    # imported here: the etcd client library costs a standalone controller 0.3-1 s of start-up
    from controller.cluster.etcd import Compare, Op

    result = client.txn([Compare.absent(key)], [Op.put(key, mine)], [Op.get(key)])
    if result.succeeded:
        log.info(f"created the cluster's LLDP discovery secret at {key}",
                 extra={"event": "lldp_secret_created"})
        return _parse(mine, key)
    kvs = result.responses[0] if result.responses else []
    if not kvs:
        raise CpnError(f"etcd key {key}: the LLDP discovery secret vanished while read")
    return _parse(kvs[0].value.decode("ascii", "replace"), f"etcd key {key}")
