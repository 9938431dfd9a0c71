"""The one error hierarchy of recsim, and the process exit codes it maps to.

The library raises these; only the CLI turns them into an exit code and an
``Error: <sentence>`` line. A message is one sentence that names the file, row
or column, what was expected, and what to do.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every recsim command (documented in docs/cli.md)."""

    OK = 0  # success; for a gate: ship
    NO_SHIP = 1  # a gate decided: do not ship
    USAGE = 2  # usage or input error
    INCONCLUSIVE = 3  # a gate could not decide: not enough evidence either way
    INVALID = 4  # the experiment is invalid: a health check failed
    INTERNAL = 70  # internal error (EX_SOFTWARE); a bug in recsim


class RecsimError(Exception):
    """Base of every error recsim raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UserError(RecsimError):
    """A mistake in what the user gave: a file, a flag, a name."""

    exit_code = ExitCode.USAGE


class InputFileError(UserError):
    """A user's input file is missing, unreadable or in an unknown format."""


class SchemaError(UserError):
    """A user's table lacks a required column or has one of the wrong type."""


class DatasetError(UserError):
    """A dataset folder is missing, incomplete, or would be changed unsafely."""


class ConfigError(UserError):
    """A configuration value or file is invalid."""


class UnknownNameError(UserError):
    """A name (model, metric, estimator...) is not among the registered ones."""

    def __init__(self, kind: str, name: str, available: list[str] | tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.available = sorted(available)
        super().__init__(f"Unknown {kind} '{name}'. Available: {', '.join(self.available)}.")


def check_int(value: object, name: str, minimum: int) -> None:
    """Raise `ConfigError` unless ``value`` is a whole number (no bool) of at least ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be a whole number of at least {minimum}; got {value!r}.")


class ExperimentInvalidError(RecsimError):
    """An experiment failed a health check (for example sample-ratio mismatch)."""

    exit_code = ExitCode.INVALID


class InternalError(RecsimError):
    """An invariant of recsim itself was broken; this is a bug."""

    exit_code = ExitCode.INTERNAL


class RecsimWarning(UserWarning):
    """A warning about the user's data that does not stop the work."""
