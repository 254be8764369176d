"""Roles, the token file and the write rate limit (``controller/api/tokens.py``, ``auth.py``),
without a server: every write route of the real app has a role in the one table, the file's
errors name file, line and field, ``add_token`` keeps only hashes, the registry re-reads a
changed file, the token bucket refills on time."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from controller.api.auth import WriteRateLimiter
from controller.api.rest import WRITE_METHODS, create_app
from controller.api.tokens import (
    DEFAULT_TOKEN_NAME,
    ROUTE_ROLES,
    TokenFileError,
    TokenRegistry,
    add_token,
    load_tokens_file,
    parse_tokens,
    remove_token,
    required_role,
    route_template,
    token_sha256,
)
from controller.compute.steering import Steering
from controller.main import build_service
from controller.operations import IntentOperations
from controller.settings import Settings, SettingsError, load_settings
from controller.store import open_store
from controller.topology.files import topology_file
from tests.waiting import wait_until

HASH = "ab" * 32


def _app_routes(tmp_path: Path) -> list[tuple[str, str]]:
    """(method, route template) of every route of the app ``build_controller`` would serve:
    the OpenAPI document's operations and the app's own routes (included routers are not
    flattened into ``app.routes``; routes left out of the document are top-level)."""
    settings = Settings.model_validate({"topology": {"file": str(topology_file("diamond"))}})
    service = build_service(settings)
    store = open_store(tmp_path)
    try:
        app = create_app(service, intents=IntentOperations(service, store),
                         steering=Steering(service, store), store=store, token="t")
        documented = [(m.upper(), p) for p, ops in app.openapi()["paths"].items()
                      for m in ops]
        top = [(m, route_template(r.path)) for r in app.routes
               for m in (getattr(r, "methods", None) or ())]
        return sorted(set(documented) | set(top))
    finally:
        app.state.audit.close()
        store.close()


def test_every_write_route_has_an_explicit_role_and_every_entry_a_route(tmp_path: Path) -> None:
    routes = _app_routes(tmp_path)
    writes = [(m, p) for m, p in routes if m in WRITE_METHODS]
    assert len(writes) >= 12
    missing = [w for w in writes if w not in ROUTE_ROLES]
    assert not missing, f"write routes without a role in controller/api/tokens.py: {missing}"
    stale = [k for k in ROUTE_ROLES if k not in routes]
    assert not stale, f"ROUTE_ROLES entries naming no route: {stale}"
    assert ("GET", "/api/v1/audit") in routes


def test_roles_follow_the_issue_and_unknown_writes_need_admin() -> None:
    assert required_role("POST", "/api/v1/intents") == "operator"
    assert required_role("DELETE", "/api/v1/placements/{placement_id}") == "operator"
    assert required_role("POST", "/api/v1/services/{name}/assignments") == "operator"
    assert required_role("PATCH", "/api/v1/compute-sites/{site_id}") == "admin"
    assert required_role("POST", "/api/v1/services") == "admin"
    assert required_role("GET", "/api/v1/audit") == "admin"
    assert required_role("GET", "/api/v1/intents") == "viewer"
    assert required_role("DELETE", "/api/v1/intents/7") == "operator"  # a request's path
    assert required_role("DELETE", "/api/v1/services/web/assignments/h1") == "operator"
    assert required_role("DELETE", "/api/v1/services/web") == "admin"
    assert required_role("DELETE", "/api/v1/intents/{intent_id:int}") == "operator"
    assert required_role("PUT", "/api/v1/settings/anything") == "admin"  # closed, not open


@pytest.mark.parametrize(("text", "where"), [
    ("tokens:\n  - name: a\n    role: root\n    sha256: " + HASH + "\n",
     ":3: tokens[0].role: unknown role 'root'"),
    ("tokens:\n  - name: a\n    role: admin\n    sha256: nothex\n",
     ":4: tokens[0].sha256: must be the 64 hex digits"),
    ("tokens:\n  - name: a\n    role: admin\n", ":2: tokens[0]: missing sha256"),
    ("tokens:\n  - name: a b\n    role: admin\n    sha256: " + HASH + "\n",
     ":2: tokens[0].name: use 1-64 letters"),
    (f"tokens:\n  - name: {DEFAULT_TOKEN_NAME}\n    role: admin\n    sha256: {HASH}\n",
     ":2: tokens[0].name: 'default' is the name of the single token"),
    ("tokens:\n  - name: a\n    role: admin\n    sha256: " + HASH + "\n    token: x\n",
     ":5: tokens[0].token: unknown key"),
    ("tokens:\n  - {name: a, role: admin, sha256: " + HASH + "}\n"
     "  - {name: a, role: viewer, sha256: " + "cd" * 32 + "}\n",
     ":3: tokens[1].name: 'a' is given twice"),
    ("tokens:\n  - {name: a, role: admin, sha256: " + HASH + "}\n"
     "  - {name: b, role: viewer, sha256: " + HASH.upper() + "}\n",
     ":3: tokens[1].sha256: the same token as an earlier entry"),
    ("tokens: {a: 1}\n", ":1: tokens: must be a list"),
    ("users: []\n", ":1: the file is a mapping with one key"),
    ("tokens:\n  - name: a\n  - name: b\n    name: c\n", ":4: tokens[1].name: duplicate key"),
])
def test_a_bad_token_file_is_refused_naming_line_and_field(tmp_path: Path, text: str,
                                                           where: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(TokenFileError) as err:
        load_tokens_file(path)
    assert str(err.value).startswith(f"{path}{where}"), str(err.value)
    with pytest.raises(TokenFileError):
        TokenRegistry("t", path)


def test_add_token_keeps_only_the_hash_appends_and_refuses_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.yaml"
    alice = add_token(path, "alice", "operator")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text(path.read_text() + "# bob is the on-call admin\n")
    bob = add_token(path, "bob", "admin")
    text = path.read_text()
    assert alice not in text and bob not in text and token_sha256(alice) in text
    assert "# bob is the on-call admin" in text  # appended, comments kept
    assert [(e.name, e.role) for e in load_tokens_file(path)] == [("alice", "operator"),
                                                                   ("bob", "admin")]
    before = path.read_text()
    for name, role, message in (("alice", "viewer", "exists already"),
                                ("x", "root", "unknown role"),
                                ("default", "viewer", "bad token name"),
                                ("a/b", "viewer", "bad token name")):
        with pytest.raises(TokenFileError, match=message):
            add_token(path, name, role)
    assert path.read_text() == before
    # a file in flow style cannot take an appended entry: it is rewritten whole
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"tokens: [{{name: a, role: viewer, sha256: {HASH}}}]\n")
    c = add_token(flow, "c", "viewer")
    assert [e.name for e in load_tokens_file(flow)] == ["a", "c"]
    assert TokenRegistry(None, flow).authenticate(c).name == "c"  # type: ignore[union-attr]
    # removing one keeps the others, the file 0600; an unknown name changes nothing
    assert remove_token(path, "alice").role == "operator"
    assert [e.name for e in load_tokens_file(path)] == ["bob"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    kept = path.read_text()
    with pytest.raises(TokenFileError, match="no token named 'carol' \\(names: bob\\)"):
        remove_token(path, "carol")
    assert path.read_text() == kept


def test_registry_default_token_is_admin_and_a_changed_file_is_reread(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "tokens.yaml"
    with pytest.raises(TokenFileError, match="does not exist"):
        TokenRegistry("old", path, required=True)
    reg = TokenRegistry("old", path)  # optional file, absent: the default token alone
    entry = reg.authenticate("old")
    assert entry is not None and (entry.name, entry.role) == (DEFAULT_TOKEN_NAME, "admin")
    assert reg.authenticate("olD") is None and reg.authenticate("") is None
    alice = add_token(path, "alice", "viewer")
    wait_until(lambda: reg.authenticate(alice) is not None, timeout_s=5.0,
               message="the new token accepted")
    assert reg.authenticate(alice).role == "viewer"  # type: ignore[union-attr]
    # a broken edit keeps the tokens the registry had, and says so in the log
    path.write_text("tokens: [\n")
    wait_until(lambda: reg.authenticate(alice) is not None and any(
        "cannot be used" in r.getMessage() for r in caplog.records), timeout_s=5.0,
        message="the broken file seen")
    path.write_text(f"tokens:\n  - {{name: alice, role: viewer, sha256: {token_sha256(alice)}}}\n")
    path.chmod(0o664)
    wait_until(lambda: reg.authenticate(alice) is not None and any(
        "writable by group or others" in r.getMessage() for r in caplog.records), timeout_s=5.0,
               message="a warning for a file others may write")
    path.unlink()  # removing the file revokes its tokens
    wait_until(lambda: reg.authenticate(alice) is None, timeout_s=5.0,
               message="the token revoked")
    assert reg.authenticate("old") is not None
    assert parse_tokens("") == []


def test_write_rate_limiter_is_a_token_bucket_per_name() -> None:
    now = [100.0]
    limiter = WriteRateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a") == pytest.approx(0.5)
    assert limiter.take("b") == 0.0  # another token has its own bucket
    now[0] += 0.5
    assert limiter.take("a") == 0.0 and limiter.take("a") == pytest.approx(0.5)
    now[0] += 100.0  # refills up to the burst, not beyond
    assert [limiter.take("a") for _ in range(4)][-1] > 0
    assert all(WriteRateLimiter(0.0, 1).take("a") == 0.0 for _ in range(1000))


def test_tls_settings_go_in_pairs() -> None:
    with pytest.raises(SettingsError, match="tls_cert and tls_key go together"):
        load_settings(environ={}, flags={"api.tls_cert": "c.pem"})
    s = load_settings(environ={"CPN_API_TLS_CERT": "c.pem", "CPN_API_TLS_KEY": "k.pem"})
    assert (s.api.tls_cert, s.api.tls_key) == ("c.pem", "k.pem")
