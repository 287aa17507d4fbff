"""Deployment: certificates and site keys, site/coordinator configs, Flower processes."""
