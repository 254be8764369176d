"""Bandwidth admission control: reservations never exceed capacity, are released exactly,
follow reroutes; a rejected intent changes nothing (checked against a brute-force oracle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import networkx as nx
import pytest
from fakeoftable import apply_and_confirm, remove_or_flip_link, running
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import InsufficientBandwidth
from controller.main import build_controller
from controller.network.core import ControllerCore
from controller.settings import Settings
from controller.topology.files import topology_file
from controller.topology.loader import topology_from_dict
from controller.topology.model import IntentSpec, Topology

EPS = 1e-6


def reserved(core: ControllerCore) -> dict[int, float]:
    """Directed pathcore link id -> the bandwidth the routed intents hold on it: on their
    path, and on the links their detours add (backup reservations, one per intent and
    link)."""
    g = core.state.graph
    out: dict[int, float] = {}
    for i in core.intents():
        if i.links is not None:
            for lid in i.links:
                out[lid] = out.get(lid, 0.0) + i.spec.min_bandwidth_mbps
        for b in i.backup_reservations():
            lid = core.state.link_ids[b["index"]]
            if g.link(lid).u != b["link"].split("-")[0]:
                back = g.reverse_link(lid)
                assert back is not None
                lid = back
            out[lid] = out.get(lid, 0.0) + b["bandwidth_mbps"]
    return out


def check_books(core: ControllerCore) -> None:
    """Sums within capacity, and the graph's residual is exactly capacity minus the sum."""
    g = core.state.graph
    held = reserved(core)
    for lid in range(g.link_count):
        lk = g.link(lid)
        cap = lk.bandwidth_mbps
        assert held.get(lid, 0.0) <= cap + EPS, (lk, held)
        assert lk.residual_mbps == pytest.approx(cap - held.get(lid, 0.0), abs=EPS)


def snapshot(core: ControllerCore) -> Any:
    g = core.state.graph
    return ([(i.id, i.state, i.path, i.reason, len(i.history)) for i in core.intents()],
            [g.link(lid).residual_mbps for lid in range(g.link_count)])


def oracle_fits(core: ControllerCore, spec: IntentSpec) -> bool:
    """Brute force: a simple path of usable links within the bound with the bandwidth
    left beside the current reservations."""
    st_ = core.state
    g = st_.graph
    held = reserved(core)
    a, b = st_.hosts[spec.src].node, st_.hosts[spec.dst].node
    mg = nx.MultiDiGraph()
    for lid in range(g.link_count):
        lk = g.link(lid)
        if lk.up and lk.bandwidth_mbps - held.get(lid, 0.0) \
                >= spec.min_bandwidth_mbps - EPS:
            mg.add_edge(lk.u, lk.v, latency=lk.latency_ms)
    if a not in mg or b not in mg:
        return False
    for path in nx.all_simple_edge_paths(mg, a, b):
        if sum(mg.edges[e]["latency"] for e in path) <= spec.max_latency_ms + EPS:
            return True
    return False


def test_diamond_admits_then_rejects_with_the_bottleneck_and_releases_exactly(
        diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    big = IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=900, name="big")
    intent, change = core.add_intent(big, 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    assert intent.path == ("s1", "s2", "s4") and intent.state == "installed"
    check_books(core)
    before = snapshot(core)
    with pytest.raises(InsufficientBandwidth) as exc:
        core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=200,
                                   priority=120), 3.0, admit=True)
    assert exc.value.bottleneck is not None
    assert exc.value.bottleneck["residual_mbps"] == pytest.approx(100.0)
    assert exc.value.bottleneck["link"] in ("s1-s2", "s2-s4")
    assert "bottleneck link" in str(exc.value) and "100 of 1000 Mbps" in str(exc.value)
    assert snapshot(core) == before
    # a looser bound fits on the other branch
    loose, change = core.add_intent(
        IntentSpec("h1", "h2", max_latency_ms=15, min_bandwidth_mbps=200, priority=110), 4.0,
        admit=True)
    apply_and_confirm(core, net, change, 4.0)
    assert loose.path == ("s1", "s3", "s4")
    check_books(core)
    # the reverse direction is a separate reservation
    back, change = core.add_intent(
        IntentSpec("h2", "h1", max_latency_ms=3, min_bandwidth_mbps=900, priority=90), 5.0,
        admit=True)
    apply_and_confirm(core, net, change, 5.0)
    assert back.path == ("s4", "s2", "s1")
    check_books(core)
    # release: deleting every reserved intent gives every link its full capacity back
    for iid in (intent.id, loose.id, back.id):
        apply_and_confirm(core, net, core.remove_intent(iid, 6.0), 6.0)
    g = core.state.graph
    for lid in range(g.link_count):
        assert g.link(lid).residual_mbps == g.link(lid).bandwidth_mbps


