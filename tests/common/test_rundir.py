"""The run-directory mechanism: path errors, the command lock (holder named, stale lock, re-entrant,
ranks), headed state files and identities."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from lidsplit.common import rundir
from lidsplit.common.errors import RunDirectoryError, RunLockedError, RunMismatchError
from lidsplit.common.rundir import LOCK_FILE, RunDir, RunLock, StateFormat, check_run_path, create_run_dir

pytest.importorskip("fcntl")

HOLD = textwrap.dedent("""
    import sys, time
    from lidsplit.common.rundir import RunLock
    lock = RunLock(sys.argv[1], "lidsplit search --out somewhere").acquire()
    print("held", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Another process holding the lock of tmp_path/run."""
    d = tmp_path / "run"
    d.mkdir()
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(d)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    yield d, p
    p.kill()
    p.wait()


def test_path_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(RunDirectoryError, match=r"--out: the run directory must be a path, got ''"):
        check_run_path("")
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(RunDirectoryError, match="exists and is not a directory"):
        check_run_path(f)
    with pytest.raises(RunDirectoryError, match=r"cannot be created below .*afile.*which is a file"):
        check_run_path(f / "sub" / "run")
    assert f.read_text() == "x"


@pytest.mark.parametrize(("code", "says"), [(errno.EROFS, "read-only file system"), (errno.EACCES, "may not write"),
                                            (errno.EPERM, "may not write")])
def test_unwritable_parent_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, says: str) -> None:
    def refuse(*_a: object, **_k: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunDirectoryError, match=f"cannot create the run directory .*{says}"):
        create_run_dir(tmp_path / "run")


def test_second_process_is_refused_naming_the_holder(holder) -> None:  # type: ignore[no-untyped-def]
    d, p = holder
    with pytest.raises(RunLockedError, match=rf"in use by another lidsplit command: pid {p.pid} on host .*"
                                             r"'lidsplit search --out somewhere'"):
        RunLock(d, "mine").acquire()


def test_a_killed_holder_does_not_block(holder) -> None:  # type: ignore[no-untyped-def]
    d, p = holder
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert (d / LOCK_FILE).read_text()  # the dead holder's text is still there ...
    with RunLock(d, "mine") as lock:  # ... and does not block
        assert lock.held and f'"pid": {os.getpid()}' in (d / LOCK_FILE).read_text()
    assert (d / LOCK_FILE).read_text() == ""  # released: no stale holder text


def test_reentrant_in_process_and_ranks_skip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with RunLock(tmp_path, "outer"), RunLock(tmp_path, "inner") as inner:
        assert inner.held
    monkeypatch.setenv("RANK", "1")  # a data-parallel rank: its driver holds the lock
    assert not RunLock(tmp_path).acquire().held


def test_locked_run_dir_removes_what_a_refused_command_created(tmp_path: Path) -> None:
    d = tmp_path / "new" / "run"
    with pytest.raises(ValueError), rundir.locked_run_dir(d, "cmd"):
        assert (d / LOCK_FILE).exists()
        raise ValueError("refused")
    assert not d.exists()
    d.mkdir()
    (d / "keep.txt").write_text("mine")
    with rundir.locked_run_dir(d, "cmd"):
        pass
    assert (d / "keep.txt").read_text() == "mine"


def test_state_format_refusals(tmp_path: Path) -> None:
    class MyError(RunMismatchError):
        pass

    fmt = StateFormat("lidsplit.test", 2, "test state file", MyError)
    d = RunDir(tmp_path)
    d.save_json("s.json", fmt.header({"a": 1, "b": [1, 2]}, status="done"))
    assert fmt.read(d / "s.json")["status"] == "done"
    fmt.refuse_changed(d / "s.json", {"a": 1, "b": [1, 2]}, {"a": 1, "b": (1, 2)})  # JSON-equal: accepted
    with pytest.raises(MyError, match=r"(?s)belongs to another run.*b: saved \[1, 2\] != now \[1, 3\]"):
        fmt.refuse_changed(d / "s.json", {"a": 1, "b": [1, 2]}, {"a": 1, "b": [1, 3]})
    (d / "s.json").write_text('{"format": "lidsplit.test", "vers')
    with pytest.raises(MyError, match=r"s\.json exists but is not a lidsplit test state file: it is damaged"):
        fmt.read(d / "s.json")
    d.save_json("s.json", {"format": "other"})
    with pytest.raises(MyError, match="is not a lidsplit test state file; refusing"):
        fmt.read(d / "s.json")
    d.save_json("s.json", {"format": "lidsplit.test", "version": 1})
    with pytest.raises(MyError, match="version 1 is not supported"):
        fmt.read(d / "s.json")


def test_save_json_only_if_changed_writes_nothing(tmp_path: Path) -> None:
    d = RunDir(tmp_path)
    p = d.save_json("c.json", {"x": 1})
    t = p.stat().st_mtime_ns
    time.sleep(0.01)
    d.save_json("c.json", {"x": 1}, only_if_changed=True)
    assert p.stat().st_mtime_ns == t
    assert RunDir(tmp_path / "absent").is_empty() and not d.is_empty()
