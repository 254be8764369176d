"""``cpn-lab``: a topology as a Mininet network of Open vSwitch switches, from the shell.

``cpn-lab up FILE`` builds the network and opens the Mininet CLI; ``cpn-lab check FILE`` builds
it, runs a ping matrix, prints a summary and tears it down (exit 1 on loss); ``cpn-lab clean``
removes what crashed runs left behind; ``cpn-lab pki DIR`` makes the CA and certificates of
OpenFlow over TLS (:mod:`controller.lab.pki`), which ``--controller ssl:HOST:PORT --tls-dir
DIR`` uses. ``FILE`` may be ``zoo:NAME``, a Topology Zoo map shipped
with the project (``cpn-lab check zoo:Abilene``).

The parts: :mod:`controller.lab.plan` (names and port numbers), :mod:`controller.lab.build`
(the Mininet network), :mod:`controller.lab.network` (:class:`LabNetwork`: lifecycle, bounded
waits, pings, failures), :mod:`controller.lab.ping`, :mod:`controller.lab.cleanup` and
:mod:`controller.lab.ovs` (the machine: root, Open vSwitch, OVSDB).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from collections.abc import Sequence

from mininet.log import setLogLevel

from controller.errors import CpnError, LabError
from controller.lab.build import ControllerAddress, parse_controller
from controller.lab.cleanup import cleanup_stale
from controller.lab.network import LabNetwork
from controller.lab.ovs import probe_environment, require_root
from controller.lab.ping import ALL_PAIRS_MAX_HOSTS
from controller.lab.pki import DEFAULT_DAYS, make_etcd_pki, make_pki, pki_files
from controller.topology.files import ZOO_PREFIX, load_topology_argument, zoo_names

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cpn-lab", description="Build a Mininet network from a topology file.",
        epilog=f"A topology is a file or {ZOO_PREFIX}NAME, one of the shipped Topology Zoo maps: "
               f"{', '.join(zoo_names())}.")
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help=f"topology file (YAML) or {ZOO_PREFIX}NAME")
        mode = sp.add_mutually_exclusive_group()
        mode.add_argument("--controller", action="append", default=[], metavar="tcp:HOST:PORT",
                          help="OpenFlow controller (repeatable; ssl:HOST:PORT over TLS, with "
                               "--tls-dir); switches in fail_mode=secure")
        mode.add_argument("--standalone", action="store_true",
                          help="no controller: OVS learning switches, RSTP on looped "
                               "topologies (the default while no --controller is given)")
        sp.add_argument("--tls-dir", metavar="DIR",
                        help="for ssl: controllers: the switches' key and certificate and the "
                             "CA certificate of 'cpn-lab pki DIR' (set with ovs-vsctl set-ssl "
                             "while the lab runs)")
        sp.add_argument("--timeout", type=float, default=180.0, metavar="S",
                        help="bring-up timeout in seconds (default 180)")
        sp.add_argument("-v", "--verbose", action="store_true", help="Mininet's own log too")

    up = sub.add_parser("up", help="build the network and open the Mininet CLI")
    common(up)
    check = sub.add_parser("check", help="build, ping matrix, summary, tear down")
    common(check)
    check.add_argument("--all-pairs", action="store_true",
                       help=f"ping every ordered pair even above {ALL_PAIRS_MAX_HOSTS} hosts")
    check.add_argument("--count", type=int, default=1, help="echo requests per pair")
    sub.add_parser("clean", help="remove what crashed cpn-lab runs left behind")
    pki = sub.add_parser("pki", help="make a CA and the controller's and switches' TLS "
                                     "certificates and keys in DIR")
    pki.add_argument("dir", metavar="DIR", help="where to put them (created 0700 if absent)")
    pki.add_argument("--force", action="store_true",
                     help="make all anew (default: keep what exists, make what is missing)")
    pki.add_argument("--days", type=int, default=DEFAULT_DAYS,
                     help=f"validity of the certificates in days (default {DEFAULT_DAYS}; the "
                          "CA ten times that)")
    pki.add_argument("--etcd-member", action="append", default=[], metavar="NAME",
                     help="also make DIR/etcd: an etcd CA, etcd's server certificate and a "
                          "client certificate for cluster member NAME (repeat for each)")
    pki.add_argument("--etcd-host", action="append", default=[], metavar="HOST",
                     help="a name or address members reach etcd at, put in etcd's server "
                          "certificate beside localhost and 127.0.0.1 (repeat for each)")
    return p


def _raise_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    """The ``cpn-lab`` command. Returns the exit status: 0 ok, 1 loss, 2 error."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cpn-lab: %(message)s")
    # The Mininet CLI prints at level "output"; check keeps Mininet quiet.
    verbose = getattr(args, "verbose", False)
    setLogLevel("info" if verbose else "output" if args.command == "up" else "warning")
    # SIGTERM/SIGHUP unwind like Ctrl-C, through the finally clauses that tear the net down.
    previous = {sig: signal.signal(sig, _raise_on_signal)
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return _run(args)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _pki(args: argparse.Namespace) -> int:
    result = make_pki(args.dir, force=args.force, days=args.days)
    files = result.files
    for path in result.made:
        print(f"made  {path}")
    for path in result.kept:
        print(f"kept  {path}")
    print(f"controller: cpn-controller --ofp-tls-cert {files.controller_cert} --ofp-tls-key "
          f"{files.controller_key} --ofp-tls-ca {files.ca_cert}")
    print(f"switches:   cpn-lab up FILE --controller ssl:127.0.0.1:6653 --tls-dir {files.dir} "
          f"(or ovs-vsctl set-ssl {files.switch_key} {files.switch_cert} {files.ca_cert})")
    if args.etcd_member or args.etcd_host:
        etcd = make_etcd_pki(args.dir, args.etcd_member, force=args.force, days=args.days,
                             hosts=args.etcd_host)
        for path in etcd.made:
            print(f"made  {path}")
        for path in etcd.kept:
            print(f"kept  {path}")
        e = etcd.files
        print(f"etcd:       etcd --cert-file {e.server_cert} --key-file {e.server_key} "
              f"--trusted-ca-file {e.ca_cert} --client-cert-auth (https:// client URLs)")
        for member in args.etcd_member:
            print(f"member {member}: cpn-controller --member-id {member} --etcd-ca {e.ca_cert} "
                  f"--etcd-cert {e.client_cert(member)} --etcd-key {e.client_key(member)}")
    return 0


def _controllers(args: argparse.Namespace) -> list[ControllerAddress]:
    """The --controller addresses; ssl: ones need --tls-dir and --tls-dir needs one."""
    controllers = [parse_controller(c) for c in args.controller]
    tls = any(c.protocol == "ssl" for c in controllers)
    if tls and args.tls_dir is None:
        raise LabError("an ssl: controller needs --tls-dir DIR (make it with 'cpn-lab pki DIR')")
    if args.tls_dir is not None and not tls:
        raise LabError("--tls-dir is for ssl: controllers (--controller ssl:HOST:PORT)")
    return controllers


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "pki":
            return _pki(args)
        controllers = _controllers(args) if args.command != "clean" else []
        require_root()
        if args.command == "clean":
            probe_environment()
            removed = cleanup_stale()
            print("removed: " + (", ".join(removed) if removed else "nothing"))
            return 0
        topology = load_topology_argument(args.file)
        lab = LabNetwork(topology, controllers=controllers,
                         tls=pki_files(args.tls_dir) if args.tls_dir is not None else None)
        try:
            print(f"topology {topology.name}: {len(topology.nodes)} switches, "
                  f"{len(topology.hosts)} hosts, {len(topology.links)} links")
            up = lab.start(timeout_s=args.timeout)
            print(f"network up in {up.total_s:.1f} s (build {up.build_s:.1f} s, "
                  f"start {up.start_s:.1f} s, ready {up.ready_s:.1f} s)")
            if args.command == "up":
                print(lab.plan.names_table())
                example = ""
                if len(topology.hosts) >= 2:
                    example = (f" (e.g. '{lab.plan.host(topology.hosts[0].name)} ping "
                               f"{lab.plan.host(topology.hosts[-1].name)}')")
                print(f"Mininet CLI: use the lab names above{example}; 'exit' tears down.")
                lab.cli()
                return 0
            return _check(lab, args)
        finally:
            lab.stop()
    except CpnError as exc:
        print(f"cpn-lab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cpn-lab: interrupted; network torn down", file=sys.stderr)
        return 130


def _check(lab: LabNetwork, args: argparse.Namespace) -> int:
    hosts = lab.topology.hosts
    if len(hosts) >= 2:
        # A first answered ping shows forwarding works before the matrix counts losses.
        lab.wait_until_reachable(hosts[0].name, hosts[-1].name, timeout_s=30.0)
    t0 = time.monotonic()
    matrix = lab.ping_matrix(count=args.count, force_all=args.all_pairs)
    took = time.monotonic() - t0
    print(f"ping matrix: {matrix.description} ({took:.1f} s)")
    if len(matrix.hosts) <= 12 and len(matrix.results) == len(hosts) * (len(hosts) - 1):
        print(matrix.matrix_table())
        print()
    print(matrix.summary_table(lab.plan))
    failed = matrix.failed
    if failed:
        shown = ", ".join(f"{r.src}->{r.dst} ({r.received}/{r.sent})" for r in failed[:20])
        print(f"LOSS: {len(failed)} of {len(matrix.results)} pairs lost packets: {shown}"
              + (" ..." if len(failed) > 20 else ""))
        return 1
    print(f"OK: {len(matrix.results)} pairs, {matrix.sent} echo requests, 0% loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
