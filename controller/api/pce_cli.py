"""``cpnctl pce ...``: the PCE's sessions, LSP database, links and paths (an HTTP client of
``cpn-pce``'s API, like the rest of cpnctl; ``--url`` points at ``cpn-pce``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["add_parsers", "call", "render"]

Table = Callable[[str, Sequence[str], Sequence[Sequence[Any]]], None]


def add_parsers(sub: Any) -> None:
    pce = sub.add_parser("pce", help="the PCE for routers (cpn-pce): sessions, LSPs, paths")
    psub = pce.add_subparsers(dest="action", required=True, metavar="ACTION")
    psub.add_parser("sessions", help="PCEP sessions")
    psub.add_parser("lsps", help="the LSP database")
    one = psub.add_parser("lsp", help="one LSP with its history")
    one.add_argument("pcc")
    one.add_argument("plsp_id", type=int)
    psub.add_parser("links", help="the routers' links and their state")
    link = psub.add_parser("link", help="take a link down or up, or set its measured delay "
                           "(delegated LSPs out of their bound are moved)")
    link.add_argument("a")
    link.add_argument("b")
    state = link.add_mutually_exclusive_group()
    state.add_argument("--down", dest="up", action="store_false", default=None)
    state.add_argument("--up", dest="up", action="store_true")
    link.add_argument("--latency-ms", type=float, default=None)
    path = psub.add_parser("path", help="the path the PCE would answer with")
    path.add_argument("source", help="router id of the head end")
    path.add_argument("destination")
    path.add_argument("--max-latency-ms", type=float, default=None)
    path.add_argument("--min-bandwidth-mbps", type=float, default=None)
    path.add_argument("--objective", choices=("te", "igp", "hops", "latency"), default=None)
    init = psub.add_parser("initiate", help="create an LSP on a PCC (PCInitiate)")
    init.add_argument("pcc", help="address of the PCC's session")
    init.add_argument("name")
    init.add_argument("source")
    init.add_argument("destination")
    init.add_argument("--max-latency-ms", type=float, default=None)
    init.add_argument("--min-bandwidth-mbps", type=float, default=None)
    rm = psub.add_parser("remove", help="remove an LSP the PCE created (PCInitiate, R flag)")
    rm.add_argument("pcc")
    rm.add_argument("plsp_id", type=int)
    psub.add_parser("metrics", help="counters of sessions and requests")


def call(c: Any, args: argparse.Namespace) -> Any:
    """The API call of ``cpnctl pce ACTION`` on client ``c``. Raises
    :class:`~controller.api.cli.ApiError` with the API's error, and a path without a way
    (``found`` false) as a 409 so the command fails."""
    action = args.action
    if action in ("sessions", "lsps", "links", "metrics"):
        return c.request("GET", f"/pce/{action}")
    if action in ("lsp", "remove"):
        return c.request("GET" if action == "lsp" else "DELETE",
                         f"/pce/lsps/{args.pcc}/{args.plsp_id}")
    opts = {k: getattr(args, k) for k in ("max_latency_ms", "min_bandwidth_mbps", "objective")
            if getattr(args, k, None) is not None}
    if action == "link":
        body = {"up": args.up} if args.up is not None else {}
        if args.latency_ms is not None:
            body["latency_ms"] = args.latency_ms
        return c.request("PUT", f"/pce/links/{args.a}/{args.b}", json=body)
    if action == "initiate":
        return c.request("POST", "/pce/lsps", json={
            "pcc": args.pcc, "name": args.name, "source": args.source,
            "destination": args.destination, **opts})
    data = c.request("GET", "/pce/path", params={
        "source": args.source, "destination": args.destination, **opts})
    if not data.get("found"):
        from controller.api.cli import ApiError

        raise ApiError(409, "no_path", f"no path: {data.get('reason')}")
    return data


def _labels(segments: Sequence[dict[str, Any]]) -> str:
    return " ".join(str(s["label"]) for s in segments) or "-"


def _num(x: Any) -> str:
    return "-" if x is None else f"{x:.3f}"


def render(args: argparse.Namespace, data: Any, table: Table) -> None:
    action = args.action
    if action == "sessions":
        table("PCEP sessions", ["peer", "state", "keepalive", "dead", "msd", "synced",
                                "requests", "updates", "errors"],
              [(s["peer"], s["state"], s["keepalive_s"], s["dead_timer_s"], s["msd"],
                s["synced"], s["counters"]["requests"], s["counters"]["updates"],
                s["counters"]["errors_sent"]) for s in data])
    elif action == "lsps":
        table("LSPs", ["pcc", "plsp", "name", "source", "destination", "delegated",
                       "max ms", "segments", "delay ms", "cost"],
              [(r["pcc"], r["plsp_id"], r["name"] or "-", r["source"] or "-",
                r["destination"] or "-", r["delegated"], r["max_latency_ms"] or "-",
                _labels(r["segments"]),
                _num((r["computed"] or {}).get("latency_ms")),
                (r["computed"] or {}).get("te_cost", "-")) for r in data])
    elif action == "lsp":
        table(f"LSP {data['plsp_id']} of {data['pcc']}", ["field", "value"],
              [(k, v) for k, v in data.items() if k not in ("history", "segments")]
              + [("segments", _labels(data["segments"]))])
        table("history", ["time", "event", "detail"],
              [(h["time"], h["event"], ", ".join(f"{k}={v}" for k, v in h.items()
                                                 if k not in ("time", "event")))
               for h in data["history"]])
    elif action == "links":
        table("links", ["index", "a", "b", "up", "latency ms", "cost", "igp", "Mbps"],
              [(x["index"], x["a"], x["b"], x["up"], _num(x["latency_ms"]), x["cost"],
                x["igp_metric"], x["bandwidth_mbps"]) for x in data])
    elif action == "link":
        table("LSPs moved", ["pcc", "plsp", "found", "segments", "delay ms", "reason"],
              [(m["pcc"], m["plsp_id"], m["found"], _labels(m.get("segments", [])),
                _num(m.get("latency_ms")), m.get("reason") or "-") for m in data["moved"]])
    elif action == "path":
        table("path", ["field", "value"],
              [("nodes", " → ".join(data["nodes"])), ("segments", _labels(data["segments"])),
               ("latency ms", _num(data["latency_ms"])), ("te cost", data["te_cost"]),
               ("igp cost", data["igp_cost"])])
    elif action == "remove":
        table("PCInitiate (remove) sent", ["srp id"], [(data["srp_id"],)])
    elif action == "initiate":
        table("PCInitiate sent", ["srp id", "segments", "delay ms"],
              [(data["srp_id"], _labels(data["segments"]), _num(data["latency_ms"]))])
    else:
        table("PCE metrics", ["counter", "value"], sorted(data.items()))
