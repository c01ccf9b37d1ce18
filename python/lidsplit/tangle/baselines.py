"""Two-stage baselines (TangleNAS's SPOS+RS and SPOS+ES): train the supernet by uniform single-path
sampling, then search architectures with the trained weights as a proxy.

- :func:`spos_train`: SPOS training with any loss (classification supernets can equally use
  :func:`lidsplit.train.train_subsupernet`, which adds checkpoints and resume).
- :func:`random_search` / :func:`evolutionary_search`: black-box search over the architectures of a
  sub-supernet with a score function ``score(arch) -> float`` (higher is better), e.g.
  :func:`classification_score` (accuracy with BatchNorm recalibrated, :func:`lidsplit.train.evaluate_arch`)
  or :func:`loss_score` (minus the mean loss on a few batches, for the language model).
  The evolution follows NAS-LID's settings scaled by arguments: keep the top ``parents``, add
  ``crossover`` children (each edge from the second parent with probability ``crossover_prob``) and
  ``mutation`` children (each edge changed to another enabled op with probability ``mutation_prob``),
  fill with random architectures; candidates are deduplicated and never re-evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lidsplit.supernet import SubSupernet, search_space, use_path
from lidsplit.tangle.search import LossFn, _cycle, classification_loss
from lidsplit.train._util import model_device, unpack_batch

Arch = tuple[int, ...]
ScoreFn = Callable[[Arch], float]


def spos_train(
    model: nn.Module,
    loader: Iterable,
    steps: int,
    *,
    sub: SubSupernet | None = None,
    loss_fn: LossFn = classification_loss,
    optimizer: str = "sgd",
    lr: float = 0.025,
    lr_min: float = 0.001,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    grad_clip: float | None = 5.0,
    seed: int = 0,
) -> list[float]:
    """Uniform single-path training (one architecture drawn per step inside ``sub``); returns the
    per-step losses."""
    space = search_space(model)
    sub = SubSupernet.full(space) if sub is None else sub
    params = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    device = model_device(model)
    it = _cycle(loader)
    losses = []
    model.train()
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_min + (lr - lr_min) * 0.5 * (1 + math.cos(math.pi * step / max(steps, 1)))
        x, y = unpack_batch(next(it), device)
        arch = sub.sample(gen)
        with use_path(model, arch):
            loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def classification_score(model: nn.Module, loaders: Any, **kw: Any) -> ScoreFn:
    """score(arch) = accuracy of arch with the shared weights (BatchNorm recalibrated; see
    :func:`lidsplit.train.evaluate_arch`, whose keywords ``kw`` are passed on)."""
    from lidsplit.train import evaluate_arch

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
    arch: Arch
    score: float
    evaluated: list[tuple[Arch, float]] = field(default_factory=list)


def random_search(score: ScoreFn, sub: SubSupernet, n: int, *, seed: int = 0) -> BlackBoxResult:
    """Evaluate up to ``n`` distinct uniformly drawn architectures of ``sub``; the best one wins."""
    gen = torch.Generator().manual_seed(seed)
    seen: dict[Arch, float] = {}
    tries = 0
    while len(seen) < min(n, sub.size) and tries < 100 * n:
        a = sub.sample(gen)
        tries += 1
        if a not in seen:
            seen[a] = float(score(a))
    best = max(seen.items(), key=lambda kv: kv[1])
    return BlackBoxResult(best[0], best[1], list(seen.items()))


def evolutionary_search(
    score: ScoreFn,
    sub: SubSupernet,
    *,
    population: int = 50,
    generations: int = 20,
    parents: int = 10,
    crossover: int = 20,
    mutation: int = 20,
    crossover_prob: float = 0.1,
    mutation_prob: float = 0.1,
    seed: int = 0,
) -> BlackBoxResult:
    """Evolution inside ``sub`` (NAS-LID / SPOS style; see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    enabled = [sorted(m) for m in sub.masks]
    seen: dict[Arch, float] = {}

    def rand() -> float:
        return float(torch.rand((), generator=gen))

    def pick(seq: Sequence[Any]) -> Any:
        return seq[int(torch.randint(len(seq), (), generator=gen))]

    def evaluate(pop: list[Arch]) -> None:
        for a in pop:
            if a not in seen:
                seen[a] = float(score(a))

    def fill(pop: list[Arch], target: int) -> list[Arch]:
        tries = 0
        while len(pop) < min(target, sub.size) and tries < 100 * target:
            a = sub.sample(gen)
            tries += 1
            if a not in pop:
                pop.append(a)
        return pop

    pop = fill([], population)
    evaluate(pop)
    for _ in range(generations):
        top = sorted(pop, key=lambda a: -seen[a])[:parents]
        new: list[Arch] = list(top)
        for _ in range(crossover * 10):
            if len(new) >= len(top) + crossover:
                break
            p1, p2 = pick(top), pick(top)
            child = tuple(b if rand() < crossover_prob else a for a, b in zip(p1, p2))
            if child not in new:
                new.append(child)
        target = len(new) + mutation
        for _ in range(mutation * 10):
            if len(new) >= target:
                break
            p = pick(top)
            child = tuple(
                pick([o for o in enabled[e] if o != j]) if len(enabled[e]) > 1 and rand() < mutation_prob else j
                for e, j in enumerate(p)
            )
            if child not in new:
                new.append(child)
        pop = fill(new, population)
        evaluate(pop)
    best = max(seen.items(), key=lambda kv: kv[1])
    return BlackBoxResult(best[0], best[1], list(seen.items()))
