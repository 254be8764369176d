"""API tokens and roles: who may call what (``docs/security.md``, "Tokens and roles").

* **Roles**, each including the one below: ``viewer`` reads; ``operator`` also writes
  intents, placements and service assignments; ``admin`` also writes compute sites and
  services (and would settings and cluster operations) and reads the audit trail. Apart
  from that ladder, ``site``: a token bound to one compute site (its ``site`` in the file)
  that reads as a viewer and writes only that site's metrics (:func:`allows`).
  :data:`ROUTE_ROLES` is the one table of which call needs which role: every write route
  has an entry (``tests/unit/test_api_auth.py`` walks the app's routes), a read that is not
  listed needs ``viewer``, and a write missing from the table needs ``admin``.
* **The token file** (:func:`load_tokens_file`): YAML, ``tokens:`` a list of ``{name, role,
  sha256}``; ``sha256`` is the hex SHA-256 of the token, never the token. Tokens are 32
  random bytes (:func:`new_token`), so a plain SHA-256 cannot be reversed by search; a slow
  password hash (scrypt, PBKDF2) protects guessable secrets and would cost every request
  milliseconds of CPU for nothing here.
* :class:`TokenRegistry` holds the file's tokens and the single token of older setups
  (``--api-token-file``, ``$CPN_API_TOKEN``, the generated one), named ``default``, role
  ``admin``; it re-reads the file when it changes (checked at most once a second), so a
  token added or removed takes effect without a restart; a bad file then keeps the tokens
  it had and logs why. A presented token is hashed and compared with every stored hash by
  :func:`hmac.compare_digest`.

No HTTP here: ``cpnctl token`` uses this module too.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from controller.errors import CpnError, TopologyError
from controller.topology.loader import yaml_with_lines

__all__ = ["API_PREFIX", "DEFAULT_TOKEN_NAME", "RANK", "ROLES", "ROUTE_ROLES",
           "TOKENS_FILE_NAME", "WRITE_METHODS", "Role", "TokenEntry", "TokenFileError",
           "TokenRegistry", "add_token", "allows", "load_tokens_file", "new_token", "parse_tokens",
           "remove_token", "required_role", "route_template", "token_sha256"]

log = logging.getLogger("controller.api.auth")

Role = Literal["viewer", "operator", "admin", "site"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin", "site")
RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2, "site": 0}
"""the ladder; ``site`` ranks as a viewer, and a route that needs ``site`` is checked by
:func:`allows`"""
DEFAULT_TOKEN_NAME = "default"
"""the name of the single token of older setups (``--api-token-file``, ``$CPN_API_TOKEN``,
``<state-dir>/api-token``); role admin"""
TOKENS_FILE_NAME = "api-tokens.yaml"
"""the token file in a state directory, used when ``api.tokens_file`` is not set"""
API_PREFIX = "/api/v1"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
RELOAD_CHECK_S = 1.0

_V1 = API_PREFIX
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    # intents
    ("POST", f"{_V1}/intents"): "operator",
    ("POST", f"{_V1}/intents/batch"): "operator",
    ("DELETE", f"{_V1}/intents/{{intent_id}}"): "operator",
    # placements and the clients of anycast services
    ("POST", f"{_V1}/placements"): "operator",
    ("DELETE", f"{_V1}/placements/{{placement_id}}"): "operator",
    ("POST", f"{_V1}/services/{{name}}/assignments"): "operator",
    ("DELETE", f"{_V1}/services/{{name}}/assignments/{{client}}"): "operator",
    # the compute estate: sites and services
    ("POST", f"{_V1}/compute-sites"): "admin",
    ("PATCH", f"{_V1}/compute-sites/{{site_id}}"): "admin",
    ("DELETE", f"{_V1}/compute-sites/{{site_id}}"): "admin",
    ("POST", f"{_V1}/services"): "admin",
    ("DELETE", f"{_V1}/services/{{name}}"): "admin",
    # external link measurements
    ("PUT", f"{_V1}/links/{{index}}/measurements"): "operator",
    # a site's live metrics: its own site token, or admin
    ("PUT", f"{_V1}/compute-sites/{{site_id}}/metrics"): "site",
    # reads beyond viewer
    ("GET", f"{_V1}/audit"): "admin",
}
"""(method, route path as declared) -> the role the call needs. Every write route is here;
reads not here need ``viewer``."""


_CONVERTOR = re.compile(r"\{(\w+):[^}]*\}")


def _pattern(template: str) -> re.Pattern[str]:
    """A route template's paths: each ``{param}`` one path segment."""
    parts = re.split(r"\{\w+\}", template)
    return re.compile("^" + "[^/]+".join(re.escape(p) for p in parts) + "/?$")


