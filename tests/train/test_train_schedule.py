"""A schedule continued across stages: segments of one cosine, and the optimiser state carried over,
reproduce one uninterrupted run."""

from __future__ import annotations

import math

import pytest
import torch

from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import TrainConfig, train_subsupernet


def one_path_sub(model):  # type: ignore[no-untyped-def]
    """Every edge restricted to one op: the sampled path is the same at every step."""
    space = search_space(model)
    return SubSupernet(space, tuple(frozenset({1}) for _ in space.edges))


def fixed_batches(data, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:  # type: ignore[no-untyped-def]
    """The same batches in the same order every epoch (no loader randomness)."""
    x, y = data.train.x, data.train.y
    return [(x[i * 16:(i + 1) * 16], y[i * 16:(i + 1) * 16]) for i in range(n)]


def test_two_segments_with_carried_optimizer_equal_one_run(data, make_model) -> None:  # type: ignore[no-untyped-def]
    batches = fixed_batches(data)
    ref = make_model(0)
    sub = one_path_sub(ref)
    res = train_subsupernet(ref, sub, batches, config=TrainConfig(epochs=4, lr=0.1, lr_min=0.01), progress=False)

    staged = make_model(0)
    first = train_subsupernet(staged, sub, batches, progress=False,
                              config=TrainConfig(epochs=1, lr=0.1, lr_min=0.01, schedule_epochs=4))
    second = train_subsupernet(staged, sub, batches, progress=False, optimizer_state=first.optimizer_state,
                               config=TrainConfig(epochs=3, lr=0.1, lr_min=0.01, schedule_epochs=4, schedule_start=1))
    for k, v in ref.state_dict().items():
        assert torch.equal(v, staged.state_dict()[k]), k
    assert [h["lr"] for h in first.history + second.history] == pytest.approx([h["lr"] for h in res.history])

    # without the carried momentum, or with the schedule restarted, the second stage lands elsewhere
    second_stage = {
        "fresh optimiser": (False, TrainConfig(epochs=3, lr=0.1, lr_min=0.01, schedule_epochs=4, schedule_start=1)),
        "restarted cosine": (True, TrainConfig(epochs=3, lr=0.1, lr_min=0.01)),
    }
    for name, (carry, cfg) in second_stage.items():
        other = make_model(0)
        f = train_subsupernet(other, sub, batches, progress=False,
                              config=TrainConfig(epochs=1, lr=0.1, lr_min=0.01, schedule_epochs=4))
        train_subsupernet(other, sub, batches, progress=False, config=cfg,
                          optimizer_state=f.optimizer_state if carry else None)
        assert any(not torch.equal(v, other.state_dict()[k]) for k, v in ref.state_dict().items()), name


def test_segment_learning_rates_follow_the_long_cosine(data, make_model) -> None:  # type: ignore[no-untyped-def]
    batches = fixed_batches(data, 2)
    m = make_model(0)
    res = train_subsupernet(m, one_path_sub(m), batches, progress=False,
                            config=TrainConfig(epochs=2, lr=0.1, lr_min=0.0, schedule_epochs=5, schedule_start=3))
    # the last step of epoch e (0-based, of this run) sits at position (3 + e) * 2 + 1 of 10 steps
    want = [0.05 * (1 + math.cos(math.pi * ((3 + e) * 2 + 1) / 10)) for e in range(2)]
    assert [h["lr"] for h in res.history] == pytest.approx(want)


def test_schedule_fields_are_checked_and_plain_identity_is_kept() -> None:
    with pytest.raises(ValueError, match="schedule_epochs"):
        TrainConfig(epochs=2, schedule_epochs=0)
    with pytest.raises(ValueError, match="exceeds"):
        TrainConfig(epochs=3, schedule_epochs=4, schedule_start=2)
    with pytest.raises(ValueError, match="schedule_start"):
        TrainConfig(epochs=1, schedule_start=-1)
    assert "schedule_epochs" not in TrainConfig(epochs=3).to_json()  # checkpoints made before still resume
    assert TrainConfig(epochs=1, schedule_epochs=3).to_json()["schedule_epochs"] == 3


def test_optimizer_state_of_another_model_is_refused(data, make_model) -> None:  # type: ignore[no-untyped-def]
    batches = fixed_batches(data, 1)
    m = make_model(0)
    res = train_subsupernet(m, one_path_sub(m), batches, config=TrainConfig(epochs=1), progress=False)
    state = res.optimizer_state
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:3]
    with pytest.raises(ValueError, match="optimizer_state"):
        train_subsupernet(make_model(0), one_path_sub(m), batches, config=TrainConfig(epochs=1),
                          optimizer_state=state, progress=False)
