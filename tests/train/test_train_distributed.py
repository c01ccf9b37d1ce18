"""Data-parallel training (torch.distributed, gloo, 2 local CPU processes) equals one process.

Starting processes is the slow part (each imports torch), so one group of 2 ranks runs every scenario
(module fixture ``ranks``) and the tests compare its results with single-process runs made here.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lidsplit.data import DataSplits
from lidsplit.search import GradientSearchConfig, gradient_search
from lidsplit.spaces import nb201, toy_macro
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import DataParallel, DataParallelError, run_data_parallel, train_data_parallel, train_subsupernet
from lidsplit.train.distributed import shard_of

HP = {"lr": 0.05, "seed": 3}
#: 48 training samples in batches of 15: 15, 15, 15, 3 (shards of 8 / 7 and 2 / 1: uneven)
BATCH = 15
SEARCH = GradientSearchConfig(steps=3, seed=1)
SEARCH_BATCH = 8  # the 16 validation samples in two batches


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    # affine BatchNorm in the cells too, so BatchNorm weights are compared as well as statistics
    return (nb201(C=4, N=1, num_classes=4, in_channels=1, affine=True),
            toy_macro(num_classes=4, in_channels=1, width_mult=0.125))


def _sub(model: nn.Module) -> SubSupernet:
    full = SubSupernet.full(search_space(model))
    # NB201: edge 1<-0 without its conv 1x1 (op 2), which is then never on a path (test_unused_ops_untouched)
    return full.restrict("1<-0", [1, 3]) if "1<-0" in full.space.labels else full


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _scenarios(dp: DataParallel, data: DataSplits, tmp: str) -> dict[str, Any] | None:
    """Every data-parallel run of the tests, on each rank (rank 0 returns the results)."""
    net, toy = _models()
    loaders = data.loaders(BATCH)
    out: dict[str, Any] = {}
    # single path (SPOS), 2 epochs, interrupted after the first: its checkpoint is resumed at world size 1
    m = copy.deepcopy(net)
    train_subsupernet(m, _sub(m), loaders, 2, progress=False, parallel=dp, checkpoint=f"{tmp}/w2.pt", stop_after=1, **HP)
    if dp.rank == 0:
        shutil.copy(f"{tmp}/w2.pt", f"{tmp}/w2_epoch1.pt")
    res = train_subsupernet(m, _sub(m), loaders, 2, progress=False, parallel=dp, checkpoint=f"{tmp}/w2.pt", **HP)
    out["spos"] = (_state(m), res.history, res.resumed_from)
    # a checkpoint written by one process (the test, before starting the ranks) resumed at world size 2
    m = copy.deepcopy(net)
    res = train_subsupernet(m, _sub(m), loaders, 2, progress=False, parallel=dp, checkpoint=f"{tmp}/w1.pt", **HP)
    out["resumed"] = (_state(m), res.resumed_from)
    # DARTS on NB201, DrNAS (TangleNAS) on the entangled toy space, SPOS on it (channel-prefix BatchNorm)
    m = copy.deepcopy(net)
    sl = data.loaders(SEARCH_BATCH)
    r = gradient_search(m, sl.train, sl.val, SEARCH, method="darts", parallel=dp)
    out["darts"] = (_state(m), r.alphas, r.history)
    m = copy.deepcopy(toy)
    r = gradient_search(m, sl.train, sl.val, SEARCH, method="drnas", parallel=dp)
    out["drnas"] = (_state(m), r.alphas, r.history)
    m = copy.deepcopy(toy)
    train_subsupernet(m, _sub(m), loaders, 1, progress=False, parallel=dp, **HP)
    out["toy_spos"] = _state(m)
    # ranks that sample different paths (another seed per rank) are stopped, on every rank alike
    m = copy.deepcopy(net)
    try:
        train_subsupernet(m, _sub(m), loaders, 1, progress=False, parallel=dp, lr=0.05, seed=dp.rank)
    except DataParallelError as e:
        out["mismatch"] = str(e)
    return out if dp.rank == 0 else None


@pytest.fixture(scope="module")
def ranks(data: DataSplits, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    tmp = tmp_path_factory.mktemp("ddp")
    net, _ = _models()
    # one process trains the first epoch of the "resumed" scenario; the ranks finish it
    train_subsupernet(net, _sub(net), data.loaders(BATCH), 2, progress=False, checkpoint=tmp / "w1.pt", stop_after=1,
                      **HP)
    return run_data_parallel(_scenarios, 2, data, str(tmp)), tmp


def _single_spos(data: DataSplits, **kw: Any) -> tuple[nn.Module, Any]:
    net, _ = _models()
    res = train_subsupernet(net, _sub(net), data.loaders(BATCH), 2, progress=False, **HP, **kw)
    return net, res


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if a[k].is_floating_point():
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
        else:  # num_batches_tracked: the same BatchNorm calls
            assert torch.equal(a[k], b[k]), k


def strip_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def test_shards_cover_the_batch_once() -> None:
    class Fake:  # shard_of reads rank and world size only
        def __init__(self, r: int, w: int) -> None:
            self.rank, self.world_size = r, w

    for n, w in [(15, 2), (3, 2), (16, 4), (7, 3)]:
        rows, sizes = [], []
        for r in range(w):
            sl, weight = shard_of(n, Fake(r, w))  # type: ignore[arg-type]
            rows += list(range(n))[sl]
            sizes.append(sl.stop - sl.start)
            assert weight == pytest.approx(sizes[-1] * w / n)  # DDP's mean over ranks = the batch mean
        assert rows == list(range(n))
        assert max(sizes) - min(sizes) <= 1
    with pytest.raises(DataParallelError, match="cannot be shared by 4"):
        shard_of(3, Fake(0, 4))  # type: ignore[arg-type]


def test_single_path_equals_one_process(ranks: Any, data: DataSplits) -> None:
    out, _ = ranks
    state, history, resumed = out["spos"]
    net, res = _single_spos(data)
    _close(state, net.state_dict())
    assert resumed == {"epoch": 1, "batch": 0, "step": 4}
    for h1, h2 in zip(strip_time(history), strip_time(res.history), strict=True):
        assert h1.keys() == h2.keys()
        for k in h1:
            assert h1[k] == pytest.approx(h2[k], rel=1e-5)


def test_unused_ops_untouched(ranks: Any) -> None:
    """An op never on a path gets no gradient under DDP either (grad None, not zeros): weight decay and
    momentum leave it bit-identical."""
    out, _ = ranks
    state = out["spos"][0]
    start = _models()[0].state_dict()
    keys = [k for k in state if ".edges.0.ops.2." in k and k.endswith("weight")]
    assert keys and all(torch.equal(state[k], start[k]) for k in keys)
    moved = [k for k in state if ".edges.0.ops.3." in k and k.endswith("weight")]
    assert moved and not any(torch.equal(state[k], start[k]) for k in moved)


def test_resume_across_world_sizes(ranks: Any, data: DataSplits) -> None:
    out, tmp = ranks
    net, _ = _single_spos(data)
    # one process's checkpoint finished by two ranks
    state, resumed = out["resumed"]
    assert resumed == {"epoch": 1, "batch": 0, "step": 4}
    _close(state, net.state_dict())
    # two ranks' checkpoint (after epoch 1) finished by one process
    other, res = _single_spos(data, checkpoint=tmp / "w2_epoch1.pt")
    assert res.resumed_from == {"epoch": 1, "batch": 0, "step": 4}
    _close(other.state_dict(), net.state_dict())


@pytest.mark.parametrize("method", ["darts", "drnas"])
def test_weighted_search_equals_one_process(ranks: Any, data: DataSplits, method: str) -> None:
    out, _ = ranks
    state, alphas, history = out[method]
    net, toy = _models()
    m = net if method == "darts" else toy
    loaders = data.loaders(SEARCH_BATCH)
    r = gradient_search(m, loaders.train, loaders.val, SEARCH, method=method)
    _close(state, m.state_dict())
    _close(alphas, r.alphas)
    for h1, h2 in zip(history, r.history, strict=True):
        assert h1["train_loss"] == pytest.approx(h2["train_loss"], rel=1e-5)
        assert h1["val_loss"] == pytest.approx(h2["val_loss"], rel=1e-5)


def test_channel_prefix_batchnorm_is_synchronised(ranks: Any, data: DataSplits) -> None:
    out, _ = ranks
    _, toy = _models()
    train_subsupernet(toy, _sub(toy), data.loaders(BATCH), 1, progress=False, **HP)
    _close(out["toy_spos"], toy.state_dict())


def test_ranks_on_different_paths_stop(ranks: Any) -> None:
    out, _ = ranks
    assert "different architectures at step 1" in out["mismatch"]


def test_worker_error_keeps_its_class(data: DataSplits, tmp_path: Path) -> None:
    """A user error in a rank (here: another run's checkpoint) reaches the caller as itself, no hang."""
    net, toy = _models()
    ck = tmp_path / "other.pt"
    train_subsupernet(toy, _sub(toy), data.loaders(BATCH), 1, progress=False, checkpoint=ck, **HP)
    from lidsplit.train import CheckpointError

    with pytest.raises(CheckpointError, match="other.pt"):
        train_data_parallel(2, net, _sub(net), data.loaders(BATCH), epochs=1, progress=False, checkpoint=ck, **HP)


def test_bad_group_arguments() -> None:
    with pytest.raises(DataParallelError, match="nproc"):
        run_data_parallel(print, 0)
    with pytest.raises(DataParallelError, match="not initialised"):
        DataParallel(0, 2)


def test_split_run_with_two_processes(data: DataSplits, tmp_path: Path) -> None:
    """run_split(nproc=2): the root's warm-up on two processes; the same tree, the same weights up to
    rounding, and the run directory resumable by one process (nproc is not part of its identity)."""
    from lidsplit import run_split
    from lidsplit.common.rundir import RunDir

    kw = {"criterion": "gradnorm", "policy": 1, "warmup_epochs": 1, "batch_size": BATCH, "score_batch_size": 16,
          "progress": False,
          "train": {"lr": 0.05}}
    net, _ = _models()
    two = run_split(copy.deepcopy(net), data, run_dir=tmp_path / "two", nproc=2, **kw)
    one = run_split(copy.deepcopy(net), data, run_dir=tmp_path / "one", **kw)
    assert [n.sub for n in two.nodes] == [n.sub for n in one.nodes]
    load = lambda d: RunDir(d).load_state("nodes/0/trained.pt")  # noqa: E731
    _close(load(tmp_path / "two"), load(tmp_path / "one"))
    again = run_split(copy.deepcopy(net), data, run_dir=tmp_path / "two", **kw)  # finished: loaded as it is
    assert [n.sub for n in again.nodes] == [n.sub for n in two.nodes]


def test_pipeline_key_nproc() -> None:
    from lidsplit.pipeline.config import FIELDS

    f = next(f for f in FIELDS if f.section == "train" and f.key == "nproc")
    assert f.stage is None and f.default == 1  # never changes results: may differ between sittings


def test_cli_under_torchrun_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Each torchrun rank would run the whole command on one directory: refused, pointing at --nproc."""
    from lidsplit.cli.main import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["split", "--out", str(tmp_path / "run")]) == 2
    assert "--nproc" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
