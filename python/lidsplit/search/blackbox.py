"""Two-stage baselines (TangleNAS's SPOS+RS and SPOS+ES): train the supernet by uniform single-path
sampling (:func:`lidsplit.train.spos_train` or :func:`lidsplit.train.train_subsupernet`), then search
architectures with the trained weights as a proxy.

:func:`random_search` / :func:`evolutionary_search` search the architectures of a sub-supernet with a score
function ``score(arch) -> float`` (higher is better), e.g. :func:`classification_score` (accuracy with
BatchNorm recalibrated, :func:`lidsplit.train.evaluate_arch`) or :func:`loss_score` (minus the mean loss on
a few batches, for the language model). Both are the search package's own strategies
(:class:`~lidsplit.search.RandomSearch`, :class:`~lidsplit.search.Evolution`) driven by
:func:`~lidsplit.search.run_search`, the score passed as a :class:`~lidsplit.search.Result`'s ``acc``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lidsplit.common.batch import model_device, unpack_batch
from lidsplit.search.driver import run_search
from lidsplit.search.evaluator import Result
from lidsplit.search.strategies import Evolution, RandomSearch, Strategy
from lidsplit.supernet import Arch, SubSupernet, use_path
from lidsplit.train import evaluate_arch
from lidsplit.train.spos import LossFn, classification_loss

__all__ = ["BlackBoxResult", "ScoreFn", "classification_score", "evolutionary_search", "loss_score",
           "random_search"]

ScoreFn = Callable[[Arch], float]


def classification_score(model: nn.Module, loaders: Any, **kw: Any) -> ScoreFn:
    """score(arch) = accuracy of arch with the shared weights (BatchNorm recalibrated; see
    :func:`lidsplit.train.evaluate_arch`, whose keywords ``kw`` are passed on)."""
    return lambda arch: evaluate_arch(model, arch, loaders, **kw).accuracy


def loss_score(model: nn.Module, loader: Iterable, batches: int = 4, loss_fn: LossFn = classification_loss) -> ScoreFn:
    """score(arch) = minus the mean loss of arch over the first ``batches`` batches of ``loader``
    (eval mode, no BatchNorm recalibration: for BatchNorm-free models such as the transformer)."""
    device = model_device(model)

    def score(arch: Arch) -> float:
        was = model.training
        model.eval()
        total, n = 0.0, 0
        try:
            it = loader.iter_epoch(0) if hasattr(loader, "iter_epoch") else iter(loader)
            with torch.no_grad(), use_path(model, arch):
                for i, raw in enumerate(it):
                    if i >= batches:
                        break
                    x, y = unpack_batch(raw, device)
                    total += float(loss_fn(model(x), y))
                    n += 1
        finally:
            model.train(was)
        return -total / max(n, 1)

    return score


@dataclass
class BlackBoxResult:
    """The best architecture, its score, and every ``(arch, score)`` evaluated, in order."""

    arch: Arch
    score: float
    evaluated: list[tuple[Arch, float]] = field(default_factory=list)


def _run(strategy: Strategy, score: ScoreFn) -> BlackBoxResult:
    res = run_search(lambda arch: Result(float(score(arch))), strategy, progress=False)
    best = res.best
    if best is None:
        raise ValueError(f"{type(strategy).__name__}: evaluated no architecture")
    return BlackBoxResult(best.arch, best.acc, [(r.arch, r.acc) for r in res.records if not r.reused])


def random_search(score: ScoreFn, sub: SubSupernet, n: int, *, seed: int = 0) -> BlackBoxResult:
    """Evaluate up to ``n`` distinct uniformly drawn architectures of ``sub`` (:class:`RandomSearch`);
    the best one wins."""
    return _run(RandomSearch(sub, samples=n, seed=seed), score)


def evolutionary_search(score: ScoreFn, sub: SubSupernet, *, population: int = 50, generations: int = 20,
                        parents: int = 10, crossover: int = 20, mutation: int = 20, crossover_prob: float = 0.1,
                        mutation_prob: float = 0.1, seed: int = 0) -> BlackBoxResult:
    """NAS-LID's evolution inside ``sub`` (:class:`Evolution`): a random population, then ``generations``
    generations, each keeping the top ``parents``, adding ``crossover`` children (each edge from the second
    parent with probability ``crossover_prob``) and ``mutation`` children (each edge changed to another
    enabled op with probability ``mutation_prob``), filled with random architectures; candidates are
    deduplicated and never re-evaluated. ``parents + crossover + mutation`` must not exceed ``population``."""
    return _run(Evolution(sub, population=population, keep=parents, n_crossover=crossover, n_mutation=mutation,
                          crossover_prob=crossover_prob, mutation_prob=mutation_prob, generations=generations + 1,
                          seed=seed), score)
