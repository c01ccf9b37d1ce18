"""One run-directory mechanism: path checks, a lock held for a whole command, headed state files,
identities and their differences, atomic artefacts.

Everything lidsplit resumes (the split run, a training checkpoint, a search history, the pipeline's
stages, the evaluate stage's work) follows the same rules, written once here:

* **The path** (:func:`check_run_path`, :func:`create_run_dir`): ``--out ""`` is an error, not ``.``; a
  path below a regular file, on a read-only file system or without write permission gives a
  :class:`~lidsplit.common.errors.RunDirectoryError` saying so (exit 2), never ``OSError``'s traceback.
  :func:`writable` tells a command that only prints a finished run that it must not write.
* **The lock** (:class:`RunLock`): an OS file lock (``fcntl.flock`` on ``OUT/.lidsplit.lock``) held for
  the whole command by the *driver* process, the one that runs the command. A second command on the
  same directory exits 2 naming the holder (pid, host, command, start time). The OS drops the lock when
  its process dies, so a killed run never blocks the next one (the stale holder text is overwritten).
  Worker processes (Ray workers, data-parallel ranks) never take it: they write only their own artefacts
  under a directory their driver holds; a process started by ``torchrun`` with ``RANK`` other than 0
  skips it. Re-entrant within a process (a Python caller running two pipeline steps on one directory). On
  a file system without ``flock`` (some network mounts) a warning is given and the command runs unlocked;
  a directory nobody may write needs no lock (nothing can change it).
* **Headed state files** (:class:`StateFormat`): ``{"format": name, "version": n, "identity": {...}, ...}``.
  Reading one checks the format and version; a file that does not parse is *damaged* and one of another
  format is *foreign*: both are refused (the file is never overwritten) with the format's own error class
  (``SplitRunError``, ``CheckpointError``, ``HistoryError``: :class:`~lidsplit.common.errors.RunMismatchError`)
  and a message naming the file and what to do.
* **Identity** (:func:`diff_identity`, :meth:`StateFormat.refuse_changed`): what a run was made from, as
  JSON. Resuming with a different identity is refused, listing every differing key.
* **Artefacts** (:class:`RunDir`): ``save_json`` / ``save_state`` write atomically; ``load_state`` loads
  with ``weights_only=True`` and names a damaged file.
"""

from __future__ import annotations

import errno
import getpass
import json
import os
import socket
import sys
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lidsplit.common.errors import DamagedFileError, RunDirectoryError, RunLockedError, RunMismatchError
from lidsplit.common.io import atomic_torch_save, atomic_write_text, load_checkpoint, read_json

try:  # POSIX; elsewhere the lock is a documented no-op
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "RunLock", "RunDir", "StateFormat", "check_run_path", "create_run_dir", "diff_identity",
           "jsonable_identity", "locked_run_dir", "writable", "writing"]

#: The lock file's name inside a run directory (not an artefact: ignored by emptiness checks).
LOCK_FILE = ".lidsplit.lock"

PathLike = str | os.PathLike[str]


# ---- the path -------------------------------------------------------------------------------------


def check_run_path(path: PathLike | None, flag: str = "--out") -> Path:
    """``path`` as a ``Path`` if it can be a run directory: not empty, not a regular file, no regular file
    among its parents. Raises ``RunDirectoryError`` naming ``flag`` otherwise. Nothing is created."""
    if path is None or str(path).strip() == "":
        raise RunDirectoryError(f"{flag}: the run directory must be a path, got {str(path or '')!r}")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirectoryError(f"{flag}: run directory {str(p)!r} exists and is not a directory")
    for parent in p.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirectoryError(f"{flag}: run directory {str(p)!r} cannot be created below "
                                        f"{str(parent)!r}, which is a file, not a directory")
            break
    return p


def writable(path: PathLike) -> bool:
    """Whether this process may create files in the existing directory ``path`` (a read-only file
    system, an immutable directory or missing permission: False)."""
    return os.access(path, os.W_OK | os.X_OK)


def _os_reason(e: OSError) -> str:
    if e.errno == errno.EROFS:
        return "it is on a read-only file system"
    if e.errno in (errno.EACCES, errno.EPERM):
        return "this user may not write there (permission denied, or the directory is immutable)"
    if e.errno == errno.ENOTDIR:
        return "a part of the path is a file, not a directory"
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    return e.strerror or type(e).__name__


def create_run_dir(path: PathLike, flag: str = "--out") -> Path:
    """Create the run directory ``path`` (and its parents) if missing; a failure raises
    ``RunDirectoryError`` saying why (read-only, no permission, below a file, ...)."""
    p = check_run_path(path, flag)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirectoryError(f"{flag}: cannot create the run directory {str(p)!r}: {_os_reason(e)}") from None
    return p


