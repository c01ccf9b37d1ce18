"""Gradient-based search (lidsplit.search.gradient: DARTS / GDAS / DrNAS) on entangled spaces."""

from __future__ import annotations

import pytest
import torch
from _search_helpers import small_toy

from lidsplit.data.text import CharCorpus, LMBatches, stdlib_text
from lidsplit.search import (
    GradientSearchConfig,
    arch_parameters,
    derive_arch,
    gradient_search,
    loss_score,
    random_search,
    sample_weights,
)
from lidsplit.spaces import lm_loss, transformer
from lidsplit.supernet import Choice, SubSupernet, materialize, search_space, use_path


def test_drnas_search_on_toy_space_end_to_end(toy_loaders):
    torch.manual_seed(0)
    model = small_toy()
    space = search_space(model)
    res = gradient_search(model, toy_loaders.train, toy_loaders.val, GradientSearchConfig(method="drnas", steps=6, seed=1))
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
def test_darts_and_gdas_run(toy_loaders, method):
    model = small_toy()
    res = gradient_search(model, toy_loaders.train, toy_loaders.val, method=method, steps=3, optimizer="adam", lr=3e-4, lr_min=1e-4)
    assert search_space(model).validate_arch(res.arch) == res.arch
    assert res.history[-1]["tau"] == pytest.approx(0.1)


def test_search_inside_a_sub_supernet(toy_loaders):
    model = small_toy()
    space = search_space(model)
    sub = SubSupernet.full(space).split("conv1/kernel", [[0], [1, 2]])[1]
    res = gradient_search(model, toy_loaders.train, toy_loaders.val, method="drnas", steps=2, sub=sub)
    assert sub.contains(res.arch)
    res = gradient_search(model, toy_loaders.train, toy_loaders.val, method="gdas", steps=2, sub=sub)
    assert sub.contains(res.arch)


def test_sample_weights():
    model = small_toy()
    space = search_space(model)
    alphas = arch_parameters(model, init_std=1.0)
    w, sm, _ = sample_weights("drnas", alphas, space)
    assert not sm
    for v in w.values():
        assert bool((v > 0).all()) and float(v.detach().sum()) == pytest.approx(1.0, abs=1e-5)
    w, sm, sub = sample_weights("gdas", alphas, space, tau=0.5, generator=torch.Generator().manual_seed(0))
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
    arch = derive_arch(alphas, space)
    assert arch[0] == 1 and arch[5] == 0
    sub = SubSupernet.full(space).split("conv1/kernel", [[1], [0, 2]])[1]
    assert derive_arch(alphas, space, sub)[0] == 2


def test_transformer_drnas_on_stdlib_text():
    torch.manual_seed(2)
    corpus = CharCorpus(stdlib_text(("this",)))
    train = LMBatches(corpus.train, 16, 8, batches=4, seed=0)
    val = LMBatches(corpus.val, 16, 8, batches=4, seed=1)
    model = transformer(corpus.vocab_size, block_size=16, embed=(8, 16), depth=(1, 2), heads=(1, 2),
                          mlp_ratio=(2, 4), head_dim=8)
    res = gradient_search(model, train, val, method="drnas", steps=3, loss_fn=lm_loss, optimizer="adam", lr=1e-3)
    space = search_space(model)
    assert space.validate_arch(res.arch) == res.arch
    score = loss_score(model, val, batches=2, loss_fn=lm_loss)
    assert score(res.arch) < 0
    assert random_search(score, SubSupernet.full(space), 3).score <= 0
