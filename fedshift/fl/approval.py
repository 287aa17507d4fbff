"""The ClientApp mod that runs only the FedShift code the site approved: when the node
config names ``approved-app`` (a site.yaml's ``approved_app``, from ``fedshift
app-hash``), every message is refused, before any handler sees it, while the hash of the
code this ClientApp runs (:func:`fedshift.approval.code_sha256`) differs. Its limits are in
:mod:`fedshift.approval`."""

from __future__ import annotations

import logging

from flwr.app import Context, Message
from flwr.clientapp.typing import ClientAppCallable

from fedshift.approval import PACKAGE_DIR, code_sha256
from fedshift.errors import FedShiftError

#: node config key: the SHA-256 the site approved
APPROVED_APP = "approved-app"

log = logging.getLogger(__name__)


def approval_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    approved = str(context.node_config.get(APPROVED_APP, "")).strip().lower()
    if approved:
        running = code_sha256()
        if running != approved:
            why = (
                f"this site approved FedShift code {approved[:12]}..., but the app runs "
                f"{running[:12]}... ({PACKAGE_DIR}); the message is refused. Review the new "
                "version, then set approved_app in site.yaml to `fedshift app-hash`"
            )
            log.error(why)
            raise FedShiftError(why)
    return call_next(msg, context)
