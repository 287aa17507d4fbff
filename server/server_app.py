"""FedShift ServerApp: thin Flower entry point; the loop is fedshift.fl.server.

``flwr run .`` loads ``server.server_app:app``; the run config (pyproject
``[tool.flwr.app.config]`` or ``--run-config``) holds the flattened RunConfig.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedshift.fl.records import run_config
from fedshift.fl.server import run_coordinator


def make_server_app(defaults: Mapping[str, Any] | None = None) -> ServerApp:
    """A ServerApp; ``defaults`` is a flat run config used under Flower's run config."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_coordinator(grid, run_config(context, defaults))

    return app


app = make_server_app()