def test_higher_priority_newcomer_does_not_preempt_an_admitted_intent(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    low, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3,
                                             min_bandwidth_mbps=600, priority=10), 2.0,
                                  admit=True)
    apply_and_confirm(core, net, change, 2.0)
    before = snapshot(core)
    with pytest.raises(InsufficientBandwidth):
        core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=600,
                                   priority=500, name="vip"), 3.0, admit=True)
    assert snapshot(core) == before and low.path == ("s1", "s2", "s4")


def test_a_newcomer_that_would_displace_a_file_intent_is_rejected(diamond: Topology) -> None:
    core = ControllerCore(diamond)
    before = snapshot(core)
    with pytest.raises(InsufficientBandwidth, match=r"displace intents \[1\]"):
        # same traffic and priority as the file's intent 1 ("fast"), which holds flows
        core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=10),
                        2.0, admit=True)
    assert snapshot(core) == before


def test_without_admit_bandwidth_shortage_is_kept_as_infeasible(diamond: Topology) -> None:
    core, _ = running(diamond, load_intents=False)
    intent, _ = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3,
                                           min_bandwidth_mbps=5000), 2.0)
    assert intent.state == "infeasible" and "residual bandwidth" in intent.reason


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Topology, list[tuple[Any, ...]]]:
    n = draw(st.integers(3, 6))
    links = [(draw(st.integers(0, v - 1)), v) for v in range(1, n)]
    for _ in range(draw(st.integers(0, 5))):
        a, b = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        if a != b:
            links.append((a, b))
    doc = {"name": "random", "nodes": [{"name": f"s{i}"} for i in range(n)],
           "links": [{"a": f"s{a}", "b": f"s{b}",
                      "latency_ms": draw(st.integers(0, 8)) / 2,
                      "cost": draw(st.integers(0, 8)) / 2,
                      "bandwidth_mbps": draw(st.sampled_from([100, 250, 1000]))}
                     for a, b in links]}
    op = st.one_of(
        st.tuples(st.just("add"), st.integers(0, n - 1), st.integers(0, n - 1),
                  st.integers(1, 40).map(lambda q: q / 2),
                  st.sampled_from([10.0, 40.0, 90.0, 150.0, 600.0]), st.integers(0, 3)),
        st.tuples(st.just("remove"), st.integers(0, 30)),
        st.tuples(st.just("link"), st.integers(0, len(links) - 1)),
    )
    return topology_from_dict(doc), draw(st.lists(op, min_size=1, max_size=25))


@given(scenarios())
@settings(max_examples=120, deadline=None)
def test_reservations_never_exceed_capacity_and_rejections_change_nothing(
        case: tuple[Topology, list[tuple[Any, ...]]]) -> None:
    t, ops = case
    core, net = running(t, load_intents=False)
    now = 2.0
    for op in ops:
        now += 1.0
        changes = []
        if op[0] == "add" and op[1] != op[2]:
            spec = IntentSpec(f"h-s{op[1]}", f"h-s{op[2]}", max_latency_ms=op[3],
                              min_bandwidth_mbps=op[4], priority=100 + op[5])
            routed_before = {i.id for i in core.intents() if i.path is not None}
            fits = oracle_fits(core, spec)
            before = snapshot(core)
            try:
                intent, change = core.add_intent(spec, now, admit=True)
            except InsufficientBandwidth as exc:
                assert snapshot(core) == before
                if exc.bottleneck is not None:  # rejected for want of residual: oracle agrees
                    assert not fits, (spec, exc)
            else:
                changes.append(change)
                if intent.path is not None:
                    # admitted: nobody lost their path for it
                    assert routed_before <= {i.id for i in core.intents()
                                             if i.path is not None}
                else:  # admitted as infeasible only when the latency bound itself fails
                    assert "residual" not in intent.reason, intent.reason
        elif op[0] in ("remove", "link"):
            changes.extend(remove_or_flip_link(core, net, t, op, now))
        for c in changes:
            apply_and_confirm(core, net, c, now)
        check_books(core)
    for i in core.intents():
        apply_and_confirm(core, net, core.remove_intent(i.id, now), now)
    g = core.state.graph
    assert all(g.link(lid).residual_mbps == g.link(lid).bandwidth_mbps
               for lid in range(g.link_count))


# -- protected intents: detours reserve the bandwidth too -------------------------------------

def backup_names(intent: Any) -> set[str]:
    return {b["link"] for b in intent.backup_reservations()}


def residual(core: ControllerCore, a: str, b: str) -> float:
    """Residual of the directed link a -> b (the diamond has one link per pair)."""
    g = core.state.graph
    return next(lk.residual_mbps for lk in g.links() if (lk.u, lk.v) == (a, b))


