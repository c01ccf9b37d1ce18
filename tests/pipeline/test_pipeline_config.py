"""lidsplit.pipeline.config: the schema, config files (TOML / YAML / JSON) and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lidsplit.pipeline import Pipeline
from lidsplit.pipeline.config import (
    FIELDS,
    STAGES,
    ConfigError,
    defaults,
    flag_of,
    identity,
    load_file,
    merge,
    validate,
)


def test_defaults_are_valid_and_flags_unique() -> None:
    d = defaults()
    assert validate(d) == d
    flags = [flag_of(f) for f in FIELDS]
    assert len(flags) == len(set(flags))
    assert all(f.stage in STAGES or f.stage is None for f in FIELDS)
    for f in FIELDS:  # each default is a value of its own field
        assert f.default is None or isinstance(f.default, f.type)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ({"splt": {"rounds": 2}}, r"unknown section 'splt'.*did you mean 'split'"),
        ({"split": {"round": 2}}, r"unknown key split\.round.*did you mean 'rounds'"),
        ({"split": {"rounds": "two"}}, r"split\.rounds must be int, got 'two' \(str\)"),
        ({"split": {"rounds": 2.0}}, r"split\.rounds must be int, got 2\.0 \(float\)"),
        ({"split": {"rounds": True}}, r"split\.rounds must be int, got True \(bool\)"),
        ({"split": {"restart": "yes"}}, r"split\.restart must be bool"),
        ({"split": {"rounds": 0}}, r"split\.rounds must be >= 1, got 0"),
        ({"split": {"criterion": "lidd"}}, r"split\.criterion must be one of .*lid.*got 'lidd'"),
        ({"data": {"batch_size": None}}, r"data\.batch_size must be int, got null"),
        ({"train": {"lr": float("nan")}}, r"train\.lr must be finite"),
        ({"split": 3}, r"\[split\] in x\.toml must hold keys"),
        ({"search": {"population": 10}}, r"exceeds search\.population = 10"),
        ({"search": {"mutation_prob": 1.5}}, r"search\.mutation_prob must be <= 1"),
        ([1, 2], r"expected sections of keys"),
    ],
)
def test_bad_values_name_the_key(raw, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        validate(raw, "x.toml")


def test_int_accepted_for_float_and_null_for_optional() -> None:
    v = validate({"train": {"lr": 1, "grad_clip": None}, "data": {"path": None}})
    assert v["train"]["lr"] == 1.0 and isinstance(v["train"]["lr"], float)
    assert v["train"]["grad_clip"] is None


TOML = """
[data]
batch_size = 32
[split]
criterion = "gm"
restart = true
"""


@pytest.mark.parametrize("suffix", [".toml", ".yaml", ".json"])
def test_load_file_formats(tmp_path: Path, suffix: str) -> None:
    want = {"data": {"batch_size": 32}, "split": {"criterion": "gm", "restart": True}}
    p = tmp_path / f"c{suffix}"
    if suffix == ".toml":
        p.write_text(TOML)
    elif suffix == ".yaml":
        pytest.importorskip("yaml")
        p.write_text("data:\n  batch_size: 32\nsplit:\n  criterion: gm\n  restart: true\n")
    else:
        p.write_text(json.dumps(want))
    assert load_file(p) == want


def test_load_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_file(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[split\nrounds = 2\n")
    with pytest.raises(ConfigError, match=r"cannot parse .*bad\.toml"):
        load_file(bad)
    other = tmp_path / "c.ini"
    other.write_text("")
    with pytest.raises(ConfigError, match=r"unknown format '\.ini'"):
        load_file(other)
    typo = tmp_path / "typo.toml"
    typo.write_text("[split]\nrouns = 2\n")
    with pytest.raises(ConfigError, match=r"unknown key split\.rouns in .*typo\.toml"):
        load_file(typo)


def test_merge_and_identity() -> None:
    d = defaults()
    m = merge(d, {"split": {"rounds": 3}}, {"split": {"rounds": 4}, "search": {"strategy": "random"}})
    assert m["split"]["rounds"] == 4 and d["split"]["rounds"] == 2  # a new dict; later wins
    split_id, search_id = identity(m, "split"), identity(m, "search")
    assert "split.rounds" in split_id and "search.strategy" not in split_id
    assert "search.strategy" in search_id and split_id.items() <= search_id.items()
    assert "run.progress" not in identity(m, "report")  # never changes results


@pytest.mark.parametrize("threads, expected", [(None, 1), (2, 2), (0, "unchanged")])
def test_run_threads_sets_torch_threads_when_a_stage_starts(tmp_path: Path, threads: int | None, expected) -> None:
    """run.threads defaults to 1 (benchmarks/bench_load.md); 0 leaves torch's own setting."""
    torch.set_num_threads(3)
    raw = {} if threads is None else {"run": {"threads": threads}}
    pipe = Pipeline(tmp_path / "run", [raw], log=lambda _m: None)
    pipe._start("split")
    assert torch.get_num_threads() == (3 if expected == "unchanged" else expected)
