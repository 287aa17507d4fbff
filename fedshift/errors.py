"""Exceptions raised by FedShift. One module, so callers know what to catch."""

from __future__ import annotations


class FedShiftError(Exception):
    """Base class of every error FedShift raises on purpose."""


class UsageError(FedShiftError):
    """Bad input from the person running a command: a missing folder, an unknown name.

    The command line prints the message on one line and exits with status 2.
    """


class ConfigError(UsageError):
    """A configuration value is missing, of the wrong type or out of range."""


class BundleError(UsageError):
    """A model package cannot be used: a file is missing or unreadable, a tensor has the
    wrong shape, or it was written by another major FedShift version. The message names
    the file."""


class DataError(FedShiftError):
    """A data file cannot be used. Carries the readiness finding code and the file."""

    def __init__(self, code: str, message: str, file: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.file = file


class SiteError(UsageError):
    """A site cannot do what it was asked: it has no usable training case, or a step that
    needs the federation's reference (alignment, a Bures map) ran before one arrived.

    The message names the site and what to do; it never holds a file name or a value of
    the site's data. A usage error: the command line prints it on one line.
    """


class SecureAggregationError(FedShiftError):
    """Secure aggregation refused to go on: too few sites or shares, a tampered or
    misaddressed ciphertext, a message out of order or inconsistent with the round.

    The message names the round, the site(s) and the value at fault; it never holds a
    key, a share or a site's statistics.
    """