_PATTERNS = [(method, _pattern(template), role)
             for (method, template), role in ROUTE_ROLES.items()]


def route_template(path: str) -> str:
    """A route's path without its parameters' convertors (``{id:int}`` -> ``{id}``)."""
    return _CONVERTOR.sub(r"{\1}", path)


def required_role(method: str, path: str) -> Role:
    """The role a call needs, for a route template (``/api/v1/intents/{intent_id}``) or a
    request's path (``/api/v1/intents/7``): its :data:`ROUTE_ROLES` entry; else ``viewer``
    for a read and ``admin`` for a write (a write route nobody classified is closed, not
    open)."""
    method = method.upper()
    role = ROUTE_ROLES.get((method, route_template(path)))
    if role is not None:
        return role
    for m, pattern, r in _PATTERNS:
        if m == method and pattern.match(path):
            return r
    return "admin" if method in WRITE_METHODS else "viewer"


_SITE_METRICS = re.compile(rf"^{re.escape(_V1)}/compute-sites/([^/]+)/metrics/?$")


def allows(entry: TokenEntry, need: Role, method: str, path: str) -> bool:
    """Whether ``entry`` may make a call that needs ``need`` (:func:`required_role`): a call
    that needs ``site`` is for an admin, or a site token whose ``site`` is the one in
    ``path``; any other by rank (a site token ranks as a viewer)."""
    if need == "site":
        if entry.role == "admin":
            return True
        m = _SITE_METRICS.match(path)
        return (entry.role == "site" and entry.site is not None and m is not None
                and m.group(1) == entry.site)
    return RANK[entry.role] >= RANK[need]


def token_sha256(token: str) -> str:
    """The hex SHA-256 of a token, as the token file holds it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class TokenEntry:
    """One named token: its ``role`` and the SHA-256 of the token (hex)."""

    name: str
    role: Role
    sha256: str
    site: str | None = None
    """for role ``site``: the compute site whose metrics the token may write"""


class TokenFileError(CpnError):
    """A token file that cannot be used; the message names the file, line and field."""

    code = "bad_token_file"


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_KEYS = ("name", "role", "sha256", "site")
_SITE_ID = re.compile(r"^cs:[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+$")


def load_tokens_file(path: str | Path) -> list[TokenEntry]:
    """The entries of a token file; :class:`TokenFileError` naming ``file:line: field``
    for an unreadable file, bad YAML, a missing or unknown key, a bad name (letters,
    digits, ``_ . -``; not ``default``), an unknown role, a ``sha256`` that is not 64 hex
    digits, or a name or hash given twice."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenFileError(f"{source}: cannot read the token file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise TokenFileError(f"{source}: the token file is not UTF-8: {exc.reason}") from None
    return parse_tokens(text, source)


