"""Intents over the API: auth, validation, nothing half-applied, persistence, concurrency."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from controller.store import STORE_FILE_NAME, SqliteStore, StoreError

from .conftest import TOKEN, Api, MakeApi, assert_error

H1_H2 = {"src": "h1", "dst": "h2", "max_latency_ms": 50, "priority": 200}


def _stored_ids(api: Api) -> list[int]:
    return [i for i, _ in api.handle.store.intents()]


def test_writes_need_the_token(diamond: Api) -> None:
    with diamond.client(token=None) as anon, diamond.client(token="wrong") as bad:
        for c in (anon, bad):
            r = c.post("/intents", json=H1_H2)
            assert_error(r, 401, "unauthorized")
            assert r.headers["www-authenticate"] == "Bearer"
            assert_error(c.delete("/intents/1"), 401, "unauthorized")
        assert anon.get("/intents").status_code == 200  # reads open on loopback
    assert len(diamond.service.intents()) == 2 and _stored_ids(diamond) == []


def test_reads_can_require_the_token(make_api: MakeApi) -> None:
    api = make_api("diamond", read_open=False)
    with api.client(token=None) as anon, api.client() as c:
        assert_error(anon.get("/health"), 401)
        assert_error(anon.get("/paths", params={"src": "h1", "dst": "h2"}), 401)
        assert anon.get(f"{api.url}/metrics").status_code == 401
        assert c.get("/health").status_code == 200


def test_add_show_delete(diamond: Api) -> None:
    with diamond.client() as c:
        r = c.post("/intents", json={**H1_H2, "name": "gold",
                                     "match": {"ip_proto": 6, "dst_port": 443}})
        assert r.status_code == 201, r.text
        body = r.json()
        # ids continue after the file's intents 1 and 2
        assert body["id"] == 3 and body["source"] == "api" and body["name"] == "gold"
        # no switch is connected: the route is computed, not confirmed by barriers
        assert body["state"] == "pending" and body["path"] == ["s1", "s3", "s4"]
        assert body["match"] == {"ip_proto": 6, "dst_port": 443}
        assert _stored_ids(diamond) == [3]
        show = c.get("/intents/3").json()
        assert show["history"][0]["new_path"] == ["s1", "s3", "s4"]
        flows = show["flows"]
        assert {f["switch"] for f in flows} == {"s1", "s3", "s4"}
        assert not any(f["installed"] for f in flows)
        # its own ingress flow at s1 pushes the label of its tunnel's segment at s3, which
        # swaps it for the label of the segment at s4, which pops it
        label = body["mpls_label"]
        assert isinstance(label, int) and 16 <= label < 1 << 20
        at_s3, at_s4 = body["mpls_labels"]
        assert at_s3 == label and 16 <= at_s4 < 1 << 20 and at_s4 != label
        (ingress,) = [f for f in flows if f["owner"] == "intent:3"]
        assert ingress["switch"] == "s1" and ingress["match"].get("tcp_dst") == 443
        assert {"type": "set_field", "value": ["mpls_label", label]} in ingress["instructions"]
        (seg3,) = [f for f in flows if f["owner"] == f"tunnel:{at_s3}"]
        (seg4,) = [f for f in flows if f["owner"] == f"tunnel:{at_s4}"]
        assert (seg3["switch"], seg4["switch"]) == ("s3", "s4")
        assert seg3["match"] == {"eth_type": 0x8847, "mpls_label": at_s3}
        assert {"type": "set_field", "value": ["mpls_label", at_s4]} in seg3["instructions"]
        assert seg4["match"] == {"eth_type": 0x8847, "mpls_label": at_s4}
        assert [i["id"] for i in c.get("/intents").json()] == [1, 2, 3]
        d = c.delete("/intents/3")
        assert d.status_code == 200 and d.json() == {"id": 3, "deleted": True,
                                                     "flows_removed": 0}
        assert_error(c.get("/intents/3"), 404, "not_found")
        assert_error(c.delete("/intents/3"), 404, "not_found")
        assert _stored_ids(diamond) == []
        # ids are not reused after a delete
        assert c.post("/intents", json=H1_H2).json()["id"] == 4


def test_infeasible_intent_is_accepted_with_the_reason(diamond: Api) -> None:
    with diamond.client() as c:
        r = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 1,
                                     "priority": 300})
        assert r.status_code == 201
        body = r.json()
        assert body["state"] == "infeasible" and body["path"] is None
        assert "max_latency_ms 1.0" in body["reason"] and "2.00 ms" in body["reason"]


@pytest.mark.parametrize(("body", "status", "code"), [
    ({**H1_H2, "colour": "red"}, 422, "invalid_request"),
    ({**H1_H2, "match": {"ip_proto": 6, "vlan": 3}}, 422, "invalid_request"),
    ({"src": "h1", "dst": "h2"}, 422, "invalid_request"),
    ({**H1_H2, "max_latency_ms": 0}, 422, "invalid_request"),
    ({**H1_H2, "max_latency_ms": "fast"}, 422, "invalid_request"),
    ({**H1_H2, "priority": 70000}, 422, "invalid_request"),
    ({**H1_H2, "src": "bad name!"}, 422, "invalid_request"),
    ({**H1_H2, "dst": "h9"}, 404, "not_found"),
    ({**H1_H2, "dst": "h1"}, 409, "conflict"),  # no schema can say src != dst
    ({**H1_H2, "match": {"dst_port": 80}}, 400, "bad_topology"),
])
def test_bad_intents_change_nothing(diamond: Api, body: dict, status: int, code: str) -> None:
    before = [i.as_dict() for i in diamond.service.intents()]
    events_before = len(diamond.service.events())
    with diamond.client() as c:
        assert_error(c.post("/intents", json=body), status, code)
    assert [i.as_dict() for i in diamond.service.intents()] == before
    assert len(diamond.service.events()) == events_before
    assert _stored_ids(diamond) == []


def test_bad_json_and_bad_ids(diamond: Api) -> None:
    with diamond.client() as c:
        r = c.post("/intents", content=b"{not json", headers={"content-type":
                                                              "application/json"})
        assert_error(r, 422, "invalid_request")
        assert_error(c.get("/intents/abc"), 404, "not_found")  # ids are integers
        assert_error(c.get("/intents/999"), 404, "not_found")
        body = assert_error(c.delete("/intents/1"), 409, "conflict")
        assert "topology file" in body["detail"]
    assert len(diamond.service.intents()) == 2


def test_store_failure_changes_nothing(diamond: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise StoreError("disk full (simulated)")

    monkeypatch.setattr(diamond.handle.store, "add_intent", broken)
    before = [i.as_dict() for i in diamond.service.intents()]
    with diamond.client() as c:
        body = assert_error(c.post("/intents", json=H1_H2), 500, "store")
        assert "disk full" in body["detail"]
    assert [i.as_dict() for i in diamond.service.intents()] == before
    assert _stored_ids(diamond) == []


def test_intents_survive_a_restart_with_their_ids(make_api: MakeApi, tmp_path: Path) -> None:
    state = tmp_path / "persist"
    api = make_api("national", state_dir=state)
    hosts = [h.name for h in api.service.topology.hosts]
    n_file = len(api.service.topology.intents)
    with api.client() as c:
        made = [c.post("/intents", json={"src": hosts[0], "dst": hosts[i],
                                         "max_latency_ms": 40, "priority": 300 + i}).json()
                for i in range(1, 5)]
        c.delete(f"/intents/{made[1]['id']}")
    api.stop()
    kept = [m for m in made if m["id"] != made[1]["id"]]
    assert [m["id"] for m in made] == list(range(n_file + 1, n_file + 5))

    again = make_api("national", state_dir=state)
    with again.client() as c:
        listed = {i["id"]: i for i in c.get("/intents").json() if i["source"] == "api"}
        assert sorted(listed) == [m["id"] for m in kept]
        for m in kept:
            got = listed[m["id"]]
            assert (got["src"], got["dst"], got["priority"], got["path"]) == \
                (m["src"], m["dst"], m["priority"], m["path"])
        # the deleted id stays retired
        assert c.post("/intents", json={"src": hosts[0], "dst": hosts[1],
                                        "max_latency_ms": 40}).json()["id"] == n_file + 5
        # a reloaded intent is an API intent again: it can be deleted
        assert c.delete(f"/intents/{kept[0]['id']}").status_code == 200


def test_stored_id_taken_by_the_file_is_renumbered(make_api: MakeApi, tmp_path: Path) -> None:
    from controller.topology.model import IntentSpec
    state = tmp_path / "renumber"
    state.mkdir()
    store = SqliteStore(state / STORE_FILE_NAME)
    store.add_intent(1, IntentSpec("h2", "h1", 30.0, name="old-one", priority=500))
    store.close()
    api = make_api("diamond", state_dir=state)
    by_name = {i.name: i for i in api.service.intents()}
    assert by_name["fast"].id == 1  # the file keeps its id
    assert by_name["old-one"].id == 3 and _stored_ids(api) == [3]


def test_concurrent_posts_all_stored_without_duplicates(national: Api) -> None:
    hosts = [h.name for h in national.service.topology.hosts]
    results: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        with national.client() as c:
            for j in range(5):
                r = c.post("/intents", json={"src": hosts[w], "dst": hosts[-1 - j],
                                             "max_latency_ms": 60, "priority": 1000 + j})
                with lock:
                    (results.append(r.json()["id"]) if r.status_code == 201
                     else errors.append(r.text))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(results) == 40 and len(set(results)) == 40
    assert sorted(_stored_ids(national)) == sorted(results)
    core_ids = {i.id for i in national.service.intents()}
    assert set(results) <= core_ids


def test_generated_token_file_is_private_and_reused(make_api: MakeApi, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CPN_API_TOKEN", raising=False)
    state = tmp_path / "gen"
    api = make_api("diamond", state_dir=state, token_file_=None)
    path = state / "api-token"
    token = path.read_text().strip()
    assert len(token) >= 32 and token != TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with api.client(token=token) as c:
        assert c.post("/intents", json=H1_H2).status_code == 201
    with api.client() as c:  # the fixture's token is not this server's
        assert_error(c.post("/intents", json=H1_H2), 401)
    api.stop()
    make_api("diamond", state_dir=state, token_file_=None)
    assert path.read_text().strip() == token


def test_token_from_environment(make_api: MakeApi, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CPN_API_TOKEN", "from-the-env")
    api = make_api("diamond", state_dir=tmp_path / "env", token_file_=None)
    assert not (tmp_path / "env" / "api-token").exists()
    with api.client(token="from-the-env") as c:
        assert c.post("/intents", json=H1_H2).status_code == 201


def test_a_batch_is_added_routed_and_stored_whole(diamond: Api) -> None:
    batch = {"intents": [{**H1_H2, "name": f"b{i}",
                          "match": {"ip_proto": 6, "dst_port": 1000 + i}} for i in range(5)]}
    with diamond.client() as c:
        r = c.post("/intents/batch", json=batch)
        assert r.status_code == 201, r.text
        added = r.json()
        assert [i["name"] for i in added] == [f"b{i}" for i in range(5)]
        ids = [i["id"] for i in added]
        assert ids == list(range(ids[0], ids[0] + 5))
        # no switch is connected: routed, not confirmed by barriers
        assert all(i["state"] == "pending" and i["path"] == ["s1", "s3", "s4"]
                   and i["source"] == "api" for i in added)
        assert _stored_ids(diamond) == ids
        before = [i.as_dict() for i in diamond.service.intents()]
        bad = {"intents": [H1_H2, {**H1_H2, "dst": "nowhere"}]}
        assert_error(c.post("/intents/batch", json=bad), 404, "not_found")
        assert_error(c.post("/intents/batch", json={"intents": []}), 422)
    assert [i.as_dict() for i in diamond.service.intents()] == before  # all or nothing
    assert _stored_ids(diamond) == ids


def test_a_batch_the_store_refuses_changes_nothing(diamond: Api,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_a: object, **_k: object) -> None:
        raise StoreError("disk full (simulated)")

    monkeypatch.setattr(diamond.handle.store, "add_intents", broken)
    before = [i.as_dict() for i in diamond.service.intents()]
    with diamond.client() as c:
        assert_error(c.post("/intents/batch", json={"intents": [H1_H2, H1_H2]}), 500, "store")
    assert [i.as_dict() for i in diamond.service.intents()] == before
    assert _stored_ids(diamond) == []
