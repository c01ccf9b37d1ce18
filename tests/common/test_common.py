"""The ground floor: one error hierarchy with one CLI rule, old import paths, safe reads of damaged files."""

from __future__ import annotations

import pytest
import torch

import lidsplit.common as common
from lidsplit.cli.main import main
from lidsplit.common.errors import (
    CLIError,
    ConfigError,
    DamagedFileError,
    DataNotFoundError,
    LidsplitError,
    RunMismatchError,
)


def test_old_names_are_the_new_ones() -> None:
    from lidsplit import _io
    from lidsplit.cli import CLIError as cli_error
    from lidsplit.data import DataNotFoundError as data_not_found
    from lidsplit.data import derive_seed
    from lidsplit.pipeline import ConfigError as config_error
    from lidsplit.search import HistoryError
    from lidsplit.train import _util

    assert derive_seed is common.derive_seed
    assert _io.atomic_write is common.atomic_write and _util.progress_bar is common.progress_bar
    assert _util.logits_of is common.logits_of and _util.model_device is common.model_device
    assert (cli_error, data_not_found, config_error) == (CLIError, DataNotFoundError, ConfigError)
    assert issubclass(HistoryError, RunMismatchError)
    # code written before the hierarchy caught the built-in classes: it still does
    assert issubclass(ConfigError, ValueError) and issubclass(HistoryError, RuntimeError)
    assert issubclass(DataNotFoundError, FileNotFoundError)


def test_derive_seed_is_unchanged() -> None:
    # a fixed value: every saved run's randomness depends on it
    assert common.derive_seed("TensorLoader", 0, 1) == 7792887623242148084
    assert common.derive_seed("a", 1) != common.derive_seed("a", 2)
    assert 0 <= common.derive_seed("x") < 2**63


@pytest.mark.parametrize("err", [ConfigError("bad key"), RunMismatchError("bad key"), CLIError("bad key", code=3)])
def test_cli_rule_one_line_and_code(err: LidsplitError, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    import lidsplit.cli.split as split_cmd

    def boom(_args: object) -> int:
        raise err

    monkeypatch.setattr(split_cmd, "run", boom)
    assert main(["split", "--out", "x"]) == err.code
    assert capsys.readouterr().err == "lidsplit split: error: bad key\n"


@pytest.mark.parametrize("data", [b"", b"\0" * 64, b'{"a": [1, 2', b"\xff\xfe", b"[" * 100000])
def test_read_json_damaged_names_the_file(tmp_path, data: bytes) -> None:
    p = tmp_path / "tree.json"
    p.write_bytes(data)
    with pytest.raises(DamagedFileError, match=r"tree\.json: this split tree is damaged .*re-run") as e:
        common.read_json(p, what="split tree", remedy="delete it and re-run")
    assert e.value.code == 2 and p.read_bytes() == data


@pytest.mark.parametrize("cut", [0, 7, 100, -1])
def test_load_checkpoint_damaged_never_unsafe_advice(tmp_path, cut: int) -> None:
    p = tmp_path / "final.pt"
    common.atomic_torch_save({"w": torch.arange(100.0)}, p)
    good = p.read_bytes()
    assert torch.equal(common.load_checkpoint(p)["w"], torch.arange(100.0))
    bad = good[:cut] if cut >= 0 else b"\0" * len(good)
    p.write_bytes(bad)
    with pytest.raises(DamagedFileError, match=r"final\.pt: this checkpoint is damaged") as e:
        common.load_checkpoint(p)
    assert "weights_only" not in str(e.value) and p.read_bytes() == bad


def test_load_checkpoint_refuses_code(tmp_path) -> None:
    class Evil:
        def __reduce__(self):  # noqa: ANN204 - would run code on an unsafe load
            return (print, ("ran",))

    p = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, p)
    with pytest.raises(DamagedFileError, match="evil.pt") as e:
        common.load_checkpoint(p)
    assert "weights_only" not in str(e.value)