def parse_tokens(text: str, source: str = "<string>") -> list[TokenEntry]:
    """:func:`load_tokens_file` of a file's text (``source`` names it in errors)."""
    if not text.strip():
        return []
    try:
        data, lines = yaml_with_lines(text, source)
    except TopologyError as exc:
        raise TokenFileError(str(exc)) from None

    def fail(message: str, *at: Any) -> TokenFileError:
        line = lines.get(tuple(at)) or lines.get(tuple(at[:-1])) or lines.get(())
        where = f"{source}:{line}" if line else source
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in at).lstrip(".")
        return TokenFileError(f"{where}: {field + ': ' if field else ''}{message}")

    if not isinstance(data, dict) or set(data) - {"tokens"}:
        raise fail("the file is a mapping with one key, tokens: a list of {name, role, "
                   "sha256}")
    items = data.get("tokens") or []
    if not isinstance(items, list):
        raise fail("must be a list of {name, role, sha256}", "tokens")
    out: list[TokenEntry] = []
    names: set[str] = set()
    hashes: set[str] = set()
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise fail("must be a mapping with name, role and sha256", "tokens", i)
        for key in item:
            if key not in _KEYS:
                raise fail(f"unknown key (known: {', '.join(_KEYS)})", "tokens", i, key)
        for key in _KEYS[:3]:
            if key not in item:
                raise fail(f"missing {key}", "tokens", i)
        name, role, digest = item["name"], item["role"], item["sha256"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise fail("use 1-64 letters, digits, '_', '.' or '-', starting with a letter "
                       "or digit", "tokens", i, "name")
        if name == DEFAULT_TOKEN_NAME:
            raise fail(f"{DEFAULT_TOKEN_NAME!r} is the name of the single token of "
                       "--api-token-file / $CPN_API_TOKEN; choose another", "tokens", i,
                       "name")
        if name in names:
            raise fail(f"{name!r} is given twice", "tokens", i, "name")
        if role not in ROLES:
            raise fail(f"unknown role {role!r} (roles: {', '.join(ROLES)})", "tokens", i,
                       "role")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise fail("must be the 64 hex digits of the token's SHA-256 (never the token "
                       "itself)", "tokens", i, "sha256")
        digest = digest.lower()
        if digest in hashes:
            raise fail("the same token as an earlier entry", "tokens", i, "sha256")
        site = item.get("site")
        if role == "site" and (not isinstance(site, str) or not _SITE_ID.match(site)):
            raise fail("a token of role site names its compute site: site: cs:<place>:<name>",
                       "tokens", i, "site")
        if role != "site" and site is not None:
            raise fail("only a token of role site names a site", "tokens", i, "site")
        names.add(name)
        hashes.add(digest)
        out.append(TokenEntry(name, cast(Role, role), digest, site))
    return out


_HEADER = ("# CPN controller API tokens (docs/security.md): name, role (viewer, operator,\n"
           "# admin) and the SHA-256 of the token; the tokens themselves are not kept.\n")


def add_token(path: str | Path, name: str, role: str, site: str | None = None) -> str:
    """Make a new token named ``name`` with ``role`` (``site``: the compute site of a
    token of role site), add its hash to the token file at ``path`` (created with mode 0600
    when missing) and return the token, which is nowhere else. :class:`TokenFileError`
    (nothing written) for a bad file, name, role or site.
    The entry is appended to the file's text (comments kept), or the file is rewritten
    whole when its layout does not allow that."""
    path = Path(path)
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    entries = parse_tokens(old, str(path))
    if role not in ROLES:
        raise TokenFileError(f"unknown role {role!r} (roles: {', '.join(ROLES)})")
    if not _NAME.match(name) or name == DEFAULT_TOKEN_NAME:
        raise TokenFileError(f"bad token name {name!r}: use 1-64 letters, digits, '_', '.' "
                             f"or '-', starting with a letter or digit (not "
                             f"{DEFAULT_TOKEN_NAME!r})")
    if any(e.name == name for e in entries):
        raise TokenFileError(f"{path}: a token named {name!r} exists already")
    if (role == "site") != (site is not None) or (site is not None
                                                  and not _SITE_ID.match(site)):
        raise TokenFileError("a token of role site, and only one, names its compute site "
                             "(cs:<place>:<name>)")
    token = new_token()
    entry = TokenEntry(name, role, token_sha256(token), site)
    wanted = [*entries, entry]
    entry_text = f"  - name: {name}\n    role: {role}\n    sha256: {entry.sha256}\n" + (
        f"    site: {site}\n" if site is not None else "")
    appended = (old.rstrip("\n") + "\n" + entry_text) if old.strip() else \
        _HEADER + "tokens:\n" + entry_text
    text = appended if _holds(appended, wanted) else _HEADER + yaml.safe_dump(
        {"tokens": [_entry_dict(e) for e in wanted]},
        sort_keys=False)
    _write_tokens(path, text)
    return token


def remove_token(path: str | Path, name: str) -> TokenEntry:
    """Take the token named ``name`` out of the token file (rewritten whole, mode 0600;
    comments but the header are not kept); the entry removed. :class:`TokenFileError` for a
    bad file or an unknown name (nothing written)."""
    path = Path(path)
    entries = load_tokens_file(path)
    gone = [e for e in entries if e.name == name]
    if not gone:
        raise TokenFileError(f"{path}: no token named {name!r} (names: "
                             f"{', '.join(e.name for e in entries) or 'none'})")
    _write_tokens(path, _HEADER + yaml.safe_dump(
        {"tokens": [_entry_dict(e) for e in entries if e.name != name]}, sort_keys=False))
    return gone[0]


def _entry_dict(e: TokenEntry) -> dict[str, str]:
    out = {"name": e.name, "role": e.role, "sha256": e.sha256}
    if e.site is not None:
        out["site"] = e.site
    return out


def _write_tokens(path: Path, text: str) -> None:
    """Write the token file atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _holds(text: str, wanted: list[TokenEntry]) -> bool:
    try:
        return parse_tokens(text) == wanted
    except TokenFileError:
        return False


class TokenRegistry:
    """The tokens the API accepts: the single ``default`` token (admin) of older setups
    when given, and the entries of ``tokens_file`` (re-read when it changes).

    ``tokens_file`` must exist when ``required`` (it was named in the settings); a missing
    optional file (``<state-dir>/api-tokens.yaml``) means no named tokens until it
    appears. Raises :class:`TokenFileError` for a bad file at start."""

    def __init__(self, default_token: str | None = None, tokens_file: str | Path | None = None,
                 *, required: bool = False) -> None:
        self._lock = threading.Lock()
        self._default = ([TokenEntry(DEFAULT_TOKEN_NAME, "admin", token_sha256(default_token))]
                         if default_token else [])
        self.path = Path(tokens_file) if tokens_file is not None else None
        self._entries: list[TokenEntry] = []
        self._stamp: tuple[int, int, int] | None = None
        self._checked = time.monotonic()
        if self.path is not None:
            if required and not self.path.exists():
                raise TokenFileError(f"{self.path}: the token file does not exist (make one "
                                     "with: cpnctl token new NAME --role ROLE --file "
                                     f"{self.path})")
            self._stamp = self._stat()
            if self._stamp is not None:
                self._entries = load_tokens_file(self.path)
                self._check_mode()

    def _check_mode(self) -> None:
        """Warn when others than the owner may write the file: they could add an admin."""
        assert self.path is not None
        try:
            mode = self.path.stat().st_mode
        except OSError:
            return
        if mode & 0o022:
            log.warning(f"token file {self.path} is writable by group or others, who could "
                        "add a token of any role; chmod 600 it",
                        extra={"event": "token_mode"})

    @property
    def entries(self) -> list[TokenEntry]:
        """Every token accepted now, the default one first."""
        with self._lock:
            return [*self._default, *self._entries]

    def _stat(self) -> tuple[int, int, int] | None:
        assert self.path is not None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _maybe_reload(self, now: float) -> None:
        if self.path is None or now - self._checked < RELOAD_CHECK_S:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        try:
            entries = load_tokens_file(self.path) if stamp is not None else []
        except TokenFileError as exc:
            log.error(f"token file changed but cannot be used; keeping the {len(self._entries)}"
                      f" tokens it had: {exc}", extra={"event": "tokens_reload_failed"})
            self._stamp = stamp
            return
        self._entries, self._stamp = entries, stamp
        if stamp is not None:
            self._check_mode()
        log.info(f"token file {self.path} re-read: {len(entries)} tokens",
                 extra={"event": "tokens_reloaded"})

    def authenticate(self, token: str) -> TokenEntry | None:
        """The entry whose hash the token has, or None. Every stored hash is compared (in
        constant time each), whichever matches."""
        digest = token_sha256(token).encode()
        with self._lock:
            self._maybe_reload(time.monotonic())
            candidates: Sequence[TokenEntry] = [*self._default, *self._entries]
        found: TokenEntry | None = None
        for entry in candidates:
            if hmac.compare_digest(digest, entry.sha256.encode()) and found is None:
                found = entry
        return found
