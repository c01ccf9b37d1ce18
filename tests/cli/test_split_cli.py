"""``lidsplit split``: a tiny run on digits, its resume, and clear errors on bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

from lidsplit.cli.main import main

TINY = ["--channels", "4", "--rounds", "1", "--warmup-epochs", "0", "--finetune-epochs", "0",
        "--batches", "1", "--batch-size", "32", "--no-progress"]


def test_split_runs_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["split", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "2 sub-supernets" in printed
    tree = json.loads((out / "split" / "tree.json").read_text())
    assert tree  # the split tree was saved
    before = (out / "split" / "tree.json").read_bytes()
    assert main(["split", "--out", str(out), *TINY]) == 0  # a finished run is loaded, not redone
    assert (out / "split" / "tree.json").read_bytes() == before


def test_split_bad_arguments_exit_2(tmp_path: Path, capsys) -> None:
    assert main(["split", "--out", str(tmp_path / "r"), "--criterion", "nope"]) == 2
    assert main(["split", "--out", str(tmp_path / "r"), "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
    assert main(["split", "--out", str(tmp_path / "r"), "--data", "cifar10", "--data-path", str(tmp_path / "none")]) == 2


def test_split_with_a_preset(tmp_path: Path, capsys) -> None:
    """A named protocol sets the schedule: split-finetune trains the root E - E//4 epochs and the leaves
    the last E//4 epochs of one cosine, with the optimiser carried."""
    base = [a for a in TINY if a not in ("--warmup-epochs", "--finetune-epochs", "0")]
    out = tmp_path / "run"
    assert main(["split", "--out", str(out), *base, "--preset", "split-finetune", "--base-epochs", "2",
                 "--lr", "0.1", "--lr-min", "0.01"]) == 0
    run = json.loads((out / "split" / "run.json").read_text())
    ident = run.get("identity", run)
    assert ident["warmup_epochs"] == [1] and ident["finetune_epochs"] == 1
    assert ident["lr_schedule"] == "continued" and ident["carry_optimizer"] is True
    tree = json.loads((out / "split" / "tree.json").read_text())
    leaf_lrs = [n["info"]["finetune"]["history"][-1]["lr"] for n in tree["nodes"] if "finetune" in n["info"]]
    root_lr = tree["nodes"][0]["info"]["warmup"]["history"][-1]["lr"]
    assert len(leaf_lrs) == 2 and root_lr > 0.05 and all(lr < 0.0101 for lr in leaf_lrs)
    # a preset and its own keys together are refused, naming the key
    assert main(["split", "--out", str(tmp_path / "r2"), *base, "--preset", "nas-lid", "--restart"]) == 2
    assert "split.restart" in capsys.readouterr().err
