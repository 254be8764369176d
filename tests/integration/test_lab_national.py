"""The national backbone (about 50 switches) comes up on this machine; its time is printed.

Standalone switches with RSTP (the backbone is meshed). The time is reported, not asserted:
timing belongs to benchmarks, and this machine is shared.
"""

from __future__ import annotations

from controller.lab.ovs import ovsdb_list
from controller.topology.files import topology_file
from controller.topology.loader import load_topology

NATIONAL = topology_file("national")


def test_national_backbone_comes_up_and_forwards(make_lab) -> None:
    topo = load_topology(NATIONAL)
    assert len(topo.nodes) >= 40
    lab = make_lab(topo, timeout_s=240.0)
    up = lab.bring_up
    assert up is not None
    print(f"\nnational backbone: {len(topo.nodes)} switches, {len(topo.hosts)} hosts, "
          f"{len(topo.links)} links up in {up.total_s:.1f} s (build {up.build_s:.1f} s, "
          f"start {up.start_s:.1f} s, ready incl. RSTP {up.ready_s:.1f} s)")
    assert lab.rstp, "the backbone has loops: standalone mode needs RSTP"
    bridges = {b["name"]: b for b in ovsdb_list("Bridge", ["name", "datapath_id"])}
    for node in topo.nodes:
        assert int(bridges[lab.plan.switch(node.name)]["datapath_id"], 16) == node.dpid
    assert lab.rstp_pending() == []
    # A bounded sample shows forwarding across the backbone (the full matrix is cpn-lab's).
    hosts = [h.name for h in topo.hosts]
    pairs = [(hosts[i], hosts[(i + len(hosts) // 2) % len(hosts)]) for i in range(0, 52, 4)]
    lab.wait_until_reachable(*pairs[0], timeout_s=30)
    matrix = lab.ping_matrix(pairs)
    print(matrix.summary_table(lab.plan).splitlines()[-1])
    assert matrix.failed == [], matrix.summary_table(lab.plan)