def test_detours_reserve_on_the_links_they_add_and_release_on_delete(
        diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15,
                                                min_bandwidth_mbps=300, protection=True),
                                     2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    assert intent.path == ("s1", "s3", "s4") and intent.protection_note == ""
    # around s1-s3: s1-s2-s4; around s3-s4: back to s1 (s3-s1), then s1-s2-s4
    assert backup_names(intent) == {"s1-s2", "s2-s4", "s3-s1"}
    for a, b in (("s1", "s3"), ("s3", "s4"), ("s1", "s2"), ("s2", "s4"), ("s3", "s1")):
        assert residual(core, a, b) == 700, (a, b)
    for a, b in (("s2", "s1"), ("s4", "s2"), ("s4", "s3")):
        assert residual(core, a, b) == 1000, (a, b)  # nothing uses them
    # one backup reservation per link although both detours cross s1-s2 and s2-s4
    assert core.router.table.backup_mbps == {
        lk.id: 300.0 for lk in core.state.graph.links()
        if (lk.u, lk.v) in (("s1", "s2"), ("s2", "s4"), ("s3", "s1"))}
    apply_and_confirm(core, net, core.remove_intent(intent.id, 3.0), 3.0)
    assert all(lk.residual_mbps == lk.bandwidth_mbps for lk in core.state.graph.links())
    assert core.router.table.backup_mbps == {}


def test_a_protected_intent_whose_detour_lacks_bandwidth_is_refused_naming_the_link(
        diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    fast, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3,
                                              min_bandwidth_mbps=800), 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    before = snapshot(core)
    spec = IntentSpec("h1", "h2", max_latency_ms=15, min_bandwidth_mbps=300,
                      protection=True, priority=90)
    with pytest.raises(InsufficientBandwidth) as exc:
        core.add_intent(spec, 3.0, admit=True)
    # its path s1-s3-s4 fits; the detour around s1-s3 needs s1-s2, where 200 are left
    assert exc.value.bottleneck == {"link": "s1-s2", "index": 0, "residual_mbps": 200.0,
                                    "bandwidth_mbps": 1000.0, "detour_around": "s1-s3"}
    assert "detour around s1-s3 crosses s1-s2 (link 0), which has 200 of 1000 Mbps left" \
        in str(exc.value)
    assert snapshot(core) == before
    with pytest.raises(InsufficientBandwidth):
        core.validate_intent(spec, 3.0, admit=True)
    assert snapshot(core) == before
    # not admission-controlled (a file intent): kept, unprotected where the bandwidth lacks,
    # and it says so; no detour is installed that would carry unreserved traffic
    kept, change = core.add_intent(spec, 4.0)
    apply_and_confirm(core, net, change, 4.0)
    assert kept.path == ("s1", "s3", "s4") and kept.backup_reservations() == []
    assert "no detour around s1-s3 with 300 Mbps: link s1-s2 has 200 of 1000 Mbps left" \
        in kept.protection_note
    assert "no detour around s3-s4 with 300 Mbps" in kept.protection_note
    assert kept.id not in core.router.intent_groups
    check_books(core)
    # the unprotected intent goes: the detours get their bandwidth on the next pass
    apply_and_confirm(core, net, core.remove_intent(fast.id, 5.0), 5.0)
    assert kept.protection_note == "" and backup_names(kept) == {"s1-s2", "s2-s4", "s3-s1"}
    assert set(core.router.intent_groups[kept.id]) == {core.wiring.node_dpid["s1"],
                                                       core.wiring.node_dpid["s3"]}


def test_a_newcomer_may_not_take_an_admitted_intents_detour_bandwidth(
        diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    prot, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15,
                                              min_bandwidth_mbps=300, protection=True,
                                              priority=10), 2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)
    before = snapshot(core)
    # 800 on s1-s2-s4 would fit beside the primary s1-s3-s4, not beside its backup
    with pytest.raises(InsufficientBandwidth) as exc:
        core.add_intent(IntentSpec("h1", "h2", max_latency_ms=3, min_bandwidth_mbps=800,
                                   priority=500), 3.0, admit=True)
    assert exc.value.bottleneck is not None
    assert exc.value.bottleneck["residual_mbps"] == 700
    assert snapshot(core) == before and backup_names(prot) == {"s1-s2", "s2-s4", "s3-s1"}


