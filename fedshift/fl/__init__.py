"""Flower adapters: the only package that imports flwr. It converts messages to and from
plain FedShift calls (:class:`fedshift.sitework.SiteWorker`) and runs the coordinator loop."""
