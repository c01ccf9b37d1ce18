"""Ray: tasks on a local cluster started here (2 CPUs), results identical to the local executor, faults.

One module, one cluster (starting Ray takes seconds); every test is small (a 4-channel NB201 on 48
synthetic images)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

import lidsplit
from lidsplit.common.errors import ConfigError
from lidsplit.common.executor import RayExecutor, read_task_records
from lidsplit.data import TensorLoader
from lidsplit.spaces import nb201

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cluster():  # type: ignore[no-untyped-def]
    started = not ray.is_initialized()
    for attempt in range(3) if started else ():
        try:  # on a loaded machine the raylet may miss Ray's fixed 30 s start-up wait: try again
            ray.init(num_cpus=2, include_dashboard=False, logging_level="warning")
            break
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise
    # the test module's own helpers (KillOnce) travel by value: workers cannot import tests/
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    if started:
        ray.shutdown()


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return nb201(C=4, N=1, num_classes=4)


KW = dict(warmup_epochs=[1, 0], finetune_epochs=1, batch_size=16, batches=2, score_batch_size=16, seed=3,
          progress=False, criterion_options={"k": 5})


def _files(d: Path) -> dict[str, bytes]:
    """tree.json and the leaves' weights: what must be the same byte for byte."""
    out = {"tree.json": (d / "tree.json").read_bytes()}
    for p in sorted(d.glob("nodes/*/final.pt")):
        out[str(p.relative_to(d))] = p.read_bytes()
    return out


@pytest.fixture(scope="module")
def local_run(data, tmp_path_factory):  # type: ignore[no-untyped-def]
    d = tmp_path_factory.mktemp("local")
    lidsplit.run_split(model(), data, "lid", 2, run_dir=d, **KW)
    return _files(d)


def _identity_task(shared, i, wait_for, touch):  # noqa: ANN001, ANN202 - a task
    """Returns ``i``; first waits (at most 60 s) for file ``wait_for``, then creates file ``touch``."""
    deadline = time.monotonic() + 60
    if wait_for:
        while not os.path.exists(wait_for) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the other task's record is written when it returns, just after ``touch``
    if touch:
        open(touch, "w").close()
    if i < 0:
        raise KeyError(f"task {i} refuses")
    return i


def test_results_come_in_task_order_and_errors_as_themselves(cluster, tmp_path):
    ex = RayExecutor(2)
    log = tmp_path / "tasks.jsonl"
    # the first task finishes last: it waits for the third, which the other worker runs after the second
    mark = str(tmp_path / "third-done")
    tasks = [(0, mark, None), (1, None, None), (2, None, mark)]
    assert ex.map(_identity_task, tasks, names=["a", "b", "c"], log=log) == [0, 1, 2]
    recs = read_task_records(log)
    assert sorted(r["task"] for r in recs) == ["a", "b", "c"]
    end = {r["task"]: r["end"] for r in recs}
    assert end["a"] > max(end["b"], end["c"])  # recorded when it finished
    pid = {r["task"]: r["pid"] for r in recs}
    assert pid["a"] != pid["c"]  # ran at the same time (Ray may start a worker process per task)
    assert all(r["node"] and r["pid"] != os.getpid() for r in recs)
    with pytest.raises(KeyError, match="task -1 refuses"):
        ex.map(_identity_task, [(-1, None, None)], names=["bad"])
    ex.close()
    assert ray.is_initialized()  # a cluster it did not start is left running
    with pytest.raises(ConfigError, match="asks for 8 CPU"):  # would wait forever on 2 CPUs
        RayExecutor(1, threads=8)


class Stop(Exception):
    pass


def test_split_on_ray_interrupted_and_resumed_is_byte_identical_to_local(cluster, data, local_run, tmp_path):
    def stop_at_first_finetune(ev) -> None:  # noqa: ANN001 - the driver stops while leaves train
        if ev.kind == "finetune":
            raise Stop

    with pytest.raises(Stop):
        lidsplit.run_split(model(), data, "lid", 2, run_dir=tmp_path, executor="ray", workers=2,
                           callback=stop_at_first_finetune, **KW)
    assert sum(1 for r in read_task_records(tmp_path / "tasks.jsonl") if r["task"].startswith("finetune")) >= 1
    lidsplit.run_split(model(), data, "lid", 2, run_dir=tmp_path, executor="ray", workers=2, **KW)
    assert _files(tmp_path) == local_run
    recs = read_task_records(tmp_path / "tasks.jsonl")
    assert {r["executor"] for r in recs} == {"ray"} and len({r["task"] for r in recs}) == 3 + 4
    # without a run directory the leaves' weights travel through the object store
    mem = lidsplit.run_split(model(), data, "lid", 2, executor="ray", workers=2, **KW)
    for leaf in mem.leaves():
        ref = torch.load(tmp_path / f"nodes/{leaf.id}/final.pt", weights_only=True)
        assert all(torch.equal(ref[k], v) for k, v in mem.states[leaf.id].items())


class KillOnce:
    """A training loader whose first epoch, in a process that finds no ``marker``, kills that process
    (SIGKILL: what the OOM killer or a lost node does to a worker)."""

    def __init__(self, inner: TensorLoader, marker: Path) -> None:
        self.inner, self.marker = inner, marker

    def __getattr__(self, name: str):  # noqa: ANN204 - the loader's attributes (batch_size, dataset, ...)
        if name in ("inner", "marker"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __len__(self) -> int:
        return len(self.inner)

    def iter_epoch(self, epoch: int, start: int = 0):  # noqa: ANN201
        if not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.inner.iter_epoch(epoch, start)


def test_a_killed_worker_is_retried_and_the_run_ends_the_same(cluster, data, tmp_path):
    train = TensorLoader(data.train, 16, shuffle=True, seed=0)
    kw = dict(KW, score_data=train)
    marker = tmp_path / "killed"
    marker.touch()  # the local reference run is never killed
    lidsplit.run_split(model(), KillOnce(train, marker), "lid", 2, run_dir=tmp_path / "local", **kw)
    marker.unlink()
    lidsplit.run_split(model(), KillOnce(train, marker), "lid", 2, run_dir=tmp_path / "ray", executor="ray",
                       workers=2, **kw)
    assert marker.exists()  # a worker was killed (and the driver lived on)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


TINY = ["--channels", "4", "--rounds", "1", "--warmup-epochs", "0", "--finetune-epochs", "1", "--batches", "1",
        "--batch-size", "32", "--no-progress", "--strategy", "random", "--samples", "6", "--calib-batches", "2",
        "--search-batch", "3", "--select", "successive_halving", "--scratch-epochs", "0", "--lid-archs", "1",
        "--lid-batch", "64", "--lid-k", "5"]


def test_pipeline_on_ray_writes_the_same_files_as_local(cluster, tmp_path, capsys):
    from lidsplit.cli.main import main

    assert main(["run", "--out", str(tmp_path / "local"), *TINY]) == 0
    assert main(["run", "--out", str(tmp_path / "ray"), *TINY, "--executor", "ray", "--workers", "2"]) == 0
    for name in ("split/tree.json", "search/history.json", "evaluate/selection.json", "final.json"):
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes(), name
    recs = read_task_records(tmp_path / "ray" / "search" / "tasks.jsonl")
    assert len(recs) == 6 and {r["executor"] for r in recs} == {"ray"}
    halving = read_task_records(tmp_path / "ray" / "evaluate" / "tasks.jsonl")
    assert len(halving) == 2 and all(r["task"].startswith("halving") for r in halving)
    assert (tmp_path / "ray" / "report" / "timeline.png").is_file()
