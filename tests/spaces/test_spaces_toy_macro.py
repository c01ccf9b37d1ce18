"""The TangleNAS toy conv-macro space (lidsplit.spaces.toy_macro) under the splitting engine: children own
their weights; a sub-supernet's mixture uses only its enabled choices."""

from __future__ import annotations

import torch

from lidsplit.search import arch_parameters
from lidsplit.spaces import toy_macro
from lidsplit.split import SplitTree
from lidsplit.supernet import SubSupernet, search_space, use_sampled_path, use_weighted
from lidsplit.train import child_weights


def storages(model: torch.nn.Module) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()] if t.numel()}


def test_split_children_do_not_share_storage():
    parent = toy_macro(width_mult=0.125, in_channels=1, num_classes=3)
    space = search_space(parent)
    tree = SplitTree(space)
    children = [tree.node(i) for i in tree.split(tree.root.id, "conv2/channels", [[0], [1, 2]])]
    models = [child_weights(parent, "inherit") for _ in children]
    seen = [storages(parent)] + [storages(m) for m in models]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert not (seen[i] & seen[j]), (i, j)
    # same values, independent afterwards
    for m in models:
        for p, q in zip(parent.parameters(), m.parameters()):
            assert torch.equal(p, q)
    with torch.no_grad():
        next(models[0].parameters()).add_(1.0)
    assert not torch.equal(next(models[0].parameters()), next(parent.parameters()))
    # each child runs inside its sub-supernet, mixture and sampled paths
    x = torch.randn(4, 1, 8, 8)
    for node, m in zip(children, models):
        sub = node.sub
        alphas = arch_parameters(m)
        with use_weighted(m, alphas, sub=sub):
            m(x).sum().backward()
        assert float(alphas["conv2/channels"].grad[[j for j in range(3) if j not in sub.masks[3]]].abs().sum()) == 0
        with use_sampled_path(m, sub, torch.Generator().manual_seed(0)) as h:
            m(x)
        assert sub.contains(h.history[0])


def test_entangled_subsupernet_mixture_uses_only_enabled_choices():
    """A sub restricting the channel choices: channels beyond the largest enabled are exactly zero."""
    m = toy_macro(width_mult=0.25, in_channels=1, num_classes=3)
    space = search_space(m)
    sub = SubSupernet.full(space).split("conv1/channels", [[0, 1], [2]])[0]
    alphas = arch_parameters(m, init_std=1.0)
    out = {}
    h = m.layers[0].register_forward_hook(lambda mod, a, y: out.__setitem__("y", y))
    with use_weighted(m, alphas, sub=sub):
        m(torch.randn(4, 1, 8, 8))
    h.remove()
    c_max = m.layers[0].out_dim.values[1]
    assert bool((out["y"][:, c_max:] == 0).all())
    assert SubSupernet.full(space).size == space.size
