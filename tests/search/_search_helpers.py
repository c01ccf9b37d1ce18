"""Helpers of the search tests: a 4-leaf split tree of NB201, tiny leaf supernets, and a fast deterministic
stand-in objective."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch
from torch import nn

from lidsplit.search import Result
from lidsplit.spaces import NB201_SPACE, nb201, toy_macro
from lidsplit.split import SplitTree


def make_tree() -> SplitTree:
    """Root split on edge 0 into {none, skip} / {conv1x1, conv3x3, pool}; the second child split again on
    edge 3 into {none, skip, conv1x1} / {conv3x3, pool}; the first child on edge 5 into {0, 1, 2} / {3, 4}:
    leaves 3, 4, 5, 6 (left to right)."""
    tree = SplitTree(NB201_SPACE)
    a, b = tree.split(0, 0, [[0, 1], [2, 3, 4]])
    tree.split(a, 5, [[0, 1, 2], [3, 4]])
    tree.split(b, 3, [[0, 1, 2], [3, 4]])
    return tree


def small_toy() -> nn.Module:
    """The TangleNAS toy conv-macro space at 1/8 width, for 1 x 8 x 8 images of 4 classes."""
    return toy_macro(width_mult=0.125, in_channels=1, num_classes=4)


def tiny_supernet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nb201(C=4, N=1, num_classes=4, in_channels=1)


def fake_score(arch: tuple[int, ...]) -> float:
    """A deterministic 'accuracy' in [0, 1): more parametric ops score higher, plus a hash jitter."""
    h = int.from_bytes(hashlib.sha256(repr(tuple(arch)).encode()).digest()[:4], "little") / 2**32
    return (sum(a in (2, 3) for a in arch) + h) / 7.0


class FakeEvaluator:
    """Scores architectures with ``fake_score``; counts calls; routes with ``tree`` when given."""

    def __init__(self, tree: SplitTree | None = None, score: Callable[[tuple[int, ...]], float] = fake_score) -> None:
        self.tree, self.score = tree, score
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, arch: tuple[int, ...]) -> Result:
        self.calls.append(tuple(arch))
        acc = self.score(tuple(arch))
        return Result(acc, 1.0 - acc, None if self.tree is None else self.tree.route(arch), 16)

