"""FedShift ClientApp: the thin Flower entry point a hospital's SuperNode loads.

The SuperNode passes its data folder as node config ``data-path`` (optionally
``work-dir``); the handlers are in :mod:`fedshift.fl.apps` and the work in
:mod:`fedshift.site.worker`.
"""

from fedshift.fl.apps import make_client_app

app = make_client_app()
