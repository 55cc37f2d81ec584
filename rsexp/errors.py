"""Every error class a user can meet, in one light module: the command line imports
this (not torch, timm or the trackers) to tell "the input is wrong" from a bug, so
``rsexp --help`` and ``rsexp config`` start at once. Each class is also importable
from the module that raises it."""

from __future__ import annotations

from rsexp.core.errors import CheckpointError, NonFiniteLossError, UnknownNameError
from rsexp.core.settings import ConfigError


class DatasetNotFoundError(FileNotFoundError):
    """A real dataset is not where the config says; the message says how to get it."""


class DatasetLayoutError(ValueError):
    """A dataset's index files are not as released; names the file (and line)."""


class VideoDecodeError(RuntimeError):
    """Videos of a split could not be decoded; names them and where the full list is."""


class GuidanceFormatError(ValueError):
    """The guidance file does not follow the released format; says where."""


class GuidanceJobError(ValueError):
    """``rsexp guidance`` cannot start: says which setting or file and why."""


class OpenAIKeyMissing(RuntimeError):
    """guidance.annotator=openai without OPENAI_API_KEY in the environment."""


class TrackingError(RuntimeError):
    """A tracking backend cannot be reached or refused a write; says which and why."""


class SourceError(ValueError):
    """``--source`` names nothing readable; says what was expected."""


class StorageError(ValueError):
    """A ``--storage`` URL that cannot work; says what to fix, create or install."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM: the run was checkpointed and marked KILLED."""


class DiskFullError(OSError):
    """No room to write a file; names it and the free space. Nothing is half-written."""


class RunFileError(ValueError):
    """A run folder's file that cannot be read (a half-written line, a damaged file);
    names the file and the line."""


class RunInUse(RuntimeError):
    """Another process holds the run folder (or a sweep's confirmation stage); names it."""


class ResumeRefused(ValueError):
    """A resume that would change the run (overrides, changed inputs); says what and how
    to go on. The run's record is left as it was."""


class SweepStopped(RuntimeError):
    """The sweep ended without a result to confirm (trials failing the same way, or no
    trial completed); says why and where the logs are."""


class JobFailed(RuntimeError):
    """A confirmation or paper run failed; names its folder and its error."""


# Errors that mean "the input is wrong" (config, data, guidance, a checkpoint, a
# tracker): one clear line and exit 2. Anything else is a bug and keeps its traceback.
USER_ERRORS = (
    ConfigError,
    FileNotFoundError,
    FileExistsError,
    UnknownNameError,
    CheckpointError,
    TrackingError,
    DatasetLayoutError,
    VideoDecodeError,
    GuidanceFormatError,
    GuidanceJobError,
    OpenAIKeyMissing,
    SourceError,
    RunInUse,
    ResumeRefused,
    DiskFullError,
    RunFileError,
    StorageError,
)

__all__ = [
    "USER_ERRORS",
    "CheckpointError",
    "ConfigError",
    "DatasetLayoutError",
    "DatasetNotFoundError",
    "DiskFullError",
    "GuidanceFormatError",
    "GuidanceJobError",
    "Interrupted",
    "JobFailed",
    "NonFiniteLossError",
    "OpenAIKeyMissing",
    "ResumeRefused",
    "RunFileError",
    "RunInUse",
    "SourceError",
    "StorageError",
    "SweepStopped",
    "TrackingError",
    "UnknownNameError",
    "VideoDecodeError",
]
