"""Every weight-entangled space: gradients reach every architecture weight; every architecture
materializes to a plain network equal to the supernet's path."""

from __future__ import annotations

import pytest
import torch

from lidsplit.search import arch_parameters
from lidsplit.spaces import mobilenet, nb201, toy_macro, transformer
from lidsplit.supernet import Choice, materialize, search_space, use_path, use_weighted


def test_gradients_reach_every_architecture_weight():
    torch.manual_seed(6)
    for model, x in ((toy_macro(width_mult=0.25, in_channels=1), torch.randn(4, 1, 8, 8)),
                     (mobilenet(entangled=True), torch.randn(2, 1, 12, 12)),
                     (nb201(C=4, entangled=True), torch.randn(2, 1, 8, 8))):
        alphas = arch_parameters(model, init_std=0.5)
        with use_weighted(model, alphas):
            model(x).square().sum().backward()
        for label, a in alphas.items():
            assert a.grad is not None and bool(a.grad.abs().sum() > 0), (type(model).__name__, label)


@pytest.mark.parametrize("space", ["toy_macro", "nb201", "mobilenet", "transformer"])
def test_every_space_materializes_to_a_plain_network(space):
    torch.manual_seed(10)
    if space == "toy_macro":
        m, x = toy_macro(width_mult=0.25, in_channels=1), torch.randn(2, 1, 8, 8)
    elif space == "nb201":
        m, x = nb201(C=4, entangled=True), torch.randn(2, 1, 8, 8)
    elif space == "mobilenet":
        m, x = mobilenet(entangled=True), torch.randn(2, 1, 12, 12)
    else:
        m, x = transformer(20, block_size=8), torch.randint(0, 20, (2, 8))
    m.eval()
    sp = search_space(m)
    for seed in range(3):
        arch = sp.random_arch(torch.Generator().manual_seed(seed))
        net = materialize(m, arch)
        assert not any(isinstance(mod, Choice) for mod in net.modules())
        with use_path(m, arch):
            torch.testing.assert_close(net(x), m(x))
