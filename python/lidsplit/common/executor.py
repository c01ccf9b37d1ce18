"""One executor concept: how lidsplit runs independent tasks (in this process, or as Ray tasks).

Every engine entry point that runs independent work (the split tree's nodes of one level and its
leaves' fine-tunes, the search's evaluations, successive halving's trainings, the benchmarks' runs)
takes an ``executor`` (a name or an :class:`Executor`) and hands it a list of tasks through
:meth:`Executor.imap` / :meth:`Executor.map`:

- ``"local"`` (:class:`LocalExecutor`, the default): each task runs in this process, one after another
  in task order, when the caller asks for its result (so a caller that saves after each result behaves
  exactly as the loop it replaces).
- ``"ray"`` (:class:`RayExecutor`): each task is a Ray core task (``ray.remote``) asking for its
  resources: ``num_gpus`` (1, or the fraction ``gpu_fraction``) when the run's device is cuda, otherwise
  ``threads`` CPUs; at most ``workers`` tasks are in flight. A worker process that dies (killed,
  out of memory, its node lost) is retried by Ray up to ``max_retries`` times; an exception the task
  raises is not retried and reaches the caller as itself (its class and message).

Results always come back **in task order**, whatever order the tasks finish in; so, with every task's
randomness derived from the run seed and the task's identity (``derive_seed``), the results (and what
a caller writes from them) do not depend on the executor.

State: the task's function and its ``shared`` object are shipped through Ray's object store (``shared``
is stored once per ``imap`` call, not once per task). Tasks write their artefacts into the run directory
themselves (atomic writes: ``lidsplit.common.io``), so on several machines the run directory must be on
storage every node mounts at the same path (NFS, a cluster file system); the driver holds the run
directory's lock, workers never take it (``lidsplit.common.rundir``).

Task records: with ``log`` (a path, usually ``<run dir>/tasks.jsonl``) every finished task appends one
JSON line: ``{"task", "executor", "host", "node", "ip", "pid", "gpus", "start", "end"}`` (``start`` /
``end``: Unix seconds of the attempt that finished; a task Ray re-ran after its worker died is recorded
once, by its last attempt). A
line is written by the driver in one ``write`` on an ``O_APPEND`` file, then fsynced, so a record is
never interleaved or half there; a reader skips a last line cut by a crash (:func:`read_task_records`).
The report draws them as a timeline (``lidsplit.report``).

Ray is an optional dependency (``pip install lidsplit[ray]``) imported only by :class:`RayExecutor`;
without it ``executor="ray"`` raises :class:`ExecutorUnavailableError` naming the extra.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from lidsplit.common.errors import ConfigError

__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "ExecutorUnavailableError", "make_executor",
           "read_task_records", "TASK_LOG"]

#: The executors by name (``--executor``).
EXECUTORS: tuple[str, ...] = ("local", "ray")

#: The task records' file name inside a run directory.
TASK_LOG = "tasks.jsonl"

#: A task's function: ``fn(shared, *args) -> result`` (a module-level function: Ray pickles it by name).
TaskFn = Callable[..., Any]


class ExecutorUnavailableError(ConfigError):
    """``executor="ray"`` asked for, but Ray is not installed (or cannot reach its cluster)."""


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ExecutorUnavailableError(
            f"executor 'ray' needs the Ray package, which cannot be imported ({e}); install it with "
            "pip install 'lidsplit[ray]', or use --executor local") from None
    return ray


def _append_record(log: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line to ``log`` (one ``write`` on an ``O_APPEND`` file, fsynced)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_task_records(log: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The task records of ``log`` (a ``tasks.jsonl``; missing: none), in the order they were written.
    A line that does not parse (the last one, cut by a crash) is skipped."""
    p = Path(log)
    if not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and {"task", "start", "end"} <= rec.keys():
            out.append(rec)
    return out


