"""The ClientApp and ServerApp, built from FedShift's handlers (the deployment's and the
simulation's own). ``sites/client_app.py`` and ``server/server_app.py`` only call these.

A SuperNode starts a fresh ClientApp process for every message, so this module imports
only what the light secure-aggregation steps need; :mod:`fedshift.fl.client` (torch, MONAI:
several seconds to import) is imported by the handlers that train or evaluate, and
:mod:`fedshift.fl.server` by the ServerApp's main.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context, Message
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from fedshift.fl import client_secure, keys
from fedshift.fl.approval import approval_mod
from fedshift.fl.audit import make_audit_mod


def make_client_app(defaults: Mapping[str, Any] | None = None) -> ClientApp:
    """A ClientApp; ``defaults`` is a flat run config used under Flower's run config."""
    # only the approved code answers; every reply it sends is logged at the site
    app = ClientApp(mods=[approval_mod, make_audit_mod(defaults)])

    @app.query(keys.READINESS_HANDLER)
    def readiness(msg: Message, context: Context) -> Message:
        from fedshift.fl import client

        return client.handle_readiness(msg, context, defaults)

    @app.query(keys.MODEL_HANDLER)
    def model(msg: Message, context: Context) -> Message:
        from fedshift.fl import client

        return client.handle_model(msg, context, defaults)

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


def make_server_app(defaults: Mapping[str, Any] | None = None) -> ServerApp:
    """A ServerApp; ``defaults`` is a flat run config used under Flower's run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        from fedshift.fl.records import run_config
        from fedshift.fl.server import run_coordinator

        run_coordinator(grid, run_config(context, defaults))

    return app
