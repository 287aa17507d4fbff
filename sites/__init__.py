"""What a hospital runs: the FedShift ClientApp (a Flower SuperNode loads it)."""
