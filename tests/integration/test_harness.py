"""The harness's own pure parts (no switches needed): reading ``ovs-ofctl`` lines, cookies."""

from __future__ import annotations

from harness import destination_cookie, intent_cookie, parse_flows


def test_parse_flows_reads_ovs_ofctl_lines() -> None:
    lines = [
        "cookie=0x300000000000001, duration=12.345s, table=1, n_packets=17, n_bytes=1666, "
        "send_flow_rem priority=100,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2 actions=output:1",
        "cookie=0x100000000000004, duration=3.5s, table=0, n_packets=0, n_bytes=0, "
        "send_flow_rem priority=0 actions=drop",
    ]
    flows = parse_flows(lines)
    assert [(f.cookie, f.table, f.priority, f.n_packets) for f in flows] == [
        (intent_cookie(1), 1, 100, 17), (0x100000000000004, 0, 0, 0)]
    assert flows[0].match == "ip,nw_src=10.0.0.1,nw_dst=10.0.0.2"
    assert flows[0].actions == "output:1" and flows[1].actions == "drop"
    assert flows[0].duration_s == 12.345


def test_cookies_follow_the_core_layout() -> None:
    assert intent_cookie(7) == (3 << 56) | 7
    assert destination_cookie("10.0.0.2") == (2 << 56) | 0x0A000002
