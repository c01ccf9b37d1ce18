"""Named training protocols of a split run (lidsplit.split.schedule)."""

from __future__ import annotations

import pytest

from lidsplit.split.policy import levels, rounds
from lidsplit.split.schedule import PRESETS, SplitSchedule, preset


def test_equal_budget_spends_the_base_epochs_exactly() -> None:
    for E in range(8, 41):
        for shape in ((1, 2, 4), (1, 5)):
            s = preset("equal-budget", E, shape)
            assert s.total_epochs == E and s.warmup_epochs[0] >= 1, (E, shape, s)
    s = preset("equal-budget", 20, rounds(2))  # the first version's benchmark schedule
    assert (s.warmup_epochs, s.finetune_epochs, s.lr_schedule, s.restart) == ((10, 1), 2, "restart", False)
    assert preset("equal-budget", 20, (1, 5)).warmup_epochs == (10,)
    with pytest.raises(ValueError, match="too small"):
        preset("equal-budget", 5, (1, 5))


def test_every_preset_resolves_and_reports_its_cost() -> None:
    for name in PRESETS:
        for shape in ((1, 2, 4), (1, 5), (1, 2, 6)):
            s = preset(name, 20, shape)
            assert isinstance(s, SplitSchedule) and s.name == name and len(s.warmup_epochs) == len(shape) - 1
            assert s.total_epochs >= s.epochs_per_path >= 1
            assert set(s.run_kwargs()) == {"warmup_epochs", "finetune_epochs", "restart", "lr_schedule",
                                           "carry_optimizer"}
    sf = preset("split-finetune", 20, rounds(2))  # same epochs per path as a one-shot supernet of 20
    assert sf.epochs_per_path == 20 and sf.lr_schedule == "continued" and sf.carry_optimizer
    assert sf.total_epochs == 15 + 4 * 5
    gm = preset("gm-nas", 20, levels([2, 3]))
    assert gm.restart and gm.finetune_epochs == 20 and gm.warmup_epochs == (5, 5) and gm.shape == (1, 2, 6)


def test_bad_preset_arguments_name_the_argument() -> None:
    with pytest.raises(ValueError, match="preset: expected one of"):
        preset("nas_lid", 20, rounds(2))
    with pytest.raises(ValueError, match="epochs"):
        preset("nas-lid", 0, rounds(2))
    with pytest.raises(ValueError, match="policy"):
        preset("nas-lid", 20, (1,))