@contextmanager
def writing(path: PathLike, what: str) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``what`` into ``path`` into a ``RunDirectoryError``
    saying why (read-only file system, permission, disk full)."""
    try:
        yield
    except OSError as e:
        raise RunDirectoryError(f"cannot write {what} in {str(path)!r}: {_os_reason(e)}") from None


# ---- the lock -------------------------------------------------------------------------------------

_HELD: dict[str, list[Any]] = {}  # lock file (real path) -> [fd, depth]: re-entrant within the process


def _holder_text(command: str) -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        user = "?"
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "user": user, "command": command,
                       "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())})


def _describe_holder(raw: str) -> str:
    try:
        h = json.loads(raw)
        return (f"pid {h['pid']} on host {h['host']} (user {h.get('user', '?')}), running "
                f"{h['command']!r} since {h['started']}")
    except (ValueError, KeyError, TypeError):
        return "a process that has not yet written its name"


class RunLock:
    """An exclusive lock on run directory ``directory`` for ``command`` (text naming it for the
    message another process gets), held between ``acquire`` and ``release`` (or as a context manager).
    The directory must exist. See the module docstring for the rules (driver only, stale locks, ranks)."""

    def __init__(self, directory: PathLike, command: str | None = None) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_FILE
        self.command = command if command is not None else " ".join(sys.argv) or "python"
        self._key: str | None = None

    def acquire(self) -> RunLock:
        if fcntl is None or os.environ.get("RANK", "0") != "0":
            return self  # no flock on this platform / a data-parallel rank: its driver holds the lock
        key = os.path.realpath(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            self._key = key
            return self
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            if not writable(self.directory):
                return self  # nobody can change a read-only run directory through this process: no lock needed
            raise RunDirectoryError(f"cannot lock the run directory {str(self.directory)!r}: {_os_reason(e)}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            time.sleep(0.05)  # the holder writes its name just after locking
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            os.close(fd)
            raise RunLockedError(
                f"run directory {str(self.directory)!r} is in use by another lidsplit command: "
                f"{_describe_holder(holder)}. Wait for it to finish (or stop it), or use another --out") from None
        except OSError as e:  # ENOLCK / EOPNOTSUPP: a file system without flock
            os.close(fd)
            warnings.warn(f"cannot lock the run directory {self.directory} ({_os_reason(e)}); running unlocked: "
                          "do not start two commands on it at once", RuntimeWarning, stacklevel=2)
            return self
        text = _holder_text(self.command).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, text, 0)
        _HELD[key] = [fd, 1]
        self._key = key
        return self

    def release(self) -> None:
        key, self._key = self._key, None
        if key is None or key not in _HELD:
            return
        _HELD[key][1] -= 1
        if _HELD[key][1] > 0:
            return
        fd = _HELD.pop(key)[0]
        try:
            os.ftruncate(fd, 0)  # no stale holder text for the next reader
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        return self._key is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *_exc: Any) -> None:
        self.release()


@contextmanager
def locked_run_dir(path: PathLike, command: str, flag: str = "--out") -> Iterator[Path]:
    """The run directory ``path`` for one command: checked, created when missing, locked until the
    block ends. When the command created it and leaves nothing in it, it is removed again (a refused
    command writes nothing)."""
    p = check_run_path(path, flag)
    created = not p.exists()
    if created:
        create_run_dir(p, flag)
    lock = RunLock(p, command).acquire()
    try:
        yield p
    finally:
        lock.release()
        if created and RunDir(p).is_empty():
            (p / LOCK_FILE).unlink(missing_ok=True)
            try:
                p.rmdir()
            except OSError:  # another process wrote into it meanwhile: keep it
                pass


# ---- identity and headed state files ----------------------------------------------------------------


def jsonable_identity(identity: Any) -> Any:
    """``identity`` as it reads back from a JSON file (tuples -> lists, int keys -> str), so that a
    saved identity and a fresh one compare equal."""
    return json.loads(json.dumps(identity))


def diff_identity(saved: Any, now: Any, *, saved_label: str = "saved", width: int = 100,
                  prefix: str = "") -> list[str]:
    """One line per differing leaf key of two JSON identities: ``key.sub: <saved_label> X != now Y``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out: list[str] = []
        for k in sorted(set(saved) | set(now)):
            out += diff_identity(saved.get(k), now.get(k), saved_label=saved_label, width=width,
                                 prefix=f"{prefix}{k}.")
        return out
    if saved == now:
        return []
    return [f"{prefix[:-1]}: {saved_label} {json.dumps(saved)[:width]} != now {json.dumps(now)[:width]}"]


