"""The pipeline subcommands (run, split, train, search, evaluate, report): the whole pipeline on a tiny
space, resume after an interruption, and exit codes with clear messages on bad configs."""

from __future__ import annotations

import contextlib
import errno
import io
import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hypothesis
import pytest

import lidsplit.pipeline.pipeline as pipeline_mod
import lidsplit.search.evaluator as evaluator_mod
from lidsplit.common import rundir
from lidsplit.common.rundir import LOCK_FILE
from lidsplit.cli.main import main
from lidsplit.pipeline import Pipeline
from lidsplit.split.tree import SplitTree

pytest.importorskip("matplotlib")

TINY = ["--channels", "4", "--rounds", "1", "--warmup-epochs", "0", "--finetune-epochs", "1", "--batches", "1",
        "--batch-size", "32", "--no-progress", "--strategy", "random", "--samples", "6", "--calib-batches", "2",
        "--scratch-epochs", "1", "--lid-archs", "1", "--lid-batch", "64", "--lid-k", "5"]


class Spy:
    """Wraps the search's evaluate_arch: records (leaf of the model, arch); can interrupt after n calls."""

    def __init__(self, interrupt_after: int | None = None) -> None:
        self.calls: list[tuple[int, tuple[int, ...]]] = []
        self.interrupt_after = interrupt_after

    def install(self, monkeypatch: pytest.MonkeyPatch) -> Spy:
        real_eval, real_leaf = evaluator_mod.evaluate_arch, Pipeline.leaf_model

        def leaf_model(pipe: Pipeline, leaf: int) -> Any:
            m = real_leaf(pipe, leaf)
            m._test_leaf = leaf  # which leaf's weights this model holds
            return m

        def evaluate_arch(model: Any, arch: Any, *a: Any, **k: Any) -> Any:
            if self.interrupt_after is not None and len(self.calls) == self.interrupt_after:
                raise KeyboardInterrupt
            self.calls.append((model._test_leaf, tuple(arch)))
            return real_eval(model, arch, *a, **k)

        monkeypatch.setattr(evaluator_mod, "evaluate_arch", evaluate_arch)
        monkeypatch.setattr(Pipeline, "leaf_model", leaf_model)
        return self


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("pipe") / "run"
    with pytest.MonkeyPatch.context() as mp:
        spy = Spy().install(mp)
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["run", "--out", str(out), *TINY])
    return {"out": out, "rc": rc, "stdout": buf.getvalue(), "spy": spy}


