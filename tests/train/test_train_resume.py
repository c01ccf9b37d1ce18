"""train_subsupernet: uniform single-path training, seeded, checkpointed and resumable."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import CheckpointError, TrainConfig, TrainEvent, train_subsupernet

HP = {"lr": 0.05, "seed": 3}


class Stop(Exception):
    pass


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def strip_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def reference(data, one_thread):  # type: ignore[no-untyped-def]
    """An uninterrupted 3-epoch run, and the sub-supernet it trained (on one thread, like the tests that
    compare with it: the thread count changes the float results)."""
    torch.manual_seed(0)
    from lidsplit.spaces import nb201

    model = nb201(C=4, N=1, num_classes=4, in_channels=1)
    sub = SubSupernet.full(search_space(model)).restrict("1<-0", [1, 3]).restrict("3<-2", [2])
    res = train_subsupernet(model, sub, data.loaders(16), 3, progress=False, **HP)
    return model, sub, res


def test_uninterrupted_is_reproducible(data, make_model, reference) -> None:  # type: ignore[no-untyped-def]
    ref, sub, res = reference
    assert res.finished and res.epochs_done == 3 and res.steps == 9 and res.resumed_from is None
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    m = make_model(0)
    res2 = train_subsupernet(m, sub, data.loaders(16), 3, progress=True, **HP)  # bars on: same result
    assert same_state(m, ref) and strip_time(res2.history) == strip_time(res.history)
    m3 = make_model(0)
    train_subsupernet(m3, sub, data.loaders(16), 3, progress=False, lr=0.05, seed=4)
    assert not same_state(m3, ref)  # another path seed, other weights


def test_resume_after_exception_in_callback(tmp_path: Path, data, make_model, reference) -> None:  # type: ignore[no-untyped-def]
    ref, sub, res = reference
    ck = tmp_path / "run.pt"

    def boom(ev: TrainEvent) -> None:
        if ev.epoch == 1:  # after the 2nd epoch, once its checkpoint is written
            raise Stop

    with pytest.raises(Stop):
        train_subsupernet(make_model(0), sub, data.loaders(16), 3, checkpoint=ck, on_epoch=boom, progress=False, **HP)
    m = make_model(99)  # other initial weights: all state comes from the checkpoint
    r = train_subsupernet(m, sub, data.loaders(16), 3, checkpoint=ck, progress=False, **HP)
    assert r.resumed_from == {"epoch": 2, "batch": 0, "step": 6} and r.finished
    assert same_state(m, ref)
    assert strip_time(r.history) == strip_time(res.history)
    # a finished checkpoint: nothing more to do, weights restored from it
    steps: list[int] = []
    m2 = make_model(5)
    r2 = train_subsupernet(m2, sub, data.loaders(16), 3, checkpoint=ck, progress=False,
                           on_step=lambda e: steps.append(e.step), **HP)
    assert steps == [] and r2.finished and same_state(m2, ref)
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temp file left


def test_resume_mid_epoch(tmp_path: Path, data, make_model, reference) -> None:  # type: ignore[no-untyped-def]
    ref, sub, res = reference
    ck = tmp_path / "run.pt"

    def boom(ev: TrainEvent) -> None:
        if ev.step == 5:  # inside epoch 2 (3 steps per epoch); checkpoint_every=2 saved after step 4
            raise Stop

    with pytest.raises(Stop):
        train_subsupernet(make_model(0), sub, data.loaders(16), 3, checkpoint=ck, checkpoint_every=2,
                          on_step=boom, progress=False, **HP)
    m = make_model(1)
    r = train_subsupernet(m, sub, data.loaders(16), 3, checkpoint=ck, checkpoint_every=2, progress=False, **HP)
    assert r.resumed_from == {"epoch": 1, "batch": 1, "step": 4}
    assert same_state(m, ref) and strip_time(r.history) == strip_time(res.history)


def test_stop_after_then_continue(tmp_path: Path, data, make_model, reference) -> None:  # type: ignore[no-untyped-def]
    ref, sub, _ = reference
    ck = tmp_path / "run.pt"
    r = train_subsupernet(make_model(0), sub, data.loaders(16), 3, checkpoint=ck, stop_after=2, progress=False, **HP)
    assert r.epochs_done == 2 and not r.finished
    m = make_model(2)
    r = train_subsupernet(m, sub, data.loaders(16), config=TrainConfig(epochs=3, **HP), checkpoint=ck, progress=False)
    assert r.finished and same_state(m, ref)


def test_resume_with_torch_dataloader(tmp_path: Path, data, make_model) -> None:  # type: ignore[no-untyped-def]
    """A plain torch DataLoader with a seeded generator also resumes exactly (mid-epoch too)."""
    space = search_space(make_model(0))
    sub = SubSupernet.full(space)

    def loader() -> DataLoader:
        return DataLoader(data.train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(7))

    ref = make_model(0)
    train_subsupernet(ref, sub, loader(), 2, progress=False, **HP)
    ck = tmp_path / "dl.pt"

    def boom(ev: TrainEvent) -> None:
        if ev.step == 4:
            raise Stop

    with pytest.raises(Stop):
        train_subsupernet(make_model(0), sub, loader(), 2, checkpoint=ck, checkpoint_every=2, on_step=boom,
                          progress=False, **HP)
    m = make_model(8)
    train_subsupernet(m, sub, loader(), 2, checkpoint=ck, checkpoint_every=2, progress=False, **HP)
    assert same_state(m, ref)


def test_refuses_other_runs_and_foreign_files(tmp_path: Path, data, make_model, reference) -> None:  # type: ignore[no-untyped-def]
    _, sub, _ = reference
    ck = tmp_path / "run.pt"
    train_subsupernet(make_model(0), sub, data.loaders(16), 1, checkpoint=ck, progress=False, **HP)
    before = ck.read_bytes()
    other = sub.restrict("2<-0", [0, 1])
    with pytest.raises(CheckpointError, match=r"(?s)another run.*sub.masks"):
        train_subsupernet(make_model(0), other, data.loaders(16), 1, checkpoint=ck, progress=False, **HP)
    with pytest.raises(CheckpointError, match="config.lr"):
        train_subsupernet(make_model(0), sub, data.loaders(16), 1, checkpoint=ck, progress=False, lr=0.1, seed=3)
    with pytest.raises(CheckpointError, match="loader"):
        train_subsupernet(make_model(0), sub, data.loaders(8), 1, checkpoint=ck, progress=False, **HP)
    from lidsplit.spaces import nb201

    with pytest.raises(CheckpointError, match="model"):
        train_subsupernet(nb201(C=8, N=1, num_classes=4, in_channels=1), sub, data.loaders(16), 1, checkpoint=ck,
                          progress=False, **HP)
    assert ck.read_bytes() == before
    # files that are not ours are never touched
    for content in (b"my notes\n", pickle.dumps({"a": 1}), b""):
        f = tmp_path / "user.pt"
        f.write_bytes(content)
        with pytest.raises(CheckpointError, match="not a lidsplit training checkpoint"):
            train_subsupernet(make_model(0), sub, data.loaders(16), 1, checkpoint=f, progress=False, **HP)
        assert f.read_bytes() == content
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a lidsplit"):
        train_subsupernet(make_model(0), sub, data.loaders(16), 1, checkpoint=tmp_path / "other.pt",
                          progress=False, **HP)


def test_arguments_checked(data, make_model) -> None:  # type: ignore[no-untyped-def]
    m = make_model(0)
    sub = SubSupernet.full(search_space(m))
    with pytest.raises(TypeError):
        train_subsupernet(m, sub, data.loaders(16))
    with pytest.raises(TypeError):
        train_subsupernet(m, sub, data.loaders(16), config=TrainConfig(epochs=1), lr=0.1)
    with pytest.raises(ValueError):
        train_subsupernet(m, sub, data.loaders(16), 1, optimizer="rmsprop")
    from lidsplit.supernet import Edge, SearchSpace

    alien = SubSupernet.full(SearchSpace((Edge("e", ("a", "b")),)))
    with pytest.raises(ValueError, match="search space"):
        train_subsupernet(m, alien, data.loaders(16), 1, progress=False)
