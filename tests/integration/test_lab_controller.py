"""The lab in controller mode (fail_mode=secure, OpenFlow 1.3) against a real os-ken app.

The project's controller comes in a later issue; a minimal learning-switch app, written here,
stands in for it so the secure-mode path of the lab (connection, waits on installed flows,
reconnection after a switch restart) is exercised now.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import free_port
from waiting import wait_until

from controller.lab.build import ControllerAddress
from controller.topology.loader import topology_from_dict

APP = textwrap.dedent('''\
    from os_ken.base import app_manager
    from os_ken.controller import ofp_event
    from os_ken.controller.handler import CONFIG_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
    from os_ken.lib.packet import ethernet, packet
    from os_ken.ofproto import ofproto_v1_3


    class LearningSwitch(app_manager.OSKenApp):
        OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.macs = {}

        @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
        def features(self, ev):
            dp = ev.msg.datapath
            p, o = dp.ofproto_parser, dp.ofproto
            to_ctl = [p.OFPActionOutput(o.OFPP_CONTROLLER, o.OFPCML_NO_BUFFER)]
            inst = [p.OFPInstructionActions(o.OFPIT_APPLY_ACTIONS, to_ctl)]
            dp.send_msg(p.OFPFlowMod(datapath=dp, priority=0, match=p.OFPMatch(),
                                     instructions=inst))

        @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
        def packet_in(self, ev):
            msg = ev.msg
            dp = msg.datapath
            p, o = dp.ofproto_parser, dp.ofproto
            in_port = msg.match["in_port"]
            eth = packet.Packet(msg.data).get_protocol(ethernet.ethernet)
            table = self.macs.setdefault(dp.id, {})
            table[eth.src] = in_port
            out = table.get(eth.dst, o.OFPP_FLOOD)
            actions = [p.OFPActionOutput(out)]
            if out != o.OFPP_FLOOD:
                inst = [p.OFPInstructionActions(o.OFPIT_APPLY_ACTIONS, actions)]
                dp.send_msg(p.OFPFlowMod(datapath=dp, priority=1, cookie=0xC0FFEE,
                                         match=p.OFPMatch(in_port=in_port, eth_dst=eth.dst),
                                         instructions=inst))
            dp.send_msg(p.OFPPacketOut(datapath=dp, buffer_id=o.OFP_NO_BUFFER,
                                       in_port=in_port, actions=actions, data=msg.data))
    ''')

RUN = textwrap.dedent('''\
    import sys
    from os_ken import cfg
    from os_ken.base.app_manager import AppManager
    import os_ken.controller.controller  # registers the ofp_* options (after app_manager)
    cfg.CONF(args=["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", sys.argv[1]],
             project="os_ken")
    AppManager.run_apps(["learning_switch"])
    ''')


@pytest.fixture
def os_ken_controller(tmp_path: Path) -> Iterator[ControllerAddress]:
    (tmp_path / "learning_switch.py").write_text(APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", RUN, str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        def listening() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"os-ken exited ({proc.poll()}) before listening on {port}: "
                            f"{proc.stdout.read() if proc.stdout else ''}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_until(listening, 20, f"os-ken listening on {port}", poll_s=0.1)
        yield ControllerAddress("127.0.0.1", port)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_secure_mode_with_os_ken_controller(make_lab, os_ken_controller) -> None:
    topo = topology_from_dict({
        "name": "star", "nodes": [{"name": "t1"}, {"name": "t2"}, {"name": "t3"}],
        "links": [{"a": "t1", "b": "t2", "latency_ms": 1}, {"a": "t1", "b": "t3", "latency_ms": 1}],
    })
    lab = make_lab(topo, controllers=[os_ken_controller])
    assert not lab.standalone and not lab.rstp
    for node in lab.topology.nodes:
        fail_mode = lab.switch(node.name).vsctl("get", "Bridge", lab.plan.switch(node.name),
                                                "fail_mode")
        assert fail_mode.strip() == "secure"
    matrix = lab.ping_matrix()
    assert matrix.description.startswith("all 6 ordered pairs")
    assert matrix.failed == [], matrix.summary_table(lab.plan)
    # the app installed its learned destinations on the root switch
    flows = lab.wait_until_flow("t1", "cookie=0xc0ffee", timeout_s=5)
    assert any("dl_dst=02:00:0a:00:00:02" in f for f in flows), flows
    # a restarted switch loses its flows, reconnects, and forwards again. Once it is back the
    # app may learn anew at once (a host's packet hitting the table miss), so the check is
    # that every learned flow now is younger than the restart, not that there is none
    t0 = time.monotonic()
    lab.restart_switch("t1")
    since = time.monotonic() - t0
    ages = [float(m.group(1)) for f in lab.dump_flows("t1") if "cookie=0xc0ffee" in f
            for m in [re.search(r"duration=([0-9.]+)s", f)] if m]
    assert all(age <= since for age in ages), \
        f"flows older than the restart ({since:.1f} s ago) survived it: {ages}"
    lab.wait_until_reachable("h-t2", "h-t3", timeout_s=15)
    lab.wait_until_flow("t1", "cookie=0xc0ffee", timeout_s=5)
