"""Subcommands of the ``fedshift`` command line, one module each."""
