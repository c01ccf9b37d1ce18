"""Gradient-based search (DARTS / GDAS / DrNAS) and two-stage baselines on entangled spaces."""

from __future__ import annotations

import pytest
import torch

from lidsplit import tangle as T
from lidsplit.data import synthetic
from lidsplit.supernet import Choice, SubSupernet, materialize, search_space, use_path


@pytest.fixture(scope="module")
def data():
    return synthetic(192, num_classes=4, in_channels=1, image_size=8, seed=0, noise=0.5).loaders(32, seed=0)


def small_toy():
    return T.toy_macro(width_mult=0.125, in_channels=1, num_classes=4)


def test_drnas_search_on_toy_space_end_to_end(data):
    torch.manual_seed(0)
    model = small_toy()
    space = search_space(model)
    res = T.search(model, data.train, data.val, T.SearchConfig(method="drnas", steps=6, seed=1))
    assert space.validate_arch(res.arch) == res.arch
    assert res.names == space.names(res.arch)
    assert len(res.history) == 6 and all("val_loss" in h and "train_loss" in h for h in res.history)
    assert all(torch.isfinite(torch.tensor(h["train_loss"])) for h in res.history)
    # the alphas moved
    assert any(float(a.abs().max()) > 1e-3 + 1e-6 for a in res.alphas.values())
    # the derived architecture runs, as a path and materialized (a plain network)
    x = torch.randn(2, 1, 8, 8)
    net = materialize(model, res.arch)
    assert not any(isinstance(m, Choice) for m in net.modules())
    model.eval(), net.eval()
    with use_path(model, res.arch):
        torch.testing.assert_close(net(x), model(x))


@pytest.mark.parametrize("method", ["darts", "gdas"])
def test_darts_and_gdas_run(data, method):
    model = small_toy()
    res = T.search(model, data.train, data.val, method=method, steps=3, optimizer="adam", lr=3e-4, lr_min=1e-4)
    assert search_space(model).validate_arch(res.arch) == res.arch
    assert res.history[-1]["tau"] == pytest.approx(0.1)


def test_search_inside_a_sub_supernet(data):
    model = small_toy()
    space = search_space(model)
    sub = SubSupernet.full(space).split("conv1/kernel", [[0], [1, 2]])[1]
    res = T.search(model, data.train, data.val, method="drnas", steps=2, sub=sub)
    assert sub.contains(res.arch)
    res = T.search(model, data.train, data.val, method="gdas", steps=2, sub=sub)
    assert sub.contains(res.arch)


def test_sample_weights():
    model = small_toy()
    space = search_space(model)
    alphas = T.arch_parameters(model, init_std=1.0)
    w, sm, _ = T.sample_weights("drnas", alphas, space)
    assert not sm
    for v in w.values():
        assert bool((v > 0).all()) and float(v.detach().sum()) == pytest.approx(1.0, abs=1e-5)
    w, sm, sub = T.sample_weights("gdas", alphas, space, tau=0.5, generator=torch.Generator().manual_seed(0))
    arch = tuple(next(iter(m)) for m in sub.masks)
    for e, v in zip(space.edges, w.values()):
        assert sorted(v.tolist()) == [0.0] * (e.num_ops - 1) + [1.0]
    assert tuple(int(v.argmax()) for v in w.values()) == arch
    # straight-through: the one-hot sample has the Gumbel-softmax gradient
    loss = sum((v * torch.arange(v.numel())).sum() for v in w.values())
    loss.backward()
    assert all(a.grad is not None and bool(a.grad.abs().sum() > 0) for a in alphas.values())


def test_derive_arch_per_dimension_argmax():
    space = search_space(small_toy())
    alphas = {e.label: torch.zeros(e.num_ops) for e in space.edges}
    alphas["conv1/kernel"] = torch.tensor([0.1, 0.9, 0.3])
    alphas["conv3/channels"] = torch.tensor([0.5, 0.2, 0.4])
    arch = T.derive_arch(alphas, space)
    assert arch[0] == 1 and arch[5] == 0
    sub = SubSupernet.full(space).split("conv1/kernel", [[1], [0, 2]])[1]
    assert T.derive_arch(alphas, space, sub)[0] == 2


def test_spos_with_random_and_evolutionary_search(data):
    torch.manual_seed(1)
    model = small_toy()
    space = search_space(model)
    losses = T.spos_train(model, data.train, steps=5)
    assert len(losses) == 5
    score = T.classification_score(model, data, calib_batches=1, max_batches=1)
    sub = SubSupernet.full(space)
    rs = T.random_search(score, sub, 4, seed=0)
    assert len(rs.evaluated) == 4 and sub.contains(rs.arch)
    es = T.evolutionary_search(score, sub, population=4, generations=2, parents=2, crossover=1, mutation=1, seed=0)
    assert sub.contains(es.arch)
    assert es.score == max(s for _, s in es.evaluated)
    assert len({a for a, _ in es.evaluated}) == len(es.evaluated)


def test_transformer_drnas_on_stdlib_text():
    torch.manual_seed(2)
    corpus = T.CharCorpus(T.stdlib_text(("this",)))
    train = T.LMBatches(corpus.train, 16, 8, batches=4, seed=0)
    val = T.LMBatches(corpus.val, 16, 8, batches=4, seed=1)
    model = T.transformer(corpus.vocab_size, block_size=16, embed=(8, 16), depth=(1, 2), heads=(1, 2),
                          mlp_ratio=(2, 4), head_dim=8)
    res = T.search(model, train, val, method="drnas", steps=3, loss_fn=T.lm_loss, optimizer="adam", lr=1e-3)
    space = search_space(model)
    assert space.validate_arch(res.arch) == res.arch
    score = T.loss_score(model, val, batches=2, loss_fn=T.lm_loss)
    assert score(res.arch) < 0
    assert T.random_search(score, SubSupernet.full(space), 3).score <= 0


def test_stdlib_text_needs_no_download():
    text = T.stdlib_text()
    assert "Beautiful is better than ugly." in text and "def " in text
    corpus = T.CharCorpus(text, val_fraction=0.2)
    assert corpus.decode(corpus.train[:10]) == text[:10]
    b1 = list(T.LMBatches(corpus.train, 8, 2, batches=2, seed=3).iter_epoch(0))
    b2 = list(T.LMBatches(corpus.train, 8, 2, batches=2, seed=3).iter_epoch(0))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(b1, b2))
    assert torch.equal(b1[0][0][:, 1:], b1[0][1][:, :-1])
