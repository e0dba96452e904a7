"""Errors of the model zoo. Each one says what went wrong and what the user can do about it."""
from __future__ import annotations


class ZooError(Exception):
    """Base class of every model-zoo error."""


class UnknownModelError(ZooError, LookupError):
    """A model name that no zoo file registers."""

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class ZooEntryError(ZooError, ValueError):
    """A malformed zoo file or entry (missing or invalid key)."""


class WeightsNotAvailableError(ZooError, FileNotFoundError):
    """A weights file that is neither on disk nor obtainable (offline and not cached, no Hub location,
    or the Hub refused the request)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ChecksumError(ZooError, ValueError):
    """A weights file whose sha256 differs from the registered one; it is never loaded."""
