"""The ``fedshift`` command.

Each subcommand lives in its own module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; this file only registers them. A
module that takes ``key=value`` settings as a positional list names it in ``SETTINGS``
(the argument's dest): settings given after an option (``adapt M S --out P lr=1e-3``,
which argparse alone refuses) are added to that list.
Usage errors (:class:`fedshift.errors.UsageError`, config errors included) print one line
and exit with 2. ``-v`` (debug logging, Flower's and Ray's own messages) works before or
after the subcommand; the console itself is :mod:`fedshift.logs`'s.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fedshift import __version__, logs
from fedshift.errors import UsageError

VERBOSE_HELP = "debug logging, with Flower's and Ray's own messages"
VERBOSE_FLAGS = ("-v", "--verbose")
#: subcommand -> module implementing it
COMMANDS: dict[str, str] = {
    "config": "fedshift.commands.config",
    "synth": "fedshift.commands.synth",
    "readiness": "fedshift.commands.readiness",
    "mosaic": "fedshift.commands.mosaic",
    "simulate": "fedshift.commands.simulate",
    "baseline": "fedshift.commands.baseline",
    "diagnose": "fedshift.commands.diagnose",
    "certs": "fedshift.commands.certs",
    "site": "fedshift.commands.site",
    "coordinator": "fedshift.commands.coordinator",
    "predict": "fedshift.commands.predict",
    "evaluate": "fedshift.commands.evaluate",
    "adapt": "fedshift.commands.adapt",
    "audit": "fedshift.commands.audit",
    "app-hash": "fedshift.commands.app_hash",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedshift",
        description="Federated 3D MRI segmentation across hospitals, with dataset-shift "
        "diagnosis and optimal-transport alignment.",
    )
    parser.add_argument("--version", action="version", version=f"fedshift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    # the same flag after the subcommand, for its --help (main() takes -v anywhere)
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            parents=[after],
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run, _settings=getattr(module, "SETTINGS", None))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # -v anywhere (argparse alone refuses it between two positionals: `config show -v k=v`)
    end = argv.index("--") if "--" in argv else len(argv)
    verbose = any(a in VERBOSE_FLAGS for a in argv[:end])
    args, extra = parser.parse_known_args(
        [a for a in argv[:end] if a not in VERBOSE_FLAGS] + argv[end:]
    )
    dest = getattr(args, "_settings", None)
    if extra and dest and all("=" in a and not a.startswith("-") for a in extra):
        getattr(args, dest).extend(extra)  # settings after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.verbose = verbose
    logs.setup(verbose=verbose)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"fedshift {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fedshift {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
