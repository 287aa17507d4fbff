"""The ``fedshift`` command.

Each subcommand lives in its own module exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; this file only registers them.
Usage errors (:class:`fedshift.errors.UsageError`) print one line and exit with 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from fedshift import __version__
from fedshift.errors import UsageError

#: subcommand -> module implementing it
COMMANDS: dict[str, str] = {
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
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedshift",
        description="Federated 3D MRI segmentation across hospitals, with dataset-shift "
        "diagnosis and optimal-transport alignment.",
    )
    parser.add_argument("--version", action="version", version=f"fedshift {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            name,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
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
