"""Choosing the final architecture: best pick, lowest leaf loss, GM-NAS successive halving; training from
scratch."""

from __future__ import annotations

import math

import pytest
import torch
from _search_helpers import FakeEvaluator, make_tree, tiny_supernet

from lidsplit.search import (
    LeafEvaluator,
    PerLeaf,
    RandomSearch,
    run_search,
    scratch_train_fn,
    select_final,
    successive_halving,
    train_from_scratch,
)
from lidsplit.supernet import search_space
from lidsplit.train import EvalResult

CANDS = [(i, 0, 0, 0, 0, 0) for i in range(5)] + [(0, i, 0, 0, 0, 0) for i in range(1, 4)]  # 8 distinct


def test_successive_halving_keeps_4_then_2_then_the_best() -> None:
    calls: list[tuple[tuple[int, ...], int, int]] = []

    def train_fn(arch, epochs, seed):  # type: ignore[no-untyped-def]
        calls.append((arch, epochs, seed))
        k = CANDS.index(arch)
        # short training favours early candidates, long training late ones: the ranking changes per round
        acc = (8 - k) / 10 if epochs == 1 else k / 10 if epochs == 2 else (1.0 if k == 3 else 0.5)
        return acc, 1.0 - acc

    winner, rounds = successive_halving(CANDS, train_fn, keep=(4, 2, 1), epochs=(1, 2, 4), seed=7)
    assert [(r["keep"], r["epochs"], len(r["scores"])) for r in rounds] == [(4, 1, 8), (2, 2, 4), (1, 4, 2)]
    assert [c[0] for c in calls[:8]] == CANDS and {c[1] for c in calls[:8]} == {1}
    assert [tuple(a) for a in rounds[0]["kept"]] == CANDS[:4]  # best 4 after 1 epoch
    assert [c[0] for c in calls[8:12]] == CANDS[:4] and {c[1] for c in calls[8:12]} == {2}
    assert [tuple(a) for a in rounds[1]["kept"]] == [CANDS[3], CANDS[2]]  # best 2 after 2 epochs
    assert [c[0] for c in calls[12:]] == [CANDS[3], CANDS[2]] and {c[1] for c in calls[12:]} == {4}
    assert winner == CANDS[3] and len(calls) == 14 and {c[2] for c in calls} == {7}


def test_successive_halving_skips_rounds_that_keep_everyone_and_checks_its_schedule() -> None:
    calls = []

    def train_fn(arch, epochs, seed):  # type: ignore[no-untyped-def]
        calls.append((arch, epochs))
        return sum(arch) / 10, 0.0

    winner, rounds = successive_halving(CANDS[:3], train_fn)
    assert [r["keep"] for r in rounds] == [2, 1] and len(calls) == 5 and winner == CANDS[2]
    calls.clear()
    assert successive_halving(CANDS[:1], train_fn) == (CANDS[0], []) and calls == []
    for keep, epochs in [((4, 2), (1, 2)), ((2, 4, 1), (1, 2, 3)), ((4, 2, 1), (1, 2))]:
        with pytest.raises(ValueError, match="keep"):
            successive_halving(CANDS, train_fn, keep=keep, epochs=epochs)
    with pytest.raises(ValueError, match="repeat"):
        successive_halving([CANDS[0], CANDS[0]], train_fn)


def picks_result():  # type: ignore[no-untyped-def]
    tree = make_tree()
    s = PerLeaf(tree, lambda sub, seed: RandomSearch(sub, samples=5, seed=seed), seed=0)
    return tree, run_search(FakeEvaluator(tree), s, progress=False)


def test_select_by_validation_accuracy_and_by_leaf_loss() -> None:
    tree, res = picks_result()
    picks = res.picks()
    assert set(picks) == set(tree.leaf_ids())
    sel = select_final(res, "val_acc")
    assert sel.arch == res.best.arch and sel.leaf == res.best.leaf
    assert sel.scores == {leaf: r.acc for leaf, r in picks.items()}
    sel = select_final(res, "val_loss", leaf_losses={3: 0.9, 4: 0.2, 5: 0.5, 6: 0.3})
    assert (sel.leaf, sel.arch) == (4, picks[4].arch)
    # a mapping of picks works too; a pick outside its leaf is refused
    assert select_final({lf: r for lf, r in picks.items()}, "val_acc").arch == res.best.arch
    with pytest.raises(ValueError, match="lies in leaf"):
        select_final({3: picks[4].arch}, "val_acc", evaluator=LeafEvaluator(tree, {}, None))
    with pytest.raises(ValueError, match="criterion"):
        select_final(res, "test_acc")
    with pytest.raises(ValueError, match="no validation loss"):
        select_final(res, "val_loss")


