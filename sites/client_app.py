"""FedShift ClientApp: thin Flower entry point; the work is in fedshift.sitework.

A hospital's SuperNode loads ``sites.client_app:app`` and passes its data folder as node
config ``data-path`` (optionally ``work-dir``).

A SuperNode starts a fresh ClientApp process for every message, so this module imports
only what the light secure-aggregation steps need; :mod:`fedshift.fl.client` (torch, MONAI:
several seconds to import) is imported by the handlers that train or evaluate.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedshift.fl import client_secure, keys


def make_client_app(defaults: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``defaults`` is a flat run config used under Flower's run config."""
    app = ClientApp()

    @app.query(keys.READINESS_HANDLER)
    def readiness(msg: Message, context: Context) -> Message:
        from fedshift.fl import client

        return client.handle_readiness(msg, context, defaults)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        from fedshift.fl import client

        return client.handle_train(msg, context, defaults)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        from fedshift.fl import client

        return client.handle_evaluate(msg, context, defaults)

    # secure statistics rounds and the reference (only sent when fed.secure_stats is on)
    @app.query(keys.SECAGG_KEYS_HANDLER)
    def secagg_keys(msg: Message, context: Context) -> Message:
        return client_secure.handle_keys(msg, context, defaults)

    @app.query(keys.SECAGG_SHARES_HANDLER)
    def secagg_shares(msg: Message, context: Context) -> Message:
        return client_secure.handle_shares(msg, context, defaults)

    @app.query(keys.SECAGG_MASKED_HANDLER)
    def secagg_masked(msg: Message, context: Context) -> Message:
        return client_secure.handle_masked(msg, context, defaults)

    @app.query(keys.SECAGG_UNMASK_HANDLER)
    def secagg_unmask(msg: Message, context: Context) -> Message:
        return client_secure.handle_unmask(msg, context, defaults)

    @app.query(keys.REFERENCE_HANDLER)
    def reference(msg: Message, context: Context) -> Message:
        return client_secure.handle_reference(msg, context, defaults)

    return app


app = make_client_app()
