"""Evaluate an architecture with the weights of the one leaf of a split tree that contains it.

After splitting, every leaf sub-supernet has its own trained weights. An architecture is scored with the
weights of the leaf whose masks contain it (``SplitTree.route``), BatchNorm recalibrated for it
(``lidsplit.train.evaluate_arch``). Leaves' models are loaded at most once while they stay in an LRU
cache of configurable size, so a search that visits leaves in any order does not reload them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lidsplit.common.seeds import derive_seed
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import Arch, search_space
from lidsplit.train.evaluate import evaluate_arch

__all__ = ["Result", "LeafEvaluator", "ModelSource"]

#: Leaf id -> model, as a mapping (models already built) or a loader callable (e.g. reading a checkpoint).
ModelSource = Mapping[int, nn.Module] | Callable[[int], nn.Module]


@dataclass(frozen=True)
class Result:
    """What an evaluation of one architecture reports to a search strategy.

    The numbers are on the split the evaluator scores (``LeafEvaluator(split="val")`` by default).

    acc: accuracy, a fraction in [0, 1] (the quantity every built-in strategy maximises).
    loss: mean cross-entropy (tie-breaker: lower is better); NaN when unknown.
    leaf: id of the split-tree leaf whose weights were used (None when no tree was involved).
    n: number of evaluated samples behind the numbers (0 when unknown).
    """

    acc: float
    loss: float = math.nan
    leaf: int | None = None
    n: int = 0

    def to_json(self) -> dict[str, Any]:
        """Non-finite numbers stay as they are (written as the JSON extensions NaN / Infinity, as the split
        tree's JSON does)."""
        return {"acc": float(self.acc), "loss": float(self.loss), "leaf": self.leaf, "n": int(self.n)}


class LeafEvaluator:
    """Scores architectures with the weights of the leaf that contains them.

    Args:
        tree: the split tree; ``tree.route(arch)`` names the leaf whose model is used.
        models: leaf id -> model, a mapping or a loader callable (called once per leaf while the leaf stays
            cached). Every model must be a supernet of ``tree.space``.
        loaders: a ``DataLoaders`` (``split`` is evaluated, BatchNorm is recalibrated on ``train``), or any
            iterable of ``(x, y)`` batches together with ``calib_loader``.
        split: ``"val"`` (default; the search must never look at ``"test"``) or ``"test"``.
        cache_size: how many leaf models to keep (least recently used evicted); None keeps all.
        calib_batches / recalibrate / max_batches / calib_loader: passed to ``evaluate_arch``.
        evaluate_fn: replaces ``evaluate_arch`` (same call ``fn(model, arch, loaders, **kw)``, returning an
            object with ``accuracy``, ``loss`` and ``n``), e.g. to score with a proxy or to instrument.

    Attributes:
        loads: leaf id -> how many times its model was loaded (1 per leaf unless evicted).
        evaluations: number of ``evaluate`` calls so far.
    """

    def __init__(
        self,
        tree: SplitTree,
        models: ModelSource,
        loaders: Any,
        *,
        split: str = "val",
        cache_size: int | None = None,
        calib_batches: int = 10,
        recalibrate: bool = True,
        max_batches: int | None = None,
        calib_loader: Any = None,
        evaluate_fn: Callable[..., Any] | None = None,
    ) -> None:
        if not isinstance(tree, SplitTree):
            raise TypeError(f"LeafEvaluator: tree must be a SplitTree, got {type(tree).__name__}")
        if isinstance(models, Mapping):
            self._load: Callable[[int], nn.Module] = self._from_mapping(models)
        elif callable(models):
            self._load = models
        else:
            raise TypeError("LeafEvaluator: models must be a mapping leaf id -> model or a callable leaf id -> model, "
                            f"got {type(models).__name__}")
        if cache_size is not None and (not isinstance(cache_size, int) or cache_size < 1):
            raise ValueError(f"LeafEvaluator: cache_size must be a positive int or None, got {cache_size!r}")
        if split not in ("val", "test"):
            raise ValueError(f"LeafEvaluator: split must be 'val' or 'test', got {split!r}")
        self.tree = tree
        self.loaders = loaders
        self.split = split
        self.cache_size = cache_size
        self.eval_kwargs: dict[str, Any] = {"split": split, "calib_batches": calib_batches, "recalibrate": recalibrate,
                                            "max_batches": max_batches, "calib_loader": calib_loader}
        self.evaluate_fn = evaluate_arch if evaluate_fn is None else evaluate_fn
        self._cache: OrderedDict[int, nn.Module] = OrderedDict()
        self._leaves = frozenset(tree.leaf_ids())
        self.loads: dict[int, int] = {}
        self.evaluations = 0

    @staticmethod
    def _from_mapping(models: Mapping[int, nn.Module]) -> Callable[[int], nn.Module]:
        def load(leaf: int) -> nn.Module:
            try:
                return models[leaf]
            except KeyError:
                raise KeyError(f"LeafEvaluator: no model for leaf {leaf}; the mapping has leaves {sorted(models)}") from None

        return load

    # ---- leaves -----------------------------------------------------------------------------------
    @property
    def space(self):  # noqa: ANN201 - SearchSpace
        return self.tree.space

    def route(self, arch: Sequence[int | str]) -> int:
        """The id of the leaf containing ``arch`` (ValueError if the tree's root does not)."""
        return self.tree.route(arch)

    def model(self, leaf: int) -> nn.Module:
        """The model of ``leaf``, from the cache or loaded (and cached)."""
        if leaf not in self._leaves:
            raise KeyError(f"LeafEvaluator: {leaf!r} is not a leaf of the tree (leaves {sorted(self._leaves)})")
        m = self._cache.get(leaf)
        if m is not None:
            self._cache.move_to_end(leaf)
            return m
        m = self._load(leaf)
        if not isinstance(m, nn.Module):
            raise TypeError(f"LeafEvaluator: the model of leaf {leaf} is a {type(m).__name__}, not an nn.Module")
        got = search_space(m)
        if got != self.tree.space:
            raise ValueError(f"LeafEvaluator: the model of leaf {leaf} is a supernet of {got!r}, expected the tree's "
                             f"space {self.tree.space!r}")
        self.loads[leaf] = self.loads.get(leaf, 0) + 1
        self._cache[leaf] = m
        if self.cache_size is not None:
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return m

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluate(self, arch: Sequence[int | str]) -> Result:
        """Accuracy and loss of ``arch`` with its leaf's weights (BatchNorm recalibrated by default)."""
        a: Arch = self.tree.space.validate_arch(arch)
        leaf = self.tree.route(a)
        r = self.evaluate_fn(self.model(leaf), a, self.loaders, **self.eval_kwargs)
        self.evaluations += 1
        return Result(float(r.accuracy), float(r.loss), leaf, int(r.n))

    __call__ = evaluate

    def leaf_loss(self, leaf: int, samples: int = 8, *, seed: int = 0) -> float:
        """A leaf's validation loss (Few-Shot NAS's sub-supernet selection): the mean loss of ``samples``
        architectures drawn uniformly inside the leaf (seeded), each evaluated with the leaf's weights."""
        if samples < 1:
            raise ValueError(f"leaf_loss: samples must be >= 1, got {samples}")
        node = self.tree.node(leaf)
        if not node.is_leaf:
            raise KeyError(f"leaf_loss: node {leaf} is not a leaf")
        gen = torch.Generator().manual_seed(derive_seed("search.leaf_loss", seed, leaf))
        losses = [self.evaluate(node.sub.sample(gen)).loss for _ in range(samples)]
        return float(sum(losses) / len(losses))

    def config(self) -> dict[str, Any]:
        """What identifies this evaluator's numbers in a search history (tree partition and settings)."""
        leaves = [{"id": n.id, "masks": [sorted(m) for m in n.sub.masks]} for n in self.tree.leaves()]
        kw = {k: v for k, v in self.eval_kwargs.items() if k != "calib_loader"}
        return {"leaves": leaves, **kw}

    def __repr__(self) -> str:
        return (f"LeafEvaluator({len(self._leaves)} leaves, split={self.split!r}, cache_size={self.cache_size}, "
                f"cached={list(self._cache)})")