def test_select_by_leaf_loss_estimated_by_the_evaluator(data) -> None:  # type: ignore[no-untyped-def]
    tree, res = picks_result()

    def fn(model, arch, loaders, **kw):  # type: ignore[no-untyped-def]
        return EvalResult(tuple(arch), 0.5, 0.1 if tree.route(arch) == 6 else 1.0, 1)

    models = {leaf: tiny_supernet(0) for leaf in tree.leaf_ids()}
    ev = LeafEvaluator(tree, models, data.loaders(16), evaluate_fn=fn)
    sel = select_final(res, "val_loss", evaluator=ev, loss_samples=3)
    assert sel.leaf == 6 and sel.arch == res.picks()[6].arch
    assert ev.evaluations == 3 * 4 and sel.scores[6] == pytest.approx(0.1)


def test_select_by_successive_halving_with_the_default_trainer(data) -> None:  # type: ignore[no-untyped-def]
    tree, res = picks_result()
    picks = {leaf: res.picks()[leaf] for leaf in (3, 6)}
    sel = select_final(picks, "successive_halving", supernet=tiny_supernet(0), loaders=data.loaders(16), keep=(1,),
                       epochs=(1,), seed=0)
    assert sel.leaf in (3, 6) and sel.arch == picks[sel.leaf].arch
    (rnd,) = sel.rounds
    assert rnd["epochs"] == 1 and [tuple(a) for a, _, _ in rnd["scores"]] == [picks[3].arch, picks[6].arch]
    assert sel.scores[sel.leaf] == max(acc for _, acc, _ in rnd["scores"])
    with pytest.raises(ValueError, match="train_fn"):
        select_final(picks, "successive_halving")


def test_train_from_scratch_reports_test_accuracy_and_returns_the_plain_network(data) -> None:  # type: ignore[no-untyped-def]
    net = tiny_supernet(0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    arch = (3, 1, 2, 3, 0, 4)
    loaders = data.loaders(16)
    r = train_from_scratch(arch, net, loaders, 2, seed=1, lr=0.05)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the given supernet is untouched
    assert r.arch == arch and r.epochs == 2 and len(r.history) == 2
    assert 0.0 <= r.test_acc <= 1.0 and math.isfinite(r.test_loss) and 0.0 <= r.val_acc <= 1.0
    # the plain network computes what the trained path computes
    plain = r.model.eval()
    with pytest.raises(ValueError, match="no Choice"):
        search_space(plain)
    x, y = data.test.x, data.test.y
    with torch.no_grad():
        acc = float((plain(x).argmax(1) == y).float().mean())
    assert acc == pytest.approx(r.test_acc)
    # reproducible from the seed; another seed trains other weights
    r2 = train_from_scratch(arch, net, loaders, 2, seed=1, lr=0.05)
    assert (r2.val_loss, r2.test_loss) == (r.val_loss, r.test_loss)
    r3 = train_from_scratch(arch, net, loaders, 2, seed=2, lr=0.05)
    assert r3.val_loss != r.val_loss
    # a factory works as well; train_fn returns (val_acc, val_loss)
    fn = scratch_train_fn(lambda: tiny_supernet(5), loaders, lr=0.05)
    acc, loss = fn(arch, 1, 0)
    assert 0.0 <= acc <= 1.0 and math.isfinite(loss) and fn(arch, 1, 0) == (acc, loss)


def test_scratch_train_fn_work_dir_keeps_finished_trainings(data, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import lidsplit.search.select as select_mod

    loaders, arch = data.loaders(16), (3, 1, 2, 3, 0, 4)
    trained: list[int] = []
    real = select_mod.train_from_scratch
    monkeypatch.setattr(select_mod, "train_from_scratch", lambda *a, **k: trained.append(a[3]) or real(*a, **k))
    first = scratch_train_fn(tiny_supernet(0), loaders, work_dir=tmp_path, lr=0.05)(arch, 1, 0)
    again = scratch_train_fn(tiny_supernet(0), loaders, work_dir=tmp_path, lr=0.05)  # a new process, say
    assert again(arch, 1, 0) == first and trained == [1]  # read back, not trained again
    again(arch, 2, 0)
    assert trained == [1, 2] and not list(tmp_path.glob("*.ckpt"))  # finished: no checkpoint left
    with pytest.raises(ValueError, match="other settings"):
        scratch_train_fn(tiny_supernet(0), loaders, work_dir=tmp_path, lr=0.1)
    with pytest.raises(FileNotFoundError, match="work_dir"):
        scratch_train_fn(tiny_supernet(0), loaders, work_dir=tmp_path / "missing")
