"""The executor concept without Ray: the local executor, task records, and the errors (Ray's own tests,
on a local cluster, are in tests/test_ray.py)."""

from __future__ import annotations

import json
import sys

import pytest

import lidsplit
from lidsplit.common.errors import ConfigError, LidsplitError
from lidsplit.common.executor import (ExecutorUnavailableError, LocalExecutor, make_executor, read_task_records)


def _square(shared, x):  # noqa: ANN001, ANN202 - a task: fn(shared, *args)
    shared.append(x)
    return x * x


def test_local_runs_each_task_when_its_result_is_asked_for_in_order(tmp_path):
    seen: list[int] = []
    log = tmp_path / "tasks.jsonl"
    it = LocalExecutor().imap(_square, [(3,), (1,), (2,)], names=["a", "b", "c"], shared=seen, log=log)
    assert seen == []  # lazy: a caller saving after each result behaves as the loop it replaces
    assert next(it) == 9 and seen == [3]
    assert list(it) == [1, 4] and seen == [3, 1, 2]
    recs = read_task_records(log)
    assert [r["task"] for r in recs] == ["a", "b", "c"]
    assert all(r["executor"] == "local" and r["end"] >= r["start"] and isinstance(r["pid"], int) for r in recs)


def test_task_records_skip_a_line_cut_by_a_crash(tmp_path):
    log = tmp_path / "tasks.jsonl"
    LocalExecutor().map(_square, [(1,)], names=["one"], shared=[], log=log)
    with open(log, "a") as f:
        f.write('{"task": "cut", "sta')
    assert [r["task"] for r in read_task_records(log)] == ["one"]
    assert read_task_records(tmp_path / "missing.jsonl") == []


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="executor: expected one of"):
        make_executor("dask")
    with pytest.raises(ConfigError, match="workers"):
        make_executor("local", workers=0)
    with pytest.raises(ConfigError, match="ray_address"):
        make_executor("local", address="10.0.0.1:6379")
    with pytest.raises(ValueError, match="task names"):
        LocalExecutor().map(_square, [(1,)], names=[], shared=[])


def test_ray_missing_is_a_clear_error_naming_the_extra(monkeypatch, data):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as without the package
    with pytest.raises(ExecutorUnavailableError, match=r"lidsplit\[ray\]") as e:
        make_executor("ray", workers=2)
    assert isinstance(e.value, LidsplitError) and e.value.code == 2
    from lidsplit.spaces import nb201

    with pytest.raises(ExecutorUnavailableError, match=r"pip install 'lidsplit\[ray\]'"):
        lidsplit.run_split(nb201(C=4, N=1, num_classes=4), data, "random", 1, warmup_epochs=0, progress=False,
                           executor="ray", workers=2)


def test_local_split_run_records_its_tasks(data, tmp_path):
    from lidsplit.spaces import nb201

    tree = lidsplit.run_split(nb201(C=4, N=1, num_classes=4), data, "random", 2, warmup_epochs=0, finetune_epochs=0,
                              batch_size=16, score_batch_size=16, progress=False, run_dir=tmp_path)
    names = [r["task"] for r in read_task_records(tmp_path / "tasks.jsonl")]
    assert names == ["warmup+score node 0 (level 0)", "warmup+score node 1 (level 1)",
                     "warmup+score node 2 (level 1)"] + [f"finetune leaf {leaf.id}" for leaf in tree.leaves()]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "done"


def test_cli_executor_ray_without_ray_exits_2_and_writes_nothing(monkeypatch, tmp_path, capsys):
    from lidsplit.cli.main import main

    monkeypatch.setitem(sys.modules, "ray", None)
    out = tmp_path / "run"
    assert main(["split", "--out", str(out), "--executor", "ray", "--workers", "2", "--no-progress"]) == 2
    assert "lidsplit[ray]" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
