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
