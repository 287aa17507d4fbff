"""Flower adapters: the only package that imports flwr. It converts messages to and from
plain FedShift calls (:class:`fedshift.site.worker.SiteWorker`) and runs the coordinator loop."""
