"""One error hierarchy: every user error lidsplit raises is a :class:`LidsplitError`.

The command line has one rule for them (``lidsplit.cli.main``): a ``LidsplitError`` ends the command
with exit status ``code`` (2 unless set) and its message on one line, no traceback. Anything else that
escapes is a bug and keeps its traceback. So a message must say, on its own, what was wrong (the
argument, file or directory by name), what was expected, and what to do.

Subclasses say *what kind* of input was wrong; each also derives from the built-in exception that code
written before this hierarchy caught (``ValueError``, ``RuntimeError``, ``FileNotFoundError``), so old
``except`` clauses keep working:

- :class:`ConfigError` (``ValueError``): a config key, value or file that cannot be used.
- :class:`RunDirectoryError` (``RuntimeError``): a run directory (``--out``) that cannot be used: not a
  directory, not writable, or held by another process (:class:`RunLockedError`).
- :class:`RunMismatchError` (``RunDirectoryError``): resuming would mix two runs: a run directory,
  checkpoint or search history that belongs to another run (the split run's ``SplitRunError``, the
  training checkpoint's ``CheckpointError`` and the search history's ``HistoryError`` subclass it where
  they are defined).
- :class:`DamagedFileError` (``ValueError``): a file lidsplit wrote earlier cannot be read back
  (truncated, zero-filled, edited); names the file and what to delete to re-create it.
- :class:`DataNotFoundError` (``FileNotFoundError``): dataset files are not where lidsplit was told to look.
- :class:`CLIError`: a bad command-line argument combination.

To add one: subclass the closest class here (never ``Exception`` directly) and re-export it from the
package that raises it.
"""

from __future__ import annotations

__all__ = [
    "LidsplitError",
    "ConfigError",
    "RunDirectoryError",
    "RunLockedError",
    "RunMismatchError",
    "DamagedFileError",
    "DataNotFoundError",
    "CLIError",
]


class LidsplitError(Exception):
    """A user error: reported as one line, exit status ``code`` (default 2), no traceback."""

    code: int = 2

    def __init__(self, message: str = "", *, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class ConfigError(LidsplitError, ValueError):
    """A config that cannot be used: unknown key, wrong type or value, unreadable file, a change to a
    finished stage."""


class RunDirectoryError(LidsplitError, RuntimeError):
    """A run directory that cannot be used: not a directory, not writable, foreign, or held by another
    process."""


class RunLockedError(RunDirectoryError):
    """Another live process holds the run directory's lock (the message names its pid, host and command)."""


class RunMismatchError(RunDirectoryError):
    """Resuming would mix two runs: the directory / checkpoint / history belongs to another run."""


class DamagedFileError(LidsplitError, ValueError):
    """A file lidsplit wrote earlier cannot be read back (truncated, zero-filled, edited by hand).

    ``path``, ``what`` it is, ``why`` it cannot be read and the ``remedy`` make the message."""

    def __init__(self, path: object, what: str, why: str, remedy: str) -> None:
        super().__init__(f"{path}: this {what} is damaged ({why}) and cannot be read; {remedy}")
        self.path, self.what, self.why, self.remedy = path, what, why, remedy


class DataNotFoundError(LidsplitError, FileNotFoundError):
    """The dataset files are not where lidsplit was told (or allowed) to look."""


class CLIError(LidsplitError):
    """A user error a subcommand reports without a traceback; ``code`` is the exit status (default 2)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message, code=code)