def _worker_info() -> dict[str, Any]:
    """Who runs this task: host, Ray node id and IP (None outside Ray), pid, GPU ids."""
    info: dict[str, Any] = {"host": socket.gethostname(), "node": None, "ip": None, "pid": os.getpid(), "gpus": []}
    try:
        import ray  # only inside a Ray worker is it initialised
        if ray.is_initialized():
            ctx = ray.get_runtime_context()
            info["node"] = ctx.get_node_id()
            info["ip"] = ray.util.get_node_ip_address()
            info["gpus"] = [str(g) for g in ray.get_gpu_ids()]
    except ImportError:
        pass
    if not info["gpus"] and torch.cuda.is_available():
        info["gpus"] = [str(torch.cuda.current_device())]
    return info


def _run_task(fn: TaskFn, shared: Any, args: tuple[Any, ...], threads: int) -> tuple[Any, dict[str, Any]]:
    """Run one task where it was sent; returns its result and who ran it when."""
    if threads > 0:
        torch.set_num_threads(threads)
    start = time.time()
    result = fn(shared, *args)
    return result, {**_worker_info(), "start": start, "end": time.time()}


class Executor:
    """Runs lists of independent tasks; results in task order (module docstring).

    workers: tasks in flight at once (``local``: 1 whatever is asked).
    """

    name = "executor"
    workers = 1

    def imap(self, fn: TaskFn, args: Sequence[tuple[Any, ...]], *, names: Sequence[str], shared: Any = None,
             log: str | os.PathLike[str] | None = None) -> Iterator[Any]:
        """``fn(shared, *a)`` for every ``a`` in ``args``, yielded in task order. ``names``: one per task, what
        it is (``"warmup node 3"``), for the records in ``log``."""
        raise NotImplementedError

    def map(self, fn: TaskFn, args: Sequence[tuple[Any, ...]], *, names: Sequence[str], shared: Any = None,
            log: str | os.PathLike[str] | None = None) -> list[Any]:
        """:meth:`imap` as a list."""
        return list(self.imap(fn, args, names=names, shared=shared, log=log))

    def close(self) -> None:
        """Release what the executor started (a local Ray cluster)."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers}


def _check_names(args: Sequence[Any], names: Sequence[str]) -> None:
    if len(names) != len(args):
        raise ValueError(f"executor: {len(names)} task names for {len(args)} tasks")


class LocalExecutor(Executor):
    """Every task in this process, one after another, in task order, each run when its result is asked
    for (today's behaviour of every loop it replaces)."""

    name = "local"

    def imap(self, fn: TaskFn, args: Sequence[tuple[Any, ...]], *, names: Sequence[str], shared: Any = None,
             log: str | os.PathLike[str] | None = None) -> Iterator[Any]:
        _check_names(args, names)
        for a, name in zip(args, names):
            start = time.time()
            result = fn(shared, *a)
            if log is not None:
                _append_record(Path(log), {"task": name, "executor": self.name, **_worker_info(), "start": start,
                                           "end": time.time()})
            yield result


class RayExecutor(Executor):
    """Ray core tasks (module docstring).

    workers: tasks in flight at once (>= 1).
    address: an existing cluster (``ray start --head`` printed it; ``"auto"``: the one on this machine);
        None: a Ray session already initialised in this process, else a local cluster started here (and
        shut down by :meth:`close`).
    device: the runs' device: ``cuda`` tasks ask for ``gpu_fraction`` GPUs (default 1) and one CPU, ``cpu``
        tasks for ``threads`` CPUs.
    threads: torch threads (and CPUs asked for) per task; 0: this process's ``torch.get_num_threads()``,
        so a task computes exactly as it would here.
    max_retries: times Ray re-runs a task whose worker process died.
    """

    name = "ray"

    def __init__(self, workers: int = 1, *, address: str | None = None, device: str | torch.device = "cpu",
                 threads: int = 0, gpu_fraction: float = 1.0, max_retries: int = 3) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigError(f"workers: expected an int >= 1, got {workers!r}")
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
            raise ConfigError(f"threads: expected an int >= 0, got {threads!r}")
        if not 0 < gpu_fraction <= 1 and not (gpu_fraction > 1 and float(gpu_fraction).is_integer()):
            raise ConfigError(f"gpu_fraction: expected a fraction in (0, 1] or a whole number, got {gpu_fraction!r}")
        self.ray = _import_ray()
        self.workers = workers
        self.threads = threads or torch.get_num_threads()
        self.device = torch.device(device)
        self.gpu_fraction = gpu_fraction
        self.max_retries = int(max_retries)
        self._started = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=address, include_dashboard=False, log_to_driver=True,
                              logging_level="warning", configure_logging=True)
            except ConnectionError as e:
                raise ExecutorUnavailableError(f"--ray-address {address!r}: cannot connect to a Ray cluster ({e}); "
                                               "start one with `ray start --head` or leave --ray-address out") from None
            except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception when its processes start too slowly
                self.ray.shutdown()
                raise ExecutorUnavailableError(f"executor 'ray': the local Ray cluster did not start ({e}); on a busy "
                                               "machine try again, or start one with `ray start --head` and pass "
                                               "--ray-address auto") from None
            self._started = True
        gpu = self.device.type == "cuda"
        # a task asking for more than the cluster has would wait forever: refuse it now
        have = self.ray.cluster_resources()
        need, kind = (gpu_fraction, "GPU") if gpu else (float(self.threads), "CPU")
        if have.get(kind, 0.0) < need:
            self.close()
            raise ConfigError(f"executor 'ray': each task asks for {need:g} {kind}(s) but the Ray cluster has "
                              f"{have.get(kind, 0.0):g}; lower --threads (CPU tasks), or start the cluster on "
                              "machines that have them")
        self._remote = self.ray.remote(_run_task).options(
            num_cpus=1 if gpu else self.threads, num_gpus=gpu_fraction if gpu else 0,
            max_retries=self.max_retries, retry_exceptions=False)

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "workers": self.workers, "threads": self.threads,
                "gpu_fraction": self.gpu_fraction if self.device.type == "cuda" else 0}

    def imap(self, fn: TaskFn, args: Sequence[tuple[Any, ...]], *, names: Sequence[str], shared: Any = None,
             log: str | os.PathLike[str] | None = None) -> Iterator[Any]:
        _check_names(args, names)
        ray = self.ray
        n = len(args)
        if n == 0:
            return
        shared_ref = ray.put(shared)
        inflight: dict[Any, int] = {}  # ref -> task index
        done: dict[int, Any] = {}
        submitted = emitted = 0
        try:
            while emitted < n:
                while submitted < n and len(inflight) < self.workers:
                    ref = self._remote.remote(fn, shared_ref, tuple(args[submitted]), self.threads)
                    inflight[ref] = submitted
                    submitted += 1
                if emitted in done:
                    yield done.pop(emitted)
                    emitted += 1
                    continue
                ready, _ = ray.wait(list(inflight), num_returns=1)
                for ref in ready:
                    i = inflight.pop(ref)
                    result, info = self._get(ref)
                    if log is not None:
                        _append_record(Path(log), {"task": names[i], "executor": self.name, **info})
                    done[i] = result
        finally:  # the caller stopped (an error, an interrupt, a generator closed): no task keeps running
            for ref in inflight:
                ray.cancel(ref, force=True)

    def _get(self, ref: Any) -> Any:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, BaseException):  # the task's own exception, as it was raised there
                raise cause from None
            raise

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


def make_executor(executor: str | Executor | None = "local", *, workers: int = 1, address: str | None = None,
                  device: str | torch.device = "cpu", threads: int = 0, gpu_fraction: float = 1.0,
                  max_retries: int = 3) -> Executor:
    """The executor named ``executor`` (``"local"`` / ``"ray"``; an :class:`Executor`: itself; None: local).
    ``workers`` / ``address`` / ``device`` / ``threads`` / ``gpu_fraction`` / ``max_retries``: Ray's (see
    :class:`RayExecutor`); ``local`` checks ``workers`` and runs one task at a time."""
    if isinstance(executor, Executor):
        return executor
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers: expected an int >= 1, got {workers!r}")
    if executor is None or executor == "local":
        if address is not None:
            raise ConfigError("ray_address: only used with executor 'ray' (got executor 'local')")
        return LocalExecutor()
    if executor == "ray":
        return RayExecutor(workers, address=address, device=device, threads=threads, gpu_fraction=gpu_fraction,
                           max_retries=max_retries)
    raise ConfigError(f"executor: expected one of {list(EXECUTORS)} or an Executor, got {executor!r}")
