"""The Mininet lab on real OVS (userspace datapath here), standalone switches.

Until the controller exists the lab's own tests use tree topologies (no loop: learning switches
need no spanning tree); the looped small files are exercised through ``cpn-lab check`` with RSTP
in test_lab_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from harness import REPO, free_port

from controller.errors import LabError
from controller.lab.build import ControllerAddress
from controller.lab.cleanup import (
    LINK_GROUP_BASE,
    LINK_GROUP_STRIDE,
    OWNER_KEY,
    cleanup_stale,
    ip_links,
)
from controller.lab.ovs import ovsdb_list, run_command
from controller.topology.files import topology_file
from controller.topology.loader import load_topology, topology_from_dict
from controller.topology.model import Topology


def tree(depth: int, fanout: int) -> Topology:
    """A tree of switches t1.. (breadth first), one derived host per switch."""
    nodes = [{"name": "t1"}]
    links = []
    frontier = ["t1"]
    for _ in range(depth):
        nxt = []
        for parent in frontier:
            for _ in range(fanout):
                name = f"t{len(nodes) + 1}"
                nodes.append({"name": name})
                links.append({"a": parent, "b": name, "latency_ms": 1.0})
                nxt.append(name)
        frontier = nxt
    return topology_from_dict({"name": f"tree-{depth}-{fanout}", "nodes": nodes,
                               "links": links})


def test_tree_standalone_pings_all_pairs(make_lab) -> None:
    topo = tree(depth=2, fanout=2)  # 7 switches, 7 hosts
    lab = make_lab(topo)
    assert lab.standalone and not lab.rstp, "a tree needs no spanning tree"
    assert lab.bring_up is not None
    print(f"\ntree of 7 switches up in {lab.bring_up.total_s:.2f} s ({lab.bring_up})")
    matrix = lab.ping_matrix()
    assert len(matrix.results) == 7 * 6
    assert matrix.description.startswith("all 42 ordered pairs")
    assert matrix.failed == [], matrix.summary_table(lab.plan)
    assert matrix.sent == 42 and matrix.received == 42
    assert "0%" in matrix.summary_table(lab.plan).splitlines()[-1]


def test_file_built_network_has_dpids_ports_and_addresses(make_lab, tmp_path: Path) -> None:
    path = tmp_path / "lab-tree.yaml"
    path.write_text(textwrap.dedent("""\
        name: lab-tree
        nodes:
          - {name: core, dpid: "0x00000000cafe0001"}
          - {name: edge-west, dpid: 4660}
          - {name: edge-east, dpid: "0xabcdef"}
        links:
          - {a: core, b: edge-west, latency_ms: 2.0}
          - {a: core, b: edge-east, latency_ms: 3.0}
        hosts:
          - {name: web, node: edge-west, ip: 10.1.0.10, mac: "02:aa:00:00:00:10"}
          - {name: db, node: edge-east, ip: 10.1.0.20, mac: "02:aa:00:00:00:20"}
          - {name: ops, node: core}
        """))
    topo = load_topology(path)
    lab = make_lab(topo)
    expected = {"core": 0xCAFE0001, "edge-west": 4660, "edge-east": 0xABCDEF}
    for node in topo.nodes:
        assert node.dpid == expected[node.name]
        assert lab.bridge_dpid(node.name) == expected[node.name]
        show = run_command(["ovs-ofctl", "-O", "OpenFlow13", "show", lab.plan.switch(node.name)])
        assert f"dpid:{expected[node.name]:016x}" in show.stdout
    # ports on the planned numbers (controller.topology.wiring): links in file order, then hosts
    for iface_list in lab.plan.switch_interfaces().values():
        for iface, port in iface_list:
            got = run_command(["ovs-vsctl", "get", "Interface", iface, "ofport"]).stdout.strip()
            assert got == str(port), iface
    # core: links on 1 and 2, ops on 3; each edge: the uplink on 1, its host on 2
    assert lab.plan.host_ports["ops"] == 3 and lab.plan.link_ports == [(1, 1), (2, 1)]
    assert lab.plan.host_ports["web"] == 2 and lab.plan.host_ports["db"] == 2
    for h in topo.hosts:
        node = lab.host(h.name)
        intf = f"{lab.plan.host(h.name)}-eth0"
        addr = node.cmd(f"ip -o -4 addr show dev {intf}")
        assert f"inet {h.ip}/{h.prefix_len} " in addr
        assert node.cmd(f"cat /sys/class/net/{intf}/address").strip() == h.mac
    assert topo.host("web").ip == "10.1.0.10" and topo.host("db").mac == "02:aa:00:00:00:20"
    lab.wait_until_reachable("web", "db", timeout_s=10)
    assert lab.ping("ops", "web").ok


def test_link_down_and_up_changes_reachability(make_lab) -> None:
    topo = topology_from_dict({
        "name": "pair", "nodes": [{"name": "a"}, {"name": "b"}],
        "links": [{"a": "a", "b": "b", "latency_ms": 1.0}],
    })
    lab = make_lab(topo)
    lab.wait_until_reachable("h-a", "h-b", timeout_s=10)
    assert lab.link_down("a", "b") == [0]
    for _ in range(3):  # the only link is down: nothing gets through
        r = lab.ping("h-a", "h-b", count=1, wait_s=1)
        assert r.sent == 1 and r.received == 0
    with pytest.raises(LabError, match="could not reach h-b"):
        lab.wait_until_reachable("h-a", "h-b", timeout_s=2)
    assert lab.link_up("a", "b") == [0]
    lab.wait_until_connected(timeout_s=10)
    took = lab.wait_until_reachable("h-a", "h-b", timeout_s=15)
    print(f"\nreachable again {took:.2f} s after link up")
    assert lab.ping("h-a", "h-b", count=2).ok


def test_restart_switch_keeps_dpid_and_forwarding(make_lab) -> None:
    lab = make_lab(tree(depth=1, fanout=2))  # t1 with t2, t3 below
    lab.wait_until_reachable("h-t2", "h-t3", timeout_s=10)
    lab.stop_switch("t1")
    bridges = {b["name"] for b in ovsdb_list("Bridge", ["name"])}
    assert lab.plan.switch("t1") not in bridges
    assert lab.ping("h-t2", "h-t3", count=1, wait_s=1).received == 0
    lab.start_switch("t1")
    assert lab.bridge_dpid("t1") == lab.topology.node("t1").dpid
    lab.wait_until_reachable("h-t2", "h-t3", timeout_s=15)
    waited = lab.restart_switch("t3")
    assert waited < 30
    lab.wait_until_reachable("h-t1", "h-t3", timeout_s=15)


def test_wait_until_flow_finds_and_times_out(make_lab) -> None:
    lab = make_lab(tree(depth=1, fanout=1))
    # standalone OVS shows its NORMAL (learning switch) flow in table 0
    assert any("actions=NORMAL" in ln for ln in lab.wait_until_flow("t1", "NORMAL"))
    t0 = time.monotonic()
    with pytest.raises(LabError, match="no flow matching 'nw_dst=192.0.2.1' on t1"):
        lab.wait_until_flow("t1", "nw_dst=192.0.2.1", timeout_s=0.5)
    assert time.monotonic() - t0 < 5


def test_secure_mode_without_controller_fails_clearly_and_cleans_up(make_lab) -> None:
    topo = tree(depth=1, fanout=1)
    ctl = ControllerAddress("127.0.0.1", free_port())
    lab = make_lab(topo, start=False, controllers=[ctl])
    with pytest.raises(LabError, match="not connected to a controller") as err:
        lab.start(timeout_s=3)
    assert str(ctl) in str(err.value)
    mine = [b for b in ovsdb_list("Bridge", ["name", "external_ids"])
            if OWNER_KEY in b["external_ids"]]
    assert mine == [], "a failed start must tear the network down"


def test_cleanup_stale_removes_what_a_killed_lab_left(lab_env, tmp_path: Path) -> None:
    cleanup_stale()
    script = textwrap.dedent("""\
        import sys, time
        from controller.lab.network import LabNetwork
        from controller.topology.loader import topology_from_dict
        topo = topology_from_dict({"name": "killed", "nodes": [{"name": "a"}, {"name": "b"}],
                                   "links": [{"a": "a", "b": "b", "latency_ms": 1}]})
        LabNetwork(topo).start()
        print("UP", flush=True)
        time.sleep(60)  # the lab stays up until the test SIGKILLs this process
        """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "UP"
        record = json.loads(Path(f"/run/cpn-lab/{proc.pid}.json").read_text())
        assert record["bridges"] == ["s1", "s2"]
        group = record["link_group"]
        assert {"s1-eth1", "s2-eth1"} <= set(record["interfaces"])
        assert set(ip_links(group)) == set(record["interfaces"]) | taps(lab_env, record)
    finally:
        proc.kill()  # SIGKILL: no finally clause of the lab runs
        proc.wait(timeout=10)
    left = {b["name"] for b in ovsdb_list("Bridge", ["name", "external_ids"])
            if b["external_ids"].get(OWNER_KEY) == str(proc.pid)}
    assert left == {"s1", "s2"}
    removed = cleanup_stale()
    assert "bridge s1" in removed and "bridge s2" in removed
    assert not Path(f"/run/cpn-lab/{proc.pid}.json").exists()
    assert not {b["name"] for b in ovsdb_list("Bridge", ["name"])} & {"s1", "s2"}
    links = run_command(["ip", "-o", "link", "show"]).stdout
    assert "s1-eth" not in links and "s2-eth" not in links
    assert ip_links(group) == []


def switch_ends(lab) -> set[str]:
    return {i for ifs in lab.plan.switch_interfaces().values() for i, _ in ifs}


def taps(lab_env, record: dict) -> set[str]:
    """The bridges' own interfaces the lab puts in its link group: on the userspace datapath,
    where they are tap devices."""
    return set(record["bridges"]) if lab_env.datapath == "user" else set()


def test_the_labs_veths_are_in_its_link_group_and_leave_with_it(lab_env, make_lab) -> None:
    lab = make_lab(tree(depth=1, fanout=2))  # 3 switches, 2 links, 3 hosts
    record = json.loads(Path(f"/run/cpn-lab/{os.getpid()}.json").read_text())
    assert lab.link_group is not None and record["link_group"] == lab.link_group
    ours = switch_ends(lab)
    assert len(ours) == 2 * 2 + 3
    assert set(ip_links(lab.link_group)) == ours | taps(lab_env, record), \
        "the switch ends (and taps), nothing else"
    lab.stop()
    assert ip_links(lab.link_group) == []
    assert not ours & set(ip_links())


def test_link_groups_someone_else_uses_are_neither_taken_nor_deleted(make_lab) -> None:
    """A device of someone else in the group the lab would take makes it take another; one
    that joins the lab's group while it runs keeps the lab from deleting the group (the lab's
    veths then go by name) and survives."""
    first_choice = LINK_GROUP_BASE + os.getpid()
    made = []

    def foreign_veth(name: str, group: int) -> None:
        res = run_command(["ip", "link", "add", name, "group", str(group), "type", "veth",
                           "peer", "name", f"{name}p"])
        assert res.returncode == 0, res.stderr
        made.append(name)

    try:
        foreign_veth("cpn-fgn0", first_choice)
        lab = make_lab(tree(depth=1, fanout=1))
        assert lab.link_group == first_choice + LINK_GROUP_STRIDE
        foreign_veth("cpn-fgn1", lab.link_group)
        lab.stop()
        assert ip_links(first_choice) == ["cpn-fgn0"]
        assert ip_links(lab.link_group) == ["cpn-fgn1"]
        assert not switch_ends(lab) & set(ip_links())
    finally:
        for name in made:
            run_command(["ip", "link", "del", name])


def test_refuses_to_take_over_foreign_bridges(make_lab) -> None:
    run_command(["ovs-vsctl", "--may-exist", "add-br", "s1", "--", "set", "bridge", "s1",
                 "datapath_type=netdev"])
    try:
        lab = make_lab(tree(depth=1, fanout=1), start=False)
        with pytest.raises(LabError, match="s1 exist and were not created by cpn-lab"):
            lab.start(timeout_s=10)
        assert "s1" in {b["name"] for b in ovsdb_list("Bridge", ["name"])}
    finally:
        run_command(["ovs-vsctl", "--if-exists", "del-br", "s1"])


def test_second_lab_in_one_process_is_refused_and_harms_nothing(make_lab) -> None:
    first = make_lab(tree(depth=1, fanout=1))
    second = make_lab(tree(depth=1, fanout=1), start=False)
    with pytest.raises(LabError, match="already running in this process"):
        second.start(timeout_s=10)
    second.stop()  # must not tear down the first lab's network
    assert lab_bridges() == {"s1", "s2"}
    first.wait_until_reachable("h-t1", "h-t2", timeout_s=10)


def lab_bridges() -> set[str]:
    return {b["name"] for b in ovsdb_list("Bridge", ["name", "external_ids"])
            if OWNER_KEY in b["external_ids"]}


def _rstp_states() -> dict[str, str]:
    return {row["name"]: (row["rstp_status"] or {}).get("rstp_port_state", "")
            for row in ovsdb_list("Port", ["name", "rstp_status"])}


def test_rstp_ring_reroutes_around_a_cut_link(make_lab) -> None:
    lab = make_lab(load_topology(topology_file("ring")))
    assert lab.rstp
    states = _rstp_states()
    links = lab.topology.links
    blocked = [i for i in range(len(links))
               if "Discarding" in {states[x] for x in lab.plan.link_interfaces(i)}]
    assert len(blocked) == 1, "RSTP blocks exactly one link of a ring"
    cut = next(i for i in range(len(links)) if i not in blocked)
    a, b = links[cut].a, links[cut].b
    src, dst = lab.topology.hosts_at(a)[0].name, lab.topology.hosts_at(b)[0].name
    lab.wait_until_reachable(src, dst, timeout_s=15)
    lab.link_down(a, b)
    took = lab.wait_until_reachable(src, dst, timeout_s=40)  # the long way round
    print(f"\nring: RSTP rerouted {src} -> {dst} {took:.2f} s after {a}-{b} went down")
    lab.wait_until_rstp_converged(timeout_s=40)
    states = _rstp_states()
    assert {states[x] for x in lab.plan.link_interfaces(blocked[0])} == {"Forwarding"}
    lab.link_up(a, b)
    lab.wait_until_rstp_converged(timeout_s=40)
    matrix = lab.ping_matrix()
    assert matrix.failed == [], matrix.summary_table(lab.plan)