def test_a_reroute_recomputes_the_detour_reservations(diamond: Topology) -> None:
    core, net = running(diamond, load_intents=False)
    intent, change = core.add_intent(IntentSpec("h1", "h2", max_latency_ms=15,
                                                min_bandwidth_mbps=300, protection=True),
                                     2.0, admit=True)
    apply_and_confirm(core, net, change, 2.0)

    def cut(a: str, b: str, up: bool, now: float) -> None:
        i = next(k for k, lk in enumerate(diamond.links) if {lk.a, lk.b} == {a, b})
        net.set_link(i, up)
        for node, port in zip((diamond.links[i].a, diamond.links[i].b),
                              core.wiring.link_ports[i], strict=True):
            apply_and_confirm(core, net, core.port_status(core.wiring.node_dpid[node], port,
                                                          up, now), now)

    cut("s3", "s4", False, 3.0)  # the path moves to s1-s2-s4; no detour is left
    assert intent.path == ("s1", "s2", "s4") and intent.backup_reservations() == []
    assert "no detour around s1-s2" in intent.protection_note
    check_books(core)
    assert residual(core, "s3", "s1") == 1000 and residual(core, "s1", "s3") == 1000
    cut("s3", "s4", True, 4.0)  # back on the cheap path, with its detours
    assert intent.path == ("s1", "s3", "s4")
    assert backup_names(intent) == {"s1-s2", "s2-s4", "s3-s1"}
    check_books(core)
    cut("s1", "s2", False, 5.0)  # the detours' link: the path stays, unprotected
    assert intent.path == ("s1", "s3", "s4") and intent.backup_reservations() == []
    assert "no detour around s1-s3" in intent.protection_note
    assert core.router.intent_groups.get(intent.id) is None
    check_books(core)


def test_the_api_shows_detour_reservations(tmp_path: Path) -> None:
    """GET /links (per direction: all reservations and the backup part), the intent's
    detail (backup_reservations) and the 409 of a detour short of bandwidth."""
    token = tmp_path / "token"
    token.write_text("t0123456789\n")
    settings = Settings.model_validate({
        "topology": {"file": str(topology_file("diamond"))},
        "api": {"host": "127.0.0.1", "port": 0, "token_file": str(token)},
        "state": {"dir": str(tmp_path / "state")}})
    handle = build_controller(settings)
    try:
        with httpx.Client(base_url=f"{handle.url}/api/v1", timeout=10.0,
                          headers={"Authorization": "Bearer t0123456789"}) as c:
            r = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 15,
                                         "min_bandwidth_mbps": 300, "protection": True,
                                         "priority": 300})
            assert r.status_code == 201, r.text
            iid = r.json()["id"]
            shown = c.get(f"/intents/{iid}").json()
            assert sorted(shown["backup_reservations"], key=lambda b: b["link"]) == [
                {"link": "s1-s2", "index": 0, "bandwidth_mbps": 300.0},
                {"link": "s2-s4", "index": 1, "bandwidth_mbps": 300.0},
                {"link": "s3-s1", "index": 2, "bandwidth_mbps": 300.0}]
            links = {(lk["a"], lk["b"]): lk for lk in c.get("/links").json()["links"]}
            s1s2, s1s3, s3s4 = links["s1", "s2"], links["s1", "s3"], links["s3", "s4"]
            assert (s1s2["reserved_mbps"], s1s2["backup_a_to_b_mbps"]) == (300, 300)
            assert (s1s2["reserved_b_to_a_mbps"], s1s2["backup_b_to_a_mbps"]) == (0, 0)
            # s1-s3: the primary one way (not backup), the detour back from s3 the other
            assert (s1s3["reserved_mbps"], s1s3["backup_a_to_b_mbps"]) == (300, 0)
            assert (s1s3["reserved_b_to_a_mbps"], s1s3["backup_b_to_a_mbps"]) == (300, 300)
            assert (s3s4["reserved_mbps"], s3s4["backup_a_to_b_mbps"]) == (300, 0)
            r = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 3,
                                         "min_bandwidth_mbps": 600, "priority": 400})
            assert r.status_code == 201, r.text
            r = c.post("/intents", json={"src": "h1", "dst": "h2", "max_latency_ms": 15,
                                         "min_bandwidth_mbps": 200, "protection": True,
                                         "priority": 200})
            assert r.status_code == 409, r.text
            body = r.json()
            assert body["error"] == "insufficient_bandwidth"
            assert body["bottleneck"] == {"link": "s1-s2", "index": 0, "residual_mbps": 100.0,
                                          "bandwidth_mbps": 1000.0, "detour_around": "s1-s3"}
            assert c.delete(f"/intents/{iid}").status_code == 200
            links = {(lk["a"], lk["b"]): lk for lk in c.get("/links").json()["links"]}
            assert links["s1", "s2"]["backup_a_to_b_mbps"] == 0
            assert links["s1", "s3"]["reserved_b_to_a_mbps"] == 0
    finally:
        handle.stop()
