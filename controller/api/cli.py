"""``cpnctl``: the CPN controller's REST API from a shell.

    cpnctl [--url URL] [--token TOKEN] [--cacert FILE] [--json] COMMAND ...

Commands: ``health``, ``cluster``, ``topology``, ``switches``, ``links``, ``hosts``,
``paths SRC DST``, ``intents add|list|show|delete``, ``routes``, ``circles``, ``events``,
``audit`` (admin), for compute
steering ``sites list|add|show|set|delete``, ``place``, ``placements [show|delete ID]``,
``services list|add|show|delete|assign|assignments``; and, on the controller's machine
without HTTP, ``token new NAME --role ROLE [--file F]`` (prints a new token once and adds its
hash to the token file), ``token list`` and ``token remove NAME``. Tables for people (plain aligned
columns, :func:`controller.tables.format_table`); ``--json`` prints the API's JSON for
scripts.

``CPN_URL`` (default ``http://127.0.0.1:8080``), ``CPN_TOKEN`` and ``CPN_CACERT`` (the CA
that signed an ``https://`` controller's certificate) come from the environment;
``--url``/``--token``/``--cacert`` override them. Without a token, ``cpnctl`` reads the token the
controller generated in its state directory (``$XDG_DATA_HOME/cpn-controller/api-token``)
when it can.

Exit codes: 0 ok; 1 the API answered an error (4xx/5xx; its message is printed); 2 bad usage;
3 the controller is unreachable. An answer marked ``X-CPN-Stale: true`` (the member is cut off
from etcd and answers from its last applied state) is printed all the same, with a note on
stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from controller.api import pce_cli
from controller.tables import format_table

__all__ = ["main"]

DEFAULT_URL = "http://127.0.0.1:8080"
STALE_HEADER = "X-CPN-Stale"
EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class ApiError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        self.status, self.code, self.detail = status, code, detail
        super().__init__(f"{status} {code}: {detail}")


class Unreachable(Exception):
    pass


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind an httpx error, if that is what it was."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class Client:
    def __init__(self, url: str, token: str | None, timeout_s: float,
                 cacert: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.cacert = cacert
        self.stale = False
        """some answer so far came from a member whose reads may lag the cluster"""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        verify: ssl.SSLContext | bool = (ssl.create_default_context(cafile=cacert)
                                         if cacert else True)
        self._http = httpx.Client(base_url=f"{self.url}/api/v1", headers=headers,
                                  timeout=timeout_s, verify=verify)

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.ConnectError as exc:
            tls = _ssl_error(exc)
            if tls is None:
                raise Unreachable(f"cannot reach the CPN controller at {self.url}: {exc} "
                                  "(is cpn-controller running with its API on this address? "
                                  "set CPN_URL or --url)") from exc
            reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) \
                or str(tls)
            trust = f"the CA in {self.cacert}" if self.cacert else "the system's CAs"
            raise Unreachable(f"TLS with {self.url}: certificate verify failed ({reason}): "
                              f"it is not signed by {trust} (give the CA that signed it with "
                              "--cacert FILE or CPN_CACERT)" if isinstance(
                                  tls, ssl.SSLCertVerificationError) else
                              f"TLS with {self.url} failed: {reason} (an https:// URL needs "
                              "a controller serving HTTPS: --api-tls-cert)") from exc
        except httpx.ConnectTimeout as exc:
            raise Unreachable(f"cannot reach the CPN controller at {self.url}: {exc} "
                              "(is cpn-controller running with its API on this address? "
                              "set CPN_URL or --url)") from exc
        except httpx.HTTPError as exc:
            raise Unreachable(f"no answer from the CPN controller at {self.url}: {exc}"
                              ) from exc
        if r.headers.get(STALE_HEADER, "").lower() == "true":
            self.stale = True
        if r.status_code >= 400:
            try:
                body = r.json()
                code, detail = str(body.get("error")), str(body.get("detail"))
            except (ValueError, AttributeError):
                code, detail = f"http_{r.status_code}", r.text[:500]
            raise ApiError(r.status_code, code, detail)
        if r.status_code == 204 or not r.content:
            return None
        ctype = r.headers.get("content-type", "")
        return r.json() if "json" in ctype else r.text


def _state_dir() -> Path:
    # the controller's default state dir (controller.store.default_state_dir; not imported
    # to keep cpnctl's start-up light)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cpn-controller"


def _default_token() -> str | None:
    token = os.environ.get("CPN_TOKEN", "").strip()
    if token:
        return token
    path = _state_dir() / "api-token"
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cpnctl", description="Talk to the CPN controller API.")
    p.add_argument("--url", default=None,
                   help=f"API base URL (env CPN_URL, default {DEFAULT_URL})")
    p.add_argument("--token", default=None, help="API token for writes (env CPN_TOKEN)")
    p.add_argument("--token-file", default=None, help="read the API token from this file")
    p.add_argument("--cacert", default=None, metavar="FILE",
                   help="PEM CA certificate that signed an https:// controller's certificate "
                        "(env CPN_CACERT)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="HTTP timeout in seconds (30)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("health", help="controller health")
    sub.add_parser("cluster", help="members, and the master of each switch")
    sub.add_parser("topology", help="nodes and links")
    sub.add_parser("switches", help="switches and their connection state")
    flows = sub.add_parser("flows", help="flows of one switch")
    flows.add_argument("dpid", help="dpid (int, 0x hex) or switch name")
    ports = sub.add_parser("ports", help="ports of one switch")
    ports.add_argument("dpid")
    sub.add_parser("links", help="links and their state")
    sub.add_parser("hosts", help="known hosts")
    paths = sub.add_parser("paths", help="what the engine would choose between two ends")
    paths.add_argument("src")
    paths.add_argument("dst")
    paths.add_argument("--max-latency-ms", type=float)
    paths.add_argument("--min-bandwidth-mbps", type=float)
    paths.add_argument("-k", type=int, default=1, help="number of paths (1)")
    paths.add_argument("--disjoint", action="store_true", help="a link-disjoint pair")
    intents = sub.add_parser("intents", help="route intents")
    isub = intents.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = isub.add_parser("add", help="add an intent")
    add.add_argument("src")
    add.add_argument("dst")
    add.add_argument("--max-latency-ms", type=float, required=True)
    add.add_argument("--min-bandwidth-mbps", type=float)
    add.add_argument("--name")
    add.add_argument("--priority", type=int)
    add.add_argument("--ip-proto", type=int)
    add.add_argument("--src-port", type=int)
    add.add_argument("--dst-port", type=int)
    add.add_argument("--dscp", type=int)
    add.add_argument("--sla-reroute", action="store_true",
                     help="when its measured latency breaks the bound, route it on measured "
                          "link delays")
    isub.add_parser("list", help="list intents")
    show = isub.add_parser("show", help="one intent with its flows and history")
    show.add_argument("id", type=int)
    delete = isub.add_parser("delete", help="delete an intent")
    delete.add_argument("id", type=int)
    sub.add_parser("routes", help="installed flows per switch")
    circles = sub.add_parser("circles", help="latency circles")
    circles.add_argument("--center")
    circles.add_argument("--max-latency-ms", type=float)
    events = sub.add_parser("events", help="recent events")
    events.add_argument("--limit", type=int, default=50)
    audit = sub.add_parser("audit", help="the audit trail of writes (admin token)")
    audit.add_argument("--limit", type=int, default=50)
    audit.add_argument("--since", type=int, default=0, metavar="ID",
                       help="records after this audit id (default: the latest)")
    token = sub.add_parser("token", help="API tokens in the token file (no HTTP)")
    tsub = token.add_subparsers(dest="action", required=True, metavar="ACTION")
    tnew = tsub.add_parser("new", help="make a token: printed once, its hash added to the file")
    tnew.add_argument("name")
    tnew.add_argument("--role", required=True,
                      choices=("viewer", "operator", "admin", "site"))
    tnew.add_argument("--site", default=None, metavar="SITE_ID",
                      help="role site: the compute site whose metrics the token may write")
    tnew.add_argument("--file", default=None, help="the token file (default: "
                      "$XDG_DATA_HOME/cpn-controller/api-tokens.yaml)")
    tlist = tsub.add_parser("list", help="names and roles in the token file")
    tlist.add_argument("--file", default=None)
    trm = tsub.add_parser("remove", help="revoke a token: its entry leaves the file")
    trm.add_argument("name")
    trm.add_argument("--file", default=None)
    _compute_parsers(sub)
    pce_cli.add_parsers(sub)
    return p


# --- compute steering: sites, placements, services (docs/compute.md) --------------------------

_KINDS = ("general", "intelligent", "hpc")
_POLICIES = ("nearest", "cheapest", "least-loaded", "cats")
_TIERS = ("local", "regional", "national")


def _compute_parsers(sub: Any) -> None:
    sites = sub.add_parser("sites", help="compute sites")
    ssub = sites.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = ssub.add_parser("list", help="list sites")
    ls.add_argument("--kind", choices=_KINDS)
    ls.add_argument("--state", choices=("up", "draining", "down"))
    add = ssub.add_parser("add", help="register a site")
    add.add_argument("id", help="cs:<place>:<name>")
    add.add_argument("--node", required=True)
    add.add_argument("--capacity", type=float, required=True)
    add.add_argument("--kind", choices=_KINDS)
    add.add_argument("--unit")
    add.add_argument("--price", type=float)
    add.add_argument("--host")
    add.add_argument("--free-capacity", type=float)
    show = ssub.add_parser("show", help="one site with its reservations")
    show.add_argument("id")
    setp = ssub.add_parser("set", help="change a site (e.g. --state down)")
    setp.add_argument("id")
    setp.add_argument("--state", choices=("up", "draining", "down"))
    setp.add_argument("--capacity", type=float)
    setp.add_argument("--price", type=float)
    delete = ssub.add_parser("delete", help="unregister a site")
    delete.add_argument("id")
    place = sub.add_parser("place", help="place a compute demand near a source")
    place.add_argument("source", help="node, host name or host IP")
    place.add_argument("--demand", type=float, required=True, help="units of capacity")
    place.add_argument("--kind", choices=_KINDS, required=True)
    bound = place.add_mutually_exclusive_group(required=True)
    bound.add_argument("--max-latency-ms", type=float)
    bound.add_argument("--tier", choices=_TIERS)
    place.add_argument("--min-bandwidth-mbps", type=float)
    place.add_argument("--policy", choices=_POLICIES)
    pl = sub.add_parser("placements", help="placements (list; show/delete ID)")
    psub = pl.add_subparsers(dest="action", required=False, metavar="ACTION")
    psub.add_parser("list", help="list placements")
    pshow = psub.add_parser("show")
    pshow.add_argument("id")
    pdel = psub.add_parser("delete", help="release a placement")
    pdel.add_argument("id")
    svcs = sub.add_parser("services", help="anycast services")
    vsub = svcs.add_subparsers(dest="action", required=True, metavar="ACTION")
    vsub.add_parser("list", help="list services")
    vadd = vsub.add_parser("add", help="create a service")
    vadd.add_argument("name")
    vadd.add_argument("--anycast-ip", required=True)
    vadd.add_argument("--kind", choices=_KINDS, required=True)
    vadd.add_argument("--demand-per-client", type=float, required=True)
    vb = vadd.add_mutually_exclusive_group(required=True)
    vb.add_argument("--max-latency-ms", type=float)
    vb.add_argument("--tier", choices=_TIERS)
    vadd.add_argument("--policy", choices=_POLICIES)
    for name, what in (("show", "one service"), ("delete", "remove a service"),
                       ("assignments", "which site each client uses")):
        one = vsub.add_parser(name, help=what)
        one.add_argument("name")
    assign = vsub.add_parser("assign", help="assign a client to a site")
    assign.add_argument("name")
    assign.add_argument("client")


def _call_compute(c: Client, args: argparse.Namespace) -> Any:
    cmd, action = args.command, getattr(args, "action", None)

    def opts(*keys: str) -> dict[str, Any]:
        return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}

    if cmd == "sites":
        if action == "list":
            return c.request("GET", "/compute-sites", params=opts("kind", "state"))
        if action == "add":
            return c.request("POST", "/compute-sites", json={
                "id": args.id, **opts("node", "capacity", "kind", "unit", "price", "host",
                                      "free_capacity")})
        if action == "set":
            return c.request("PATCH", f"/compute-sites/{args.id}",
                             json=opts("state", "capacity", "price"))
        return c.request("GET" if action == "show" else "DELETE", f"/compute-sites/{args.id}")
    if cmd == "place":
        return c.request("POST", "/placements", json={
            "source": args.source, **opts("demand", "kind", "max_latency_ms", "tier",
                                          "min_bandwidth_mbps", "policy")})
    if cmd == "placements":
        if action in (None, "list"):
            return c.request("GET", "/placements")
        return c.request("GET" if action == "show" else "DELETE", f"/placements/{args.id}")
    if action == "list":
        return c.request("GET", "/services")
    if action == "add":
        return c.request("POST", "/services", json={
            "name": args.name, **opts("anycast_ip", "kind", "demand_per_client",
                                      "max_latency_ms", "tier", "policy")})
    if action == "assignments":
        return c.request("GET", f"/services/{args.name}/assignments")
    if action == "assign":
        return c.request("POST", f"/services/{args.name}/assignments",
                         json={"client": args.client})
    return c.request("GET" if action == "show" else "DELETE", f"/services/{args.name}")


def _render_compute(args: argparse.Namespace, data: Any, table: Any, say: Any) -> None:
    cmd, action = args.command, getattr(args, "action", None)
    site_cols = ["id", "kind", "node", "host", "state", "capacity", "free", "unit", "price"]

    def site_row(s: dict[str, Any]) -> list[Any]:
        return [s["id"], s["kind"], s["node"], s["host"] or "-", s["state"], f"{s['capacity']:g}",
                f"{s['free_capacity']:g}", s["unit"], f"{s['price']:g}"]

    def placement_rows(ps: list[dict[str, Any]]) -> list[list[Any]]:
        return [[p["id"], p["source"], p["site_id"], f"{p['demand']:g} {p['unit']}",
                 p["policy"], _path(p["path"]), _num(p["latency_ms"]), f"{p['price']:g}"]
                for p in ps]

    pl_cols = ["id", "source", "site", "demand", "policy", "path", "latency ms", "price"]
    svc_cols = ["name", "anycast ip", "kind", "demand/client", "max ms", "policy", "clients"]

    def svc_row(v: dict[str, Any]) -> list[Any]:
        return [v["name"], v["anycast_ip"], v["kind"], f"{v['demand_per_client']:g}",
                f"{v['max_latency_ms']:g}", v["policy"], v["clients"]]

    as_cols = ["client", "client node", "site", "path", "latency ms", "sla", "measured ms"]

    def as_row(a: dict[str, Any]) -> list[Any]:
        sla = a.get("sla") or {}
        return [a["client_host"], a["client_node"], a["site_id"], _path(a["path"]),
                _num(a["latency_ms"]), sla.get("state", "-"), _num(sla.get("measured_ms"))]

    if cmd == "sites" and action == "list":
        table("compute sites", site_cols, [site_row(s) for s in data])
    elif cmd == "sites" and action == "delete":
        say(f"site {data['id']} deleted")
    elif cmd == "sites":
        table(f"compute site {data['id']}", site_cols, [site_row(data)])
        if data.get("reservation_list"):
            table("reservations", ["id", "owner", "amount"],
                  [(r["id"], r["owner"], f"{r['amount']:g}") for r in data["reservation_list"]])
        for m in data.get("moves", []):
            say(f"moved {m['service']} client {m['client_host']}: {m['from_site']} → "
                          f"{m['to_site'] or 'nowhere'} ({m['reason']})")
    elif cmd == "place" or (cmd == "placements" and action in ("show", "delete")):
        title = "released placement" if action == "delete" else "placement"
        table(title, pl_cols, placement_rows([data]))
    elif cmd == "placements":
        table("placements", pl_cols, placement_rows(data))
    elif cmd == "services" and action == "list":
        table("services", svc_cols, [svc_row(v) for v in data])
    elif cmd == "services" and action in ("show", "add"):
        table(f"service {data['name']}", svc_cols, [svc_row(data)])
    elif cmd == "services" and action == "delete":
        say(f"service {data['name']} deleted ({len(data['released'])} clients "
                      "released)")
    elif cmd == "services" and action == "assign":
        table(f"assignment in {data['service']}", as_cols, [as_row(data)])
    else:
        table(f"assignments of {args.name}", as_cols, [as_row(a) for a in data])


def _call(c: Client, args: argparse.Namespace) -> Any:
    cmd = args.command
    if cmd in ("health", "cluster", "topology", "switches", "links", "hosts", "routes"):
        return c.request("GET", f"/{cmd}")
    if cmd == "flows":
        return c.request("GET", f"/switches/{args.dpid}/flows")
    if cmd == "ports":
        return c.request("GET", f"/switches/{args.dpid}/ports")
    if cmd == "paths":
        params: dict[str, Any] = {"src": args.src, "dst": args.dst, "k": args.k}
        if args.max_latency_ms is not None:
            params["max_latency_ms"] = args.max_latency_ms
        if args.min_bandwidth_mbps is not None:
            params["min_bandwidth_mbps"] = args.min_bandwidth_mbps
        if args.disjoint:
            params["disjoint"] = "true"
        return c.request("GET", "/paths", params=params)
    if cmd == "circles":
        params = {}
        if args.center:
            params["center"] = args.center
        if args.max_latency_ms is not None:
            params["max_latency_ms"] = args.max_latency_ms
        circles = c.request("GET", "/latency-circles", params=params)
        if not params:
            try:  # which sites each city can use per tier (controllers with compute steering)
                circles["city_sites"] = c.request("GET", "/latency-circles/sites")["cities"]
            except ApiError as exc:
                if exc.status != 404:
                    raise
        return circles
    if cmd == "events":
        return c.request("GET", "/events", params={"limit": args.limit})
    if cmd == "audit":
        return c.request("GET", "/audit", params={"limit": args.limit, "since": args.since})
    if cmd in ("sites", "place", "placements", "services"):
        return _call_compute(c, args)
    if cmd == "pce":
        return pce_cli.call(c, args)
    if cmd == "intents":
        if args.action == "list":
            return c.request("GET", "/intents")
        if args.action == "show":
            return c.request("GET", f"/intents/{args.id}")
        if args.action == "delete":
            return c.request("DELETE", f"/intents/{args.id}")
        body: dict[str, Any] = {"src": args.src, "dst": args.dst,
                                "max_latency_ms": args.max_latency_ms}
        for key in ("min_bandwidth_mbps", "name", "priority"):
            if getattr(args, key) is not None:
                body[key] = getattr(args, key)
        match = {k: getattr(args, k) for k in ("ip_proto", "src_port", "dst_port", "dscp")
                 if getattr(args, k) is not None}
        if match:
            body["match"] = match
        if args.sla_reroute:
            body["sla_reroute"] = True
        return c.request("POST", "/intents", json=body)
    raise AssertionError(cmd)


# --- tables ---------------------------------------------------------------------------------------

def _path(nodes: Any) -> str:
    return " → ".join(nodes) if nodes else "-"


def _num(x: Any, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def _render(args: argparse.Namespace, data: Any) -> None:
    def say(text: str) -> None:
        print(text)

    def table(title: str, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        print(f"{title}\n{format_table([cols, *rows])}\n")

    cmd = args.command
    if cmd == "health":
        cluster = data.get("cluster") or {}
        table("health", ["field", "value"],
              [(k, v) for k, v in data.items() if k != "cluster"]
              + [(f"cluster.{k}", "-" if v is None else v) for k, v in cluster.items()])
    elif cmd == "cluster":
        _render_cluster(data, table)
    elif cmd == "topology":
        table(f"nodes of {data['name']}", ["name", "kind", "dpid", "connected", "label"],
              [(n["name"], n["kind"], n["dpid"], n["connected"], n["label"] or "")
               for n in data["nodes"]])
        table("links", ["#", "a", "b", "latency ms", "bandwidth Mbps", "reserved Mbps", "up"],
              [(lk["index"], lk["a"], lk["b"], _num(lk["latency_ms"]), lk["bandwidth_mbps"],
                lk["reserved_mbps"], lk["up"]) for lk in data["links"]])
    elif cmd == "switches":
        table("switches", ["name", "dpid", "connected", "synced", "ports", "pending",
                           "behind s"],
              [(s["name"], s["dpid_hex"], s["connected"], s["synced"],
                len(s["ports"]) if s["ports"] is not None else "-",
                s.get("pending_changes", 0),
                "-" if s.get("behind_s") is None else _num(s["behind_s"])) for s in data])
    elif cmd in ("flows",):
        table(f"flows of {data.get('switch', data['dpid'])} (source {data['source']})",
              ["table", "priority", "match", "actions", "cookie", "owner"],
              [(f["table_id"], f["priority"], json.dumps(f["match"]),
                ", ".join(f"{i['type']}:{i['value']}" for i in f["instructions"]) or "drop",
                f["cookie"], f["owner"]) for f in data["flows"]])
    elif cmd == "ports":
        table(f"ports of {data['switch']}", ["port", "live", "expected"],
              [(p["port_no"], p["live"], json.dumps(p["expected"])) for p in data["ports"]])
    elif cmd == "links":
        table("links", ["#", "a", "b", "latency ms", "measured ms", "bandwidth Mbps", "up",
                        "load a>b Mbps", "load b>a Mbps", "util", "drops"],
              [(lk["index"], lk["a"], lk["b"], _num(lk["latency_ms"]),
                _num(lk.get("measured_delay_ms")), lk["bandwidth_mbps"],
                lk["up"], _num(lk.get("load_a_to_b_mbps")), _num(lk.get("load_b_to_a_mbps")),
                _num(lk.get("utilisation")), lk.get("drops"))
               for lk in data["links"]])
        for kind, items in data["report"].items():
            if items:
                say(f"{kind}: {json.dumps(items)}")
    elif cmd == "hosts":
        table("hosts", ["name", "ip", "mac", "node", "port", "source"],
              [(h["name"], h["ip"], h["mac"], h["node"], h["port_no"], h["source"])
               for h in data])
    elif cmd == "paths":
        table(f"paths {data['src']} → {data['dst']}",
              ["#", "path", "latency ms", "cost", "hops", "bottleneck Mbps"],
              [(i + 1 if not p["chosen"] else "1 (chosen)", _path(p["nodes"]),
                _num(p["latency_ms"]), _num(p["cost"], "{:g}"), p["hops"],
                _num(p["bottleneck_mbps"], "{:g}")) for i, p in enumerate(data["paths"])])
    elif cmd == "intents" and args.action == "list":
        table("intents", ["id", "name", "src", "dst", "max ms", "state", "path", "latency ms",
                          "sla", "measured ms", "reason"],
              [(i["id"], i["name"], i["src"], i["dst"], i["max_latency_ms"], i["state"],
                _path(i["path"]), _num(i["latency_ms"]),
                (i.get("sla") or {}).get("state", "-"),
                _num((i.get("sla") or {}).get("measured_ms")), i["reason"]) for i in data])
    elif cmd == "intents" and args.action == "delete":
        say(f"intent {data['id']} deleted ({data['flows_removed']} flows removed)")
    elif cmd == "intents":
        table(f"intent {data['id']} ({data['name']})", ["field", "value"],
              [(k, data[k]) for k in ("source", "src", "dst", "max_latency_ms",
                                      "min_bandwidth_mbps", "priority", "match", "state",
                                      "reason")]
              + [("path", _path(data["path"])), ("latency_ms", _num(data["latency_ms"]))])
        if data.get("history"):
            table("history", ["time", "old path", "new path", "cause"],
                  [(h["timestamp"], _path(h["old_path"]), _path(h["new_path"]), h["cause"])
                   for h in data["history"]])
        if data.get("flows"):
            table("flows", ["switch", "table", "priority", "actions", "installed"],
                  [(f["switch"], f["table_id"], f["priority"],
                    ", ".join(f"{i['type']}:{i['value']}" for i in f["instructions"]),
                    f["installed"]) for f in data["flows"]])
    elif cmd == "routes":
        rows = [(s["switch"], s["synced"], f["table_id"], f["priority"], json.dumps(f["match"]),
                 ", ".join(f"{i['type']}:{i['value']}" for i in f["instructions"]) or "drop",
                 f["owner"]) for s in data["switches"] for f in s["flows"]]
        table("installed flows", ["switch", "synced", "table", "priority", "match", "actions",
                                  "owner"], rows)
        if not rows:
            say("no switch is synced: nothing installed yet")
    elif cmd == "circles":
        for c in data["circles"]:
            table(f"latency circles around {c['center']}", ["within ms", "nodes"],
                  [(t["max_latency_ms"], ", ".join(n["name"] for n in t["nodes"]))
                   for t in c["tiers"]])
        if not data["circles"]:
            say("no centers (the topology has no national_hub; use --center)")
        if data.get("city_sites"):
            tiers = [t["max_latency_ms"] for t in data["city_sites"][0]["tiers"]]
            table("compute sites each city can use", ["city", *[f"≤ {t:g} ms" for t in tiers]],
                  [(c["city"], *[", ".join(f"{s['id']} ({s['latency_ms']:.1f})"
                                           for s in t["sites"] if s["state"] == "up") or "-"
                                 for t in c["tiers"]]) for c in data["city_sites"]])
    elif cmd == "events":
        table("events", ["time", "kind", "details"],
              [(e.get("timestamp", e.get("time")), e.get("kind"),
                json.dumps({k: v for k, v in e.items() if k not in ("time", "timestamp",
                                                                     "kind")}))
               for e in data])
    elif cmd == "audit":
        table("audit trail", ["id", "time", "token", "remote", "method", "path", "status",
                              "body sha256"],
              [(a["id"], a["time"], a["token"] or "-", a["remote"] or "-", a["method"],
                a["path"], a["status"], a["body_sha256"][:16]) for a in data])
    elif cmd in ("sites", "place", "placements", "services"):
        _render_compute(args, data, table, say)
    elif cmd == "pce":
        pce_cli.render(args, data, table)
    else:  # pragma: no cover - every command has a table above
        print(json.dumps(data, indent=2))


def _render_cluster(data: dict[str, Any], table: Any) -> None:
    def dash(x: Any) -> Any:
        return "-" if x is None or x == [] else x

    etcd = data.get("etcd")
    etcd_text = "-" if etcd is None else (
        f"{'healthy' if etcd['healthy'] else 'NOT healthy'} ({', '.join(etcd['endpoints'])})")
    table(f"cluster ({data['mode']})", ["field", "value"],
          [("member", dash(data["member_id"])), ("writable", data["writable"]),
           ("stale", data["stale"]), ("applied revision", dash(data["applied_revision"])),
           ("etcd", etcd_text)])
    # "*": the member that answered (the one this cpnctl talks to)
    table("members", ["", "id", "api", "openflow", "alive", "applied rev", "masters"],
          [("*" if m.get("self") else "", m["id"], dash(m["api_url"]), dash(m["openflow"]),
            m["alive"], dash(m["applied_revision"]), m["masters"])
           for m in data["members"]])
    table("switches", ["name", "dpid", "master", "standbys", "generation"],
          [(s["name"], f"{s['dpid']:#x}", dash(s["master"]),
            ", ".join(s["standbys"]) or "-", dash(s["generation_id"]))
           for s in data["switches"]])


def _token_command(args: argparse.Namespace) -> int:
    """``cpnctl token new|list|remove``: the token file on this machine (no HTTP)."""
    from controller.api.tokens import (
        TOKENS_FILE_NAME,
        TokenFileError,
        add_token,
        load_tokens_file,
        remove_token,
    )

    path = Path(args.file) if args.file else _state_dir() / TOKENS_FILE_NAME
    try:
        if args.action == "new":
            token = add_token(path, args.name, args.role, args.site)
            print(token)
            print(f"cpnctl: token {args.name!r} ({args.role}) added to {path}; this is the "
                  "only time it is shown", file=sys.stderr)
            return EXIT_OK
        if args.action == "remove":
            gone = remove_token(path, args.name)
            print(f"token {gone.name!r} ({gone.role}) removed from {path}")
            return EXIT_OK
        entries = load_tokens_file(path) if path.exists() else []
    except TokenFileError as exc:
        print(f"cpnctl: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps([{"name": e.name, "role": e.role} for e in entries], indent=2))
    else:
        rows = [["name", "role"], *([e.name, e.role] for e in entries)]
        print(f"tokens in {path}\n{format_table(rows)}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code not in (0, None) else EXIT_OK
    if args.command == "token":
        return _token_command(args)
    url = args.url or os.environ.get("CPN_URL") or DEFAULT_URL
    if not url.startswith(("http://", "https://")):
        print(f"cpnctl: error: bad URL {url!r} (want http://HOST:PORT)", file=sys.stderr)
        return EXIT_USAGE
    token = args.token
    if token is None and args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            print(f"cpnctl: error: cannot read token file: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if token is None:
        token = _default_token()
    cacert = args.cacert or os.environ.get("CPN_CACERT") or None
    try:
        client = Client(url, token, args.timeout, cacert)
    except (OSError, ssl.SSLError) as exc:
        print(f"cpnctl: error: cannot use CA file {cacert}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        data = _call(client, args)
    except Unreachable as exc:
        print(f"cpnctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ApiError as exc:
        print(f"cpnctl: error {exc.status} {exc.code}: {exc.detail}", file=sys.stderr)
        return EXIT_API
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _render(args, data)
    if client.stale:
        print(f"cpnctl: note: {url} is cut off from etcd; this answer comes from its last "
              "applied state and may lag the cluster", file=sys.stderr)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
