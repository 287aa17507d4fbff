"""What the coordinator runs: the FedShift ServerApp (a Flower SuperLink runs it)."""
