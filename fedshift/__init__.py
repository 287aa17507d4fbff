"""FedShift: federated 3D MRI segmentation with dataset-shift diagnosis and OT alignment."""

__version__ = "0.1.0"
