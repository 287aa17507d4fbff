"""What left the building: the log of every message a site sent, and its summary.

Each site appends one JSON line per outgoing message to ``WORK/audit/outgoing.jsonl``
(written by the ClientApp mod :mod:`fedshift.fl.audit`; ``WORK`` is the site's private
work folder, ``RUN/sites/<site>`` in a simulation). A line::

    {"time": "2026-12-06T23:50:01+00:00", "site": "site0", "message_type": "train",
     "group": "", "round": 3, "bytes": 2476211, "received_bytes": 2476180, "error": null,
     "arrays": [{"record": "arrays", "name": "0", "shape": [16, 1, 3, 3, 3],
                 "dtype": "float32", "bytes": 1728}, ...],
     "configs": {"site": ["name"]}, "metrics": {"metrics": ["loss", "num-examples"]}}

``bytes`` is the whole reply as Flower serialises it, ``received_bytes`` the message it
answers (what the coordinator sent); ``round`` the server round (train,
evaluate) or the round of the global model (statistics), None where the message has
neither; ``group`` names the secure round a message belongs to (a secure model-update
round's train message and its secure-sum steps share it), else Flower's group id. No
value of a config or metric record is logged, only its keys: the log says what left, the
run's metrics say what it was.

:func:`summarise` turns a site's lines into what ``fedshift audit`` prints.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedshift.errors import UsageError

AUDIT_FILE = Path("audit") / "outgoing.jsonl"
#: an array with at least this many dimensions, each at least MIN_IMAGE_SIDE long, is
#: shaped like an image or a label map (a conv kernel is (out, in, 3, 3, 3))
IMAGE_DIMS, MIN_IMAGE_SIDE = 3, 8


def append_entry(work_dir: str | Path, entry: Mapping[str, Any]) -> Path:
    """Append ``entry`` as one line to ``work_dir``'s audit log; returns the log's path."""
    path = Path(work_dir) / AUDIT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as log:
        log.write(json.dumps(entry, sort_keys=True) + "\n")
    return path


def image_like(shape: Iterable[int]) -> bool:
    """Whether an array of ``shape`` could hold an image or a label map."""
    dims = list(shape)
    return sum(d >= MIN_IMAGE_SIDE for d in dims) >= IMAGE_DIMS


def find_logs(path: str | Path) -> dict[str, Path]:
    """Site -> audit log under ``path``: a run folder (``RUN/sites/*/audit``) or one site's
    work folder (``WORK/audit``)."""
    root = Path(path)
    if not root.is_dir():
        raise UsageError(f"{str(root)!r} is not a folder (give a run folder or a site work folder)")
    if (root / AUDIT_FILE).is_file():
        return {root.resolve().name: root / AUDIT_FILE}
    logs = {p.parent.parent.name: p for p in sorted(root.glob(f"sites/*/{AUDIT_FILE}"))}
    if not logs:
        raise UsageError(
            f"{str(root)!r} holds no {AUDIT_FILE} and no sites/*/{AUDIT_FILE}: not a run "
            "folder or site work folder of a run made with this version"
        )
    return logs


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The entries of one audit log, in the order they were sent."""
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not a JSON line ({exc.msg})") from None
    return entries


@dataclass
class AuditSummary:
    """What one site sent.

    Attributes
    ----------
    messages : message type -> number sent
    bytes : message type -> bytes sent
    bytes_per_round : server round -> bytes of that round's train replies (with the
        secure-sum steps of a secure model-update round)
    received_per_round : server round -> bytes of the messages those replies answer
    arrays : (message type, record, dtype) -> number of arrays sent
    image_like : entries (type, record, name, shape) of arrays shaped like an image
    plain_float : message types whose replies carried float arrays (not masked)
    errors : number of error replies
    """

    messages: Counter = field(default_factory=Counter)
    bytes: Counter = field(default_factory=Counter)
    bytes_per_round: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    received_per_round: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    arrays: Counter = field(default_factory=Counter)
    image_like: list[tuple[str, str, str, tuple[int, ...]]] = field(default_factory=list)
    plain_float: set[str] = field(default_factory=set)
    errors: int = 0


def summarise(entries: Iterable[Mapping[str, Any]]) -> AuditSummary:
    """Counts, bytes and flags of one site's log entries."""
    out = AuditSummary()
    entries = list(entries)
    # a secure model-update round's later steps share its train message's group
    train_round = {
        e["group"]: int(e["round"])
        for e in entries
        if e["message_type"] == "train" and e.get("group") and e.get("round") is not None
    }
    for e in entries:
        kind = str(e["message_type"])
        out.messages[kind] += 1
        out.bytes[kind] += int(e["bytes"])
        out.errors += e.get("error") is not None
        rnd = e.get("round") if kind == "train" else train_round.get(e.get("group", ""))
        if rnd is not None:
            out.bytes_per_round[int(rnd)] += int(e["bytes"])
            out.received_per_round[int(rnd)] += int(e.get("received_bytes", 0))
        for a in e.get("arrays", []):
            out.arrays[(kind, a["record"], a["dtype"])] += 1
            if image_like(a["shape"]):
                out.image_like.append((kind, a["record"], a["name"], tuple(a["shape"])))
            if a["dtype"].startswith("float"):
                out.plain_float.add(kind)
    return out