def test_run_whole_pipeline(tiny_run: dict[str, Any]) -> None:
    out: Path = tiny_run["out"]
    assert tiny_run["rc"] == 0
    printed = tiny_run["stdout"]
    for text in ("Split tree:", "Chosen architecture", "test acc", "Report:"):
        assert text in printed
    tree = SplitTree.load(out / "split" / "tree.json")
    assert len(tree.leaves()) == 2
    config = json.loads((out / "config.json").read_text())
    assert config["split"]["rounds"] == 1 and config["search"]["strategy"] == "random"
    final = json.loads((out / "final.json").read_text())
    assert tree.route(final["arch"]) == final["leaf"]
    assert 0.0 <= final["scratch"]["test_acc"] <= 1.0 and (out / "final_model.pt").exists()
    history = json.loads((out / "search" / "history.json").read_text())
    assert len(history["records"]) == 6
    summary = json.loads((out / "report" / "summary.json").read_text())
    pngs = {Path(f).name for f in summary["files"] if f.endswith(".png")}
    assert {"tree.png", "lid_profiles.png", "separability.png", "search_progress.png"} <= pngs
    for name in pngs:
        assert (out / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_search_never_evaluates_outside_its_leaf(tiny_run: dict[str, Any]) -> None:
    tree = SplitTree.load(tiny_run["out"] / "split" / "tree.json")
    calls = tiny_run["spy"].calls
    assert len(calls) >= 6
    for leaf, arch in calls:
        assert tree.node(leaf).sub.contains(arch), (leaf, arch)
    history = json.loads((tiny_run["out"] / "search" / "history.json").read_text())
    for r in history["records"]:
        assert tree.route(r["arch"]) == r["leaf"]


def test_rerun_redoes_nothing(tiny_run: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out: Path = tiny_run["out"]
    kept = ["split/tree.json", "search/history.json", "final.json", "final_model.pt"]
    before = {k: (out / k).read_bytes() for k in kept}
    spy = Spy().install(monkeypatch)
    assert main(["run", "--out", str(out)]) == 0  # no flags: the run's saved config resumes it
    assert spy.calls == []  # nothing evaluated again
    assert {k: (out / k).read_bytes() for k in kept} == before
    assert "Chosen architecture" in capsys.readouterr().out


def test_resume_after_interrupt_matches_uninterrupted(tiny_run: dict[str, Any], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    with monkeypatch.context() as mp:
        Spy(interrupt_after=2).install(mp)
        assert main(["run", "--out", str(out), *TINY]) == 130  # Ctrl-C in the search
    assert len(json.loads((out / "search" / "history.json").read_text())["records"]) == 2
    assert not (out / "final.json").exists()
    spy = Spy().install(monkeypatch)
    assert main(["run", "--out", str(out), *TINY]) == 0
    assert len(spy.calls) == 6 - 2  # only the missing evaluations
    ref = tiny_run["out"]
    for name in ("split/tree.json", "search/history.json"):
        assert json.loads((out / name).read_text()) == json.loads((ref / name).read_text()), name
    a, b = (json.loads((d / "final.json").read_text()) for d in (out, ref))
    assert a["arch"] == b["arch"] and a["leaf_weights"] == b["leaf_weights"]


def test_stages_one_by_one_and_changed_settings(tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "run")
    assert main(["search", "--out", out, *TINY]) == 2
    assert "has no complete split stage results (the search stage needs them)" in capsys.readouterr().err
    assert main(["split", "--out", out, *TINY]) == 0
    assert main(["split", "--out", out, *TINY, "--criterion", "gm"]) == 2
    err = capsys.readouterr().err
    assert "split stage already has results" in err and "split.criterion = 'gm' (the run has 'lid')" in err
    assert main(["search", "--out", out, "--train-epochs", "1"]) == 2  # train.epochs > 0: train first
    assert "has no complete train stage results" in capsys.readouterr().err
    assert main(["train", "--out", out, "--train-epochs", "1"]) == 0
    assert sorted(p.name for p in (tmp_path / "run" / "train").glob("*.pt")) == ["leaf1.pt", "leaf2.pt"]
    assert main(["search", "--out", out, "--samples", "3"]) == 0
    assert main(["search", "--out", out, "--samples", "4"]) == 2  # the search has results with 3
    assert "search.samples = 4 (the run has 3)" in capsys.readouterr().err
    assert main(["evaluate", "--out", out, "--scratch-epochs", "0"]) == 0
    assert json.loads((tmp_path / "run" / "final.json").read_text())["scratch"] is None
    assert main(["report", "--out", out, "--lid-archs", "2"]) == 0  # the report is rebuilt freely
    assert "Report:" in capsys.readouterr().out


def test_bad_configs_exit_2_with_a_clear_message(tmp_path: Path, capsys) -> None:
    def err_of(*argv: str) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    cfg = tmp_path / "c.toml"
    cfg.write_text("[split]\nrouns = 2\n")
    assert "unknown key split.rouns" in err_of("run", "--out", str(tmp_path / "a"), "--config", str(cfg))
    cfg.write_text('[split]\nrounds = "two"\n')
    assert "split.rounds must be int, got 'two' (str)" in err_of("run", "--out", str(tmp_path / "a"), "--config",
                                                                 str(cfg))
    assert "no such file" in err_of("run", "--out", str(tmp_path / "a"), "--config", str(tmp_path / "none.toml"))
    missing = tmp_path / "no-cifar"
    assert str(missing) in err_of("split", "--out", str(tmp_path / "b"), "--data", "cifar10", "--data-path",
                                  str(missing))
    assert "--rounds" in err_of("run", "--out", str(tmp_path / "a"), "--rounds", "two")
    assert "split.rounds must be >= 1" in err_of("run", "--out", str(tmp_path / "a"), "--rounds", "0")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    assert "not a lidsplit run directory" in err_of("run", "--out", str(tmp_path / "other"))
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"  # nothing a user saved is touched
    assert not (tmp_path / "a").exists()  # a refused run writes nothing


def test_interrupted_evaluate_repeats_no_finished_training(tiny_run: dict[str, Any], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Successive halving's finished trainings are kept and the from-scratch training resumes from its
    checkpoint: the interrupted evaluate ends with the uninterrupted one's numbers."""
    import shutil

    import lidsplit.search.select as select_mod

    def fresh(name: str) -> str:
        out = tmp_path / name
        src = tiny_run["out"]
        later = {"final.json", "final_model.pt", "evaluate", "report"}  # the run up to its search stage
        shutil.copytree(src, out, ignore=lambda d, names: later if d == str(src) else set())
        return str(out)

    flags = ["--select", "successive_halving", "--scratch-epochs", "2"]
    real = select_mod.train_subsupernet
    calls: list[tuple[int, bool]] = []  # (epochs, whether its checkpoint existed when called)

    def train(model: Any, sub: Any, loaders: Any, epochs: int, *, checkpoint: Any = None, **k: Any) -> Any:
        calls.append((epochs, checkpoint is not None and Path(checkpoint).exists()))
        if len(calls) == interrupt_at:
            real(model, sub, loaders, epochs, checkpoint=checkpoint, stop_after=1, **k)
            raise KeyboardInterrupt
        return real(model, sub, loaders, epochs, checkpoint=checkpoint, **k)

    monkeypatch.setattr(select_mod, "train_subsupernet", train)
    interrupt_at = 0
    ref = fresh("ref")
    assert main(["evaluate", "--out", ref, *flags]) == 0
    assert [e for e, _ in calls] == [4, 4, 2]  # 2 leaves' picks: one halving round (keep 1, 4 epochs), scratch

    out = fresh("run")
    calls.clear()
    interrupt_at = 2  # Ctrl-C in the second candidate's training
    assert main(["evaluate", "--out", out, *flags]) == 130
    calls.clear()
    interrupt_at = 2  # the first candidate is not trained again; Ctrl-C after the scratch training's epoch 1
    assert main(["evaluate", "--out", out, *flags]) == 130
    assert calls == [(4, True), (2, False)]
    calls.clear()
    interrupt_at = 0
    assert main(["evaluate", "--out", out, *flags]) == 0
    assert calls == [(2, True)]  # only the rest of the scratch training
    a, b = (json.loads((Path(d) / "final.json").read_text()) for d in (out, ref))
    assert a == b
    assert not (Path(out) / "evaluate" / "scratch.ckpt").exists()


# ---- the run directory: lock, path errors, read-only storage, damaged files (issue 18) ----------------


def _copy_run(tiny_run: dict[str, Any], dest: Path, drop: Sequence[str] = ()) -> Path:
    shutil.copytree(tiny_run["out"], dest)
    for name in drop:
        p = dest / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    return dest


def test_second_command_on_one_out_exits_2_naming_the_holder(tiny_run: dict[str, Any], tmp_path: Path,
                                                             capsys) -> None:
    out = _copy_run(tiny_run, tmp_path / "run")
    hold = ("import sys, time\nfrom lidsplit.common.rundir import RunLock\n"
            "RunLock(sys.argv[1], 'lidsplit search --out run --samples 8').acquire()\nprint('held', flush=True)\n"
            "time.sleep(60)\n")
    p = subprocess.Popen([sys.executable, "-c", hold, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "held"
        before = (out / "config.json").read_bytes()
        assert main(["search", "--out", str(out), "--samples", "5"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another lidsplit command: pid {p.pid} on host" in err and "--samples 8" in err
        assert (out / "config.json").read_bytes() == before
    finally:
        p.kill()
        p.wait()
    assert main(["evaluate", "--out", str(out)]) == 0  # the killed holder's lock does not block


def test_out_errors_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    def err_of(*argv: str) -> str:
        assert main(list(argv)) == 2
        return capsys.readouterr().err

    assert "--out: the run directory must be a path, got ''" in err_of("split", "--out", "")
    (tmp_path / "afile").write_text("x")
    assert "which is a file, not a directory" in err_of("split", "--out", str(tmp_path / "afile" / "run"))

    def read_only(*_a: object, **_k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert "cannot create the run directory" in err_of("split", "--out", str(tmp_path / "ro" / "run"))


def test_finished_run_prints_on_read_only_storage(tiny_run: dict[str, Any], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    out = _copy_run(tiny_run, tmp_path / "run")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    def no_write(*_a: object, **_k: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system")

    import lidsplit.common.io as cio

    monkeypatch.setattr(rundir, "writable", lambda _p: False)  # what os.access says on read-only storage
    monkeypatch.setattr(pipeline_mod, "writable", lambda _p: False)
    monkeypatch.setattr(cio, "atomic_write", no_write)  # any write would fail loudly
    assert main(["run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Chosen architecture" in printed and "read-only" in printed and "Report:" in printed
    assert {p: p.read_bytes() for p in before} == before
    # a stage with work to do is refused, saying why
    shutil.rmtree(out / "evaluate")
    (out / "final.json").unlink()
    assert main(["evaluate", "--out", str(out)]) == 2
    assert "cannot be written by this process" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncate", "zero"])
def test_damaged_checkpoint_is_named(tiny_run: dict[str, Any], tmp_path: Path, capsys, damage: str) -> None:
    out = _copy_run(tiny_run, tmp_path / "run", drop=("search", "evaluate", "final.json", "final_model.pt"))
    tree = SplitTree.load(out / "split" / "tree.json")
    ckpt = out / "split" / tree.leaves()[0].info["weights"]
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[:1000] if damage == "truncate" else b"\0" * len(data))
    assert main(["search", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{ckpt}: this sub-supernet weights file is damaged" in err and "split/ folder" in err
    assert "weights_only" not in err


def test_truncated_tree_is_named(tiny_run: dict[str, Any], tmp_path: Path, capsys) -> None:
    out = _copy_run(tiny_run, tmp_path / "run")
    t = out / "split" / "tree.json"
    t.write_bytes(t.read_bytes()[:2000])
    assert main(["run", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{t}: this split tree is damaged (not valid JSON" in err and "re-run" in err


RUN_FILES = ["config.json", "split/tree.json", "split/run.json", "search/history.json", "search/result.json",
             "final.json"]


@hypothesis.settings(max_examples=30, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture,
                                            hypothesis.HealthCheck.too_slow])
@hypothesis.given(data=hypothesis.strategies.data())
def test_fuzz_damaged_run_files_exit_2_and_change_nothing(tiny_run: dict[str, Any], data: Any) -> None:
    st = hypothesis.strategies
    name = data.draw(st.sampled_from(RUN_FILES))
    command = data.draw(st.sampled_from(["evaluate", "search"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = _copy_run(tiny_run, Path(tmp) / "run", drop=("report",))
        good = (out / name).read_bytes()
        kind = data.draw(st.sampled_from(["truncate", "zero", "flip", "random"]))
        if kind == "truncate":
            bad = good[: data.draw(st.integers(0, len(good) - 1))]
        elif kind == "zero":
            bad = b"\0" * len(good)
        elif kind == "random":
            bad = data.draw(st.binary(max_size=200))
        else:
            buf = bytearray(good)
            for _ in range(data.draw(st.integers(1, 6))):
                buf[data.draw(st.integers(0, len(buf) - 1))] = data.draw(st.integers(0, 255))
            bad = bytes(buf)
        (out / name).write_bytes(bad)
        before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
            rc = main([command, "--out", str(out)])  # any exception but these exits fails the test
        assert rc in (0, 2), err.getvalue()
        if rc == 2:
            assert "lidsplit " in err.getvalue() and "Traceback" not in err.getvalue()
        assert {p: p.read_bytes() for p in before} == before


def test_damaged_saved_config_is_named(tiny_run: dict[str, Any], tmp_path: Path, capsys) -> None:
    out = _copy_run(tiny_run, tmp_path / "run")
    cfg = json.loads((out / "config.json").read_text())
    cfg["report"]["lid_k"] = 1  # saved by an older lidsplit, which accepted it
    (out / "config.json").write_text(json.dumps(cfg))
    assert main(["report", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "report.lid_k must be >= 2" in err and f"fix or restore {out / 'config.json'}" in err
