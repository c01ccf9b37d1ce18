"""evaluate_arch (BatchNorm recalibration, state left unchanged, reproducible) and child_weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from lidsplit.supernet import BatchNorm2d, Choice, SubSupernet, search_space, use_path
from lidsplit.train import (
    child_weights,
    evaluate_arch,
    evaluate_archs,
    preserved_state,
    recalibrate_bn,
    reinitialize,
    train_subsupernet,
)


def snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], list[bool], list[object]]:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    moms = [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    return state, modes, moms


def assert_snapshot(model: nn.Module, snap) -> None:  # type: ignore[no-untyped-def]
    state, modes, moms = snap
    now = model.state_dict()
    assert now.keys() == state.keys()
    for k in state:
        assert torch.equal(now[k], state[k]), k
    assert [m.training for m in model.modules()] == modes
    assert [m.momentum for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] == moms


@pytest.fixture(scope="module")
def trained(data, one_thread):  # type: ignore[no-untyped-def]
    from lidsplit.spaces import nb201

    torch.manual_seed(0)
    m = nb201(C=4, N=1, num_classes=4, in_channels=1)
    train_subsupernet(m, SubSupernet.full(search_space(m)), data.loaders(16), 2, progress=False, lr=0.05)
    return m


def test_evaluate_leaves_state_unchanged_and_is_reproducible(data, trained) -> None:  # type: ignore[no-untyped-def]
    m = trained
    loaders = data.loaders(16)
    for mode in (True, False):
        m.train(mode)
        snap = snapshot(m)
        a = evaluate_arch(m, (3, 1, 3, 2, 0, 4), loaders, calib_batches=2)
        assert_snapshot(m, snap)
        b = evaluate_arch(m, (3, 1, 3, 2, 0, 4), loaders, calib_batches=2)
        assert a == b and a.n == len(data.val) and 0.0 <= a.accuracy <= 1.0 and a.loss > 0
        assert loaders.train.epoch == 0  # calibration does not advance the training loader
    # another architecture in between does not change the first one's result (no leak)
    evaluate_arch(m, (1, 1, 1, 1, 1, 1), loaders, calib_batches=2)
    assert evaluate_arch(m, (3, 1, 3, 2, 0, 4), loaders, calib_batches=2) == a
    t = evaluate_arch(m, ("nor_conv_3x3",) * 6, loaders, split="test", recalibrate=False)
    assert t.n == len(data.test) and t.arch == (3,) * 6
    assert_snapshot(m, snap)
    rs = evaluate_archs(m, [(3,) * 6, (2,) * 6], loaders, calib_batches=1, max_batches=1, progress=True)
    assert [r.n for r in rs] == [16, 16]


def test_recalibration_changes_the_statistics_used(data, trained) -> None:  # type: ignore[no-untyped-def]
    m = trained
    loaders = data.loaders(16)
    arch = (3, 3, 3, 3, 3, 3)
    with_cal = evaluate_arch(m, arch, loaders, calib_batches=3)
    without = evaluate_arch(m, arch, loaders, recalibrate=False)
    assert with_cal.loss != without.loss
    with pytest.raises(ValueError, match="calib_loader"):
        evaluate_arch(m, arch, loaders.val)
    # a torch DataLoader as calibration source: its generator is left as it was
    g = torch.Generator().manual_seed(1)
    dl = DataLoader(data.train, batch_size=16, shuffle=True, generator=g)
    st = g.get_state()
    r1 = evaluate_arch(m, arch, loaders.val, calib_loader=dl, calib_batches=2)
    assert torch.equal(g.get_state(), st)
    assert evaluate_arch(m, arch, loaders.val, calib_loader=dl, calib_batches=2) == r1


class TwoOps(nn.Module):
    """A stand-in supernet: one edge with a conv+BN op and an identity op, then a BN and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.edge = Choice("e", {"conv": nn.Sequential(nn.Conv2d(1, 2, 1), BatchNorm2d(2)), "skip": nn.Conv2d(1, 2, 1)})
        self.bn = BatchNorm2d(2)
        self.head = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.edge(x)).mean((2, 3)))


def test_recalibrate_is_a_cumulative_average() -> None:
    torch.manual_seed(0)
    m = TwoOps()
    batches = [(torch.randn(8, 1, 4, 4) * (i + 1) + i, torch.zeros(8, dtype=torch.int64)) for i in range(3)]
    with preserved_state(m):
        used = recalibrate_bn(m, (0,), batches, batches=3)
        assert used == 3 and not m.training
        feats = []
        with torch.no_grad(), use_path(m, (0,)):
            conv_bn = m.edge.ops[0]
            for x, _ in batches:
                feats.append(conv_bn[0](x))
        expect = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
        assert torch.allclose(conv_bn[1].running_mean, expect, atol=1e-6)
        assert int(conv_bn[1].num_batches_tracked) == 3
        assert m.edge.ops[0][1].momentum is None
    assert m.edge.ops[0][1].momentum == 0.1 and m.training


def test_child_weights_inherit_and_restart() -> None:
    torch.manual_seed(0)
    parent = TwoOps()
    with torch.no_grad():
        parent.bn.running_mean.fill_(3.0)
    kid = child_weights(parent, "inherit")
    assert kid is not parent
    for (k, a), b in zip(parent.state_dict().items(), kid.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr(), k
    with torch.no_grad():
        next(kid.parameters()).add_(1.0)
    assert not torch.equal(next(kid.parameters()), next(parent.parameters()))

    rng = torch.get_rng_state()
    r1 = child_weights(parent, "restart", seed=5)
    r2 = child_weights(parent, "restart", seed=5)
    r3 = child_weights(parent, "restart", seed=6)
    assert torch.equal(torch.get_rng_state(), rng)  # the global RNG is untouched
    assert all(torch.equal(a, b) for a, b in zip(r1.state_dict().values(), r2.state_dict().values()))
    assert not torch.equal(r1.head.weight, r3.head.weight)
    assert not torch.equal(r1.head.weight, parent.head.weight)
    assert torch.equal(r1.bn.running_mean, torch.zeros(2))  # BatchNorm statistics reset too
    assert parent.bn.running_mean[0] == 3.0
    with pytest.raises(ValueError):
        child_weights(parent, "copy")


def test_restart_needs_an_initialiser_for_bare_parameters() -> None:
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

    with pytest.raises(ValueError, match="init_fn"):
        reinitialize(Bare(), seed=0)
    m = reinitialize(Bare(), seed=0, init_fn=lambda mod: mod.w.zero_())
    assert torch.equal(m.w, torch.zeros(3))


def test_restart_of_nb201_reproduces(make_model) -> None:  # type: ignore[no-untyped-def]
    p = make_model(0)
    a, b = child_weights(p, "restart", seed=1), child_weights(p, "restart", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.classifier.weight, p.classifier.weight)
