"""The ClientApp mod that logs every message a site sends (:mod:`fedshift.audit` holds
the log's format and reader): it runs after each handler, describes the reply's records
(array names, shapes, dtypes, bytes; config and metric keys, never their values) and
appends the description (and the size of the message it answers) to the site's own
``WORK/audit/outgoing.jsonl`` before the reply leaves. A reply that cannot be logged does
not leave: the mod's error becomes the reply.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.common import serde

from fedshift.audit import append_entry
from fedshift.fl import keys
from fedshift.fl.node import node_site

#: context.state key: this node's site name and work folder (node-local, never sent)
STATE_AUDIT = "fedshift.audit-site"


def describe(content: RecordDict) -> dict[str, Any]:
    """The records of ``content``: every array's record, name, shape, dtype and bytes;
    the keys of every config and metric record."""
    arrays = [
        {
            "record": record_name,
            "name": name,
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            "bytes": len(array.data),
        }
        for record_name, record in content.array_records.items()
        for name, array in record.items()
    ]
    return {
        "arrays": arrays,
        "configs": {k: sorted(r) for k, r in content.config_records.items()},
        "metrics": {k: sorted(r) for k, r in content.metric_records.items()},
    }


def _round(msg: Message) -> int | None:
    config = msg.content.config_records.get(keys.CONFIG)
    if config is None:
        return None
    for key in (keys.SERVER_ROUND, keys.STATS_ROUND):
        if key in config:
            return int(config[key])  # type: ignore[arg-type]
    return None


def _group(msg: Message) -> str:
    """The secure round a message belongs to (its name binds the round's keys; a train
    message of ``fed.secure_updates`` carries it in its config), else Flower's group."""
    config = msg.content.config_records.get(keys.CONFIG)
    if config is not None and keys.ROUND_ID in config:
        return str(config[keys.ROUND_ID])
    return msg.metadata.group_id


def make_audit_mod(defaults: Mapping[str, Any] | None = None) -> Mod:
    """The mod for :func:`fedshift.fl.apps.make_client_app` (``defaults``: the app's flat
    run config, to find the site's work folder as its handlers do)."""
    from fedshift.site.folders import site_work_dir

    def site_folders(context: Context) -> tuple[str, str]:
        """(site name, work folder), found once per node and kept in its local state."""
        if STATE_AUDIT not in context.state.config_records:
            cfg, data, work = node_site(context, defaults)
            folder = str(site_work_dir(cfg, data, work))
            context.state[STATE_AUDIT] = ConfigRecord({"site": data.resolve().name, "work": folder})
        kept = context.state.config_records[STATE_AUDIT]
        return str(kept["site"]), str(kept["work"])

    def audit(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        site, work_dir = site_folders(context)
        entry = {
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "site": site,
            "message_type": msg.metadata.message_type,
            "group": _group(msg),
            "round": _round(msg),
            "bytes": serde.message_to_proto(reply).ByteSize(),
            "received_bytes": serde.message_to_proto(msg).ByteSize(),
            "error": reply.error.reason if reply.has_error() else None,
            **describe(reply.content if reply.has_content() else RecordDict()),
        }
        append_entry(work_dir, entry)
        return reply

    return audit