@dataclass(frozen=True)
class StateFormat:
    """One kind of headed state file: ``{"format": name, "version": version, "identity": ..., ...}``.

    what: the file's description in messages ("split-run state file", "search history").
    error: the error class refusals raise (a ``RunMismatchError`` subclass, e.g. ``HistoryError``).
    remedy: what to do with a damaged or foreign file.
    """

    name: str
    version: int
    what: str
    error: type[RunMismatchError] = RunMismatchError
    remedy: str = "pass another path or remove the file"

    def header(self, identity: Any, **rest: Any) -> dict[str, Any]:
        return {"format": self.name, "version": self.version, "identity": identity, **rest}

    def check(self, d: Any, path: PathLike) -> dict[str, Any]:
        """``d`` (a loaded state) if it has this format and version, else the format's error."""
        if not isinstance(d, dict) or d.get("format") != self.name:
            raise self.error(f"{path} exists but is not a lidsplit {self.what}; refusing to resume from it or "
                             f"overwrite it: {self.remedy}")
        if d.get("version") != self.version:
            raise self.error(f"{path}: {self.what} version {d.get('version')!r} is not supported ({self.version}); "
                             f"{self.remedy}")
        return d

    def read(self, path: PathLike) -> dict[str, Any]:
        """The JSON state file ``path``, checked; a damaged one is refused like a foreign one."""
        try:
            d = read_json(path, what=self.what)
        except DamagedFileError as e:
            raise self.error(f"{path} exists but is not a lidsplit {self.what}: it is damaged ({e.why}); "
                             f"refusing to resume from it or overwrite it: {self.remedy}") from None
        except OSError as e:
            raise self.error(f"{path}: cannot read this {self.what}: {_os_reason(e)}") from None
        return self.check(d, path)

    def load(self, path: PathLike) -> dict[str, Any]:
        """The torch state file ``path`` (``weights_only=True``), checked; damaged or foreign: refused."""
        with warnings.catch_warnings():  # a foreign file may make the unpickler warn before failing
            warnings.simplefilter("ignore")
            try:
                d = load_checkpoint(path, what=self.what)
            except DamagedFileError as e:
                raise self.error(f"{path} exists but is not a lidsplit {self.what}: it is damaged ({e.why}); "
                                 f"refusing to resume from it or overwrite it: {self.remedy}") from None
        return self.check(d, path)

    def refuse_changed(self, path: PathLike, saved: Any, now: Any, *, whose: str = "another run",
                       saved_label: str = "saved") -> None:
        """Raise the format's error listing the differences when identity ``saved`` != ``now``."""
        problems = diff_identity(saved, jsonable_identity(now), saved_label=saved_label)
        if problems:
            raise self.error(f"{path} belongs to {whose}; refusing to resume from it or overwrite it. "
                             "Differences:\n  " + "\n  ".join(problems))


# ---- artefacts ----------------------------------------------------------------------------------


class RunDir:
    """A run directory's artefacts (atomic writes, named damaged files); ``path`` need not exist yet."""

    def __init__(self, path: PathLike, flag: str = "--out") -> None:
        self.path = check_run_path(path, flag)
        self.flag = flag

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self) -> Path:
        return create_run_dir(self.path, self.flag)

    def has(self, name: str) -> bool:
        return (self.path / name).exists()

    def is_empty(self) -> bool:
        """No artefact (the lock file does not count); a missing directory is empty."""
        return not self.path.is_dir() or all(p.name == LOCK_FILE for p in self.path.iterdir())

    @property
    def writable(self) -> bool:
        return self.path.is_dir() and writable(self.path)

    def lock(self, command: str | None = None) -> RunLock:
        return RunLock(self.path, command)

    def save_json(self, name: str, obj: Any, *, indent: int | None = 1, only_if_changed: bool = False) -> Path:
        """Write ``obj`` as JSON to ``name`` atomically (parents created). ``only_if_changed``: leave an
        identical file alone (so printing a finished run on read-only storage writes nothing)."""
        p = self.path / name
        text = json.dumps(obj, indent=indent) + ("\n" if indent is not None else "")
        if only_if_changed and p.is_file():
            try:
                if p.read_text(encoding="utf-8") == text:
                    return p
            except (OSError, UnicodeDecodeError):
                pass
        with writing(p.parent, p.name):
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(p, text)
        return p

    def read_json(self, name: str, what: str, remedy: str = "delete it and re-run the command") -> Any:
        return read_json(self.path / name, what=what, remedy=remedy)

    def save_state(self, name: str, state: Mapping[str, Any]) -> Path:
        p = self.path / name
        with writing(p.parent, p.name):
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save(dict(state), p)
        return p

    def load_state(self, name: str, what: str = "checkpoint", map_location: Any = "cpu",
                   remedy: str = "delete it and re-run the command to re-create it") -> Any:
        return load_checkpoint(self.path / name, map_location=map_location, what=what, remedy=remedy)
