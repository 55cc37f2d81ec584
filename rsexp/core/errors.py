"""The core's error classes, importable without torch (the command line catches them
before it has imported anything heavy)."""

from __future__ import annotations


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or of another format version."""


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the terms."""


class UnknownNameError(LookupError):
    """A registry was asked for a name it does not hold; the message lists the valid ones."""
