"""Make the federation's CA, the SuperLink's TLS certificate and per-site keys.

No openssl or ssh-keygen needed. All keys are ECDSA P-384; private keys are written with
mode 0600 and never overwritten unless --force is given.

  ca      the certificate authority: OUT/ca.crt (give to every site), OUT/ca.key (keep safe)
  server  the SuperLink's certificate OUT/server.pem + OUT/server.key, signed by the CA,
          valid for every --host (DNS names and IP addresses the sites dial)
  site    a site's key pair: OUT/NAME.key (stays at the site) and OUT/NAME.pub (send it to
          the coordinator, who enrolls it); run it at the site
  init    ca + server + site keys in one go (loopback tests and demos)
  check   verify that a server certificate is signed by a CA and names a host

Examples:
  fedshift certs ca --out certs
  fedshift certs server --ca certs --host fedshift.example.org --host 10.0.0.5 --out certs
  fedshift certs site site0 --out keys
  fedshift certs init --out deploy --host localhost --host 127.0.0.1 --sites site0 site1 site2
  fedshift certs check --ca certs/ca.crt --cert certs/server.pem --host localhost
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from fedshift.deploy import certs

HELP = "make the CA, the SuperLink's TLS certificate and per-site keys (ECDSA P-384)"
log = logging.getLogger("fedshift.certs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    ca = sub.add_parser("ca", help="create the certificate authority")
    ca.add_argument("--out", type=Path, required=True, help="folder for ca.crt and ca.key")
    ca.add_argument("--name", default="FedShift CA", help="CA common name (%(default)s)")
    ca.add_argument("--days", type=int, default=certs.CA_DAYS, help="validity (%(default)s)")

    server = sub.add_parser("server", help="create the SuperLink's TLS certificate")
    server.add_argument("--ca", type=Path, required=True, help="folder holding ca.crt, ca.key")
    _add_hosts(server)
    server.add_argument("--out", type=Path, required=True, help="folder for server.pem/.key")
    server.add_argument(
        "--days", type=int, default=certs.SERVER_DAYS, help="validity in days (%(default)s)"
    )

    site = sub.add_parser("site", help="create a site's node-authentication key pair")
    site.add_argument("names", nargs="+", metavar="NAME", help="site name(s), e.g. site0")
    site.add_argument("--out", type=Path, required=True, help="folder for NAME.key, NAME.pub")

    init = sub.add_parser("init", help="ca + server + site keys in one folder tree")
    init.add_argument(
        "--out",
        type=Path,
        required=True,
        help="writes OUT/certs/{ca,server}.* and OUT/keys/NAME.{key,pub}",
    )
    _add_hosts(init)
    init.add_argument("--sites", nargs="*", default=[], metavar="NAME", help="site names")

    check = sub.add_parser("check", help="verify a server certificate against a CA")
    check.add_argument("--ca", type=Path, required=True, help="ca.crt")
    check.add_argument("--cert", type=Path, required=True, help="server.pem")
    check.add_argument("--host", default=None, help="a host name or IP it must name")

    for action in (ca, server, site, init):
        action.add_argument(
            "--force", action="store_true", help="replace existing files (old keys stop working)"
        )


def _add_hosts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        dest="hosts",
        action="append",
        required=True,
        metavar="HOST",
        help="DNS name or IP address of the SuperLink, repeatable "
        "(e.g. --host localhost --host 127.0.0.1)",
    )


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "ca":
        files = certs.make_ca(args.out, common_name=args.name, days=args.days, force=args.force)
        _say(f"CA: {files.cert} (give to every site), {files.key} (keep private, offline)")
    elif action == "server":
        ca = certs.CertFiles(cert=args.ca / "ca.crt", key=args.ca / "ca.key")
        files = certs.make_server_cert(args.out, args.hosts, ca, days=args.days, force=args.force)
        _say(f"server certificate {files.cert} for {', '.join(args.hosts)}; key {files.key}")
    elif action == "site":
        for name in args.names:
            pair = certs.make_site_keypair(args.out, name, force=args.force)
            _say(
                f"site {name}: private key {pair.private_key} (stays at the site), "
                f"public key {pair.public_key} (send to the coordinator)"
            )
    elif action == "init":
        ca = certs.make_ca(args.out / "certs", force=args.force)
        server = certs.make_server_cert(args.out / "certs", args.hosts, ca, force=args.force)
        _say(f"CA {ca.cert}; server certificate {server.cert} for {', '.join(args.hosts)}")
        for name in args.sites:
            pair = certs.make_site_keypair(args.out / "keys", name, force=args.force)
            _say(f"site {name}: {pair.private_key}, {pair.public_key}")
    elif action == "check":
        cert = certs.verify_server_cert(args.cert, args.ca, host=args.host)
        names = ", ".join(str(n.value) for n in certs.server_sans(cert))
        _say(
            f"{args.cert}: signed by {args.ca}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, names {names}"
        )
    return 0


def _say(message: str) -> None:
    print(message)
