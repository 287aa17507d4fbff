"""Print what each site sent to the coordinator: every message type, its bytes, the
arrays it carried (record, dtype, how many), bytes per training round, and two flags: any
array shaped like an image or a label map (there should be none), and which messages
carried plain float arrays (model weights, unless fed.secure_updates is on; everything
else leaves as scalars or masked uint64).

Each site logs its own outgoing messages in WORK/audit/outgoing.jsonl (in a simulation
WORK is RUN/sites/<site>); a hospital reads its own log with its work folder.

Examples:
  fedshift audit runs/default                 # every site of a simulation
  fedshift audit /srv/fedshift/work           # one hospital's SuperNode work folder
  fedshift audit runs/default --json          # the summaries as JSON
"""

from __future__ import annotations

import argparse
import json

from fedshift.audit import AuditSummary, find_logs, read_log, summarise

HELP = "print what each site sent: messages, bytes per round, arrays, image-shaped flags"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="RUN_OR_WORK_DIR", help="run folder or site work folder")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON")


def run(args: argparse.Namespace) -> int:
    summaries = {site: summarise(read_log(path)) for site, path in find_logs(args.path).items()}
    if args.json:
        print(json.dumps({s: _as_json(a) for s, a in summaries.items()}, indent=1))
    else:
        for site, audit in summaries.items():
            print(_as_text(site, audit))
    return 1 if any(a.image_like for a in summaries.values()) else 0


def _as_json(a: AuditSummary) -> dict:
    return {
        "messages": dict(a.messages),
        "bytes": dict(a.bytes),
        "bytes_per_round": dict(a.bytes_per_round),
        "received_per_round": dict(a.received_per_round),
        "arrays": [[*k, n] for k, n in sorted(a.arrays.items())],
        "image_like": [list(x) for x in a.image_like],
        "plain_float": sorted(a.plain_float),
        "errors": a.errors,
    }


def _as_text(site: str, a: AuditSummary) -> str:
    lines = [f"site {site}: {sum(a.messages.values())} messages, {_mb(sum(a.bytes.values()))}"]
    for kind, n in sorted(a.messages.items()):
        lines.append(f"  {kind:<22} {n:>4} sent  {_mb(a.bytes[kind]):>10}")
    for (kind, record, dtype), n in sorted(a.arrays.items()):
        lines.append(f"  arrays  {kind:<22} {record:<14} {dtype:<8} x{n}")
    if a.bytes_per_round:
        per_round = ", ".join(
            f"{r}: {_mb(b)} / {_mb(a.received_per_round.get(r, 0))}"
            for r, b in sorted(a.bytes_per_round.items())
        )
        lines.append(f"  round: sent / received  {per_round}")
    floats = ", ".join(sorted(a.plain_float)) or "none"
    lines.append(f"  plain float arrays in  {floats}")
    if a.image_like:
        lines.append(f"  IMAGE-SHAPED ARRAYS SENT: {a.image_like}")
    else:
        lines.append("  image-shaped arrays    none")
    if a.errors:
        lines.append(f"  error replies          {a.errors}")
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.3f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
