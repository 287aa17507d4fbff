"""FedShift ServerApp: the thin Flower entry point the coordinator runs.

``flwr run .`` loads ``server.server_app:app``; the run config (pyproject
``[tool.flwr.app.config]`` or ``--run-config``) holds the flattened RunConfig. The loop is
:func:`fedshift.fl.server.run_coordinator`.
"""

from fedshift.fl.apps import make_server_app

app = make_server_app()
