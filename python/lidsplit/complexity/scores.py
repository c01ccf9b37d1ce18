"""All four scores of a space, a sub-supernet, or every leaf of a split tree.

``complexity_scores(model_or_space, sub=None, ...)`` returns a :class:`ComplexityScores`:

* ``size``: exact number of architectures (``lidsplit.complexity.size``);
* ``performance``: jacob_cov spread and PDS (``lidsplit.complexity.performance``), None when no supernet
  module is given (a bare ``SearchSpace`` has no network to score) or with ``proxy=False``;
* ``architecture``: architecture diversity (``lidsplit.complexity.architecture``);
* ``tasks`` / ``multi_task``: the tasks the space's architectures are declared for (the supernet's
  ``tasks`` attribute; the built-in spaces declare ``("classification",)``) and their number. Without a
  declaration the space counts as single-task (``tasks_declared`` False).

``tree_complexity(tree, model)`` scores each leaf of a :class:`~lidsplit.split.SplitTree` (sampling
inside the leaf, exact size and diversity of the leaf). ``report_json(scores, settings)`` is the JSON
document the CLI writes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lidsplit.common.seeds import derive_seed
from lidsplit.data import DataSplits
from lidsplit.complexity.architecture import ArchitectureDiversity, architecture_diversity
from lidsplit.complexity.performance import (
    DEGENERATE,
    PerformanceDiversity,
    _check_scale,
    evaluation_batch,
    model_input_channels,
    jacob_cov_scores,
    summarise,
)
from lidsplit.complexity.sampling import Population
from lidsplit.complexity.size import log10_size
from lidsplit.complexity.table import AccuracyTable
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import SearchSpace, SubSupernet, search_space

__all__ = [
    "ComplexityScores",
    "complexity_scores",
    "performance_diversity",
    "tree_complexity",
    "multi_task",
    "report_json",
    "DEFAULT_TASKS",
    "REPORT_FORMAT",
]

DEFAULT_TASKS: tuple[str, ...] = ("classification",)
REPORT_FORMAT = "lidsplit.complexity"


def multi_task(obj: Any = None, tasks: Sequence[str] | None = None) -> tuple[tuple[str, ...], bool]:
    """``(distinct tasks in declaration order, declared?)`` from ``tasks`` or ``obj.tasks``."""
    if tasks is None:
        tasks = getattr(obj, "tasks", None)
    declared = tasks is not None
    if tasks is None:
        tasks = DEFAULT_TASKS
    if isinstance(tasks, str):
        tasks = (tasks,)
    out: list[str] = []
    for t in tasks:
        if not isinstance(t, str) or not t:
            raise ValueError(f"complexity: a task is a non-empty string, got {t!r}")
        if t not in out:
            out.append(t)
    if not out:
        raise ValueError("complexity: a space declares at least one task")
    return tuple(out), declared


@dataclass
class ComplexityScores:
    name: str
    size: int
    performance: PerformanceDiversity | None
    architecture: ArchitectureDiversity
    tasks: tuple[str, ...]
    tasks_declared: bool = True
    sub: SubSupernet | None = None
    note: str | None = None

    @property
    def log10_size(self) -> float:
        return log10_size(self.size)

    @property
    def multi_task(self) -> int:
        return len(self.tasks)

    @property
    def pds(self) -> float | None:
        return None if self.performance is None else self.performance.pds

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "size": int(self.size),
            "log10_size": self.log10_size,
            "performance_diversity": None if self.performance is None else self.performance.to_json(),
            "architecture_diversity": self.architecture.to_json(),
            "multi_task": {"value": self.multi_task, "tasks": list(self.tasks), "declared": self.tasks_declared},
            "note": self.note,
        }
        if self.sub is not None and not self.sub.is_full():
            d["masks"] = [sorted(m) for m in self.sub.masks]
        return d

    def summary(self) -> str:
        """One line for humans."""
        p = self.performance
        if p is None:
            perf = "perf: n/a"
        else:
            sd = "n/a" if p.sd_jacob_cov is None else f"{p.sd_jacob_cov:.4f}"
            pds = "n/a" if p.pds is None else f"{p.pds:.4f}"
            perf = f"SD(jacob_cov)={sd} PDS={pds} [{p.population}, {p.repeats}x{p.n_archs}]"
        return (f"{self.name}: size={self.size} (10^{self.log10_size:.2f}), {perf}, "
                f"arch-div={self.architecture.value:.4g} ({self.architecture.scalar}), "
                f"tasks={self.multi_task} {list(self.tasks)}")


def _resolve(obj: Any, sub: SubSupernet | None) -> tuple[nn.Module | None, SearchSpace, SubSupernet]:
    if isinstance(obj, nn.Module):
        model, space = obj, search_space(obj)
    elif isinstance(obj, SubSupernet):
        model, space = None, obj.space
        sub = obj if sub is None else sub
    elif isinstance(obj, SearchSpace):
        model, space = None, obj
    else:
        raise TypeError(f"complexity: expected a supernet module, SearchSpace or SubSupernet, got {type(obj).__name__}")
    if sub is None:
        sub = SubSupernet.full(space)
    if not isinstance(sub, SubSupernet):
        raise TypeError(f"complexity: sub must be a SubSupernet, got {type(sub).__name__}")
    if sub.space != space:
        raise ValueError("complexity: the sub-supernet belongs to a different search space than the model")
    return model, space, sub


def performance_diversity(
    model: nn.Module,
    sub: SubSupernet | None = None,
    *,
    table: AccuracyTable | Mapping | None = None,
    samples: int = 50,
    repeats: int = 1,
    seed: int = 0,
    scale: str = "minmax",
    degenerate: str = "worst",
    inputs: Tensor | None = None,
    data: str | DataSplits = "digits",
    batch_size: int = 32,
    device: str | torch.device | None = None,
    cache: dict | None = None,
    sample_seed: int | None = None,
) -> PerformanceDiversity:
    """jacob_cov spread and PDS of ``model``'s space (or ``sub``) over ``repeats`` samples of ``samples``
    architectures (every architecture if the (sub-)space, or the table inside it, holds at most
    ``samples``). ``inputs``: the batch (default: ``batch_size`` images of ``data`` chosen by ``seed``,
    with as many channels as the model takes, :func:`model_input_channels`; ``data`` may be the run's
    ``DataSplits``).
    ``seed`` also seeds jacob_cov; ``sample_seed`` (default ``seed``) the choice of architectures.
    ``cache`` (arch -> jacob_cov) is reused across calls: only share it between calls with the same
    model, batch and seed."""
    _check_scale(scale)
    if degenerate not in DEGENERATE:
        raise ValueError(f"complexity: unknown degenerate policy {degenerate!r}; choose from {list(DEGENERATE)}")
    if samples < 2:
        raise ValueError(f"complexity: samples must be >= 2 (a standard deviation needs 2 values), got {samples}")
    model, space, sub = _resolve(model, sub)
    if model is None:
        raise TypeError("complexity: performance diversity needs a supernet module (jacob_cov runs the network)")
    note = None
    candidates = None
    if table is not None:
        if not isinstance(table, AccuracyTable):
            table = AccuracyTable(space, table)
        if table.space != space:
            raise ValueError("complexity: the accuracy table was made for a different search space")
        candidates = [a for a in table.archs() if sub.contains(a)]
        if not candidates:
            note = "the accuracy table has no architecture of this (sub-)space: pds=None"
            candidates, table = None, None
    pop = Population(sub, samples, repeats, seed if sample_seed is None else sample_seed, candidates)
    x = evaluation_batch(inputs if inputs is not None else data, batch_size, seed,
                         in_channels=model_input_channels(model) or 1)
    if device is not None:
        x = x.to(device)
    else:
        try:
            x = x.to(next(model.parameters()).device)
        except StopIteration:
            pass
    cache = {} if cache is None else cache
    archs = pop.distinct()
    values = jacob_cov_scores(model, archs, x, seed=seed, cache=cache)
    scores = dict(zip(archs, values.tolist()))
    settings = {
        "samples": int(samples), "repeats_requested": int(repeats), "seed": int(seed),
        "sample_seed": int(seed if sample_seed is None else sample_seed),
        "batch": list(x.shape),
        "data": "tensor" if inputs is not None else data.name or "DataSplits" if isinstance(data, DataSplits) else data,
    }
    return summarise(pop.samples, scores, table, scale=scale, degenerate=degenerate, population=pop.kind,
                     note=note, settings=settings)


def complexity_scores(
    obj: nn.Module | SearchSpace | SubSupernet,
    sub: SubSupernet | None = None,
    *,
    name: str | None = None,
    proxy: bool = True,
    seed: int = 0,
    sample_seed: int | None = None,
    arch_method: str = "exact",
    arch_scalar: str = "trace",
    arch_samples: int = 1000,
    block_counts: Mapping[str, Mapping[str, float]] | None = None,
    tasks: Sequence[str] | None = None,
    **pds: Any,
) -> ComplexityScores:
    """Every score of a supernet (or a bare space / sub-supernet: no performance diversity).

    ``**pds``: :func:`performance_diversity`'s keywords (``table``, ``samples``, ``repeats``, ``scale``,
    ``degenerate``, ``inputs``, ``data``, ``batch_size``, ``device``, ``cache``); ``seed`` /
    ``sample_seed`` serve both it and :func:`~lidsplit.complexity.architecture.architecture_diversity`
    (``arch_*``, ``block_counts``); ``proxy=False`` skips jacob_cov (size, architecture diversity and tasks
    only).
    """
    unknown = sorted(set(pds) - _PDS_KEYWORDS)
    if unknown:
        raise TypeError(f"complexity_scores: unknown keyword(s) {unknown}; performance diversity takes "
                        f"{sorted(_PDS_KEYWORDS)}")
    model, space, sub = _resolve(obj, sub)
    note = None
    perf = None
    if model is not None and proxy:
        perf = performance_diversity(model, sub, seed=seed, sample_seed=sample_seed, **pds)
    elif model is None and proxy:
        note = "no supernet module given: performance diversity not computed"
    arch = architecture_diversity(model if model is not None else space, sub, method=arch_method,
                                  scalar=arch_scalar, samples=arch_samples,
                                  seed=seed if sample_seed is None else sample_seed,
                                  block_counts=block_counts)
    t, declared = multi_task(model, tasks)
    if name is None:
        name = type(model).__name__ if model is not None else "space"
    return ComplexityScores(name=name, size=int(sub.size), performance=perf, architecture=arch, tasks=t,
                            tasks_declared=declared, sub=sub, note=note)


#: the keywords that complexity_scores passes on to performance_diversity
_PDS_KEYWORDS = frozenset(inspect.signature(performance_diversity).parameters) - {"model", "sub", "seed", "sample_seed"}


def tree_complexity(tree: Any, model: nn.Module | None = None, *, leaves: Sequence[int] | None = None,
                    **kw: Any) -> list[ComplexityScores]:
    """Scores of each leaf (or of the nodes ``leaves``) of a ``SplitTree``, named ``"leaf <id>"``.

    ``model`` (the supernet) is needed for performance diversity; its space must be the tree's. Each leaf
    samples with its own seed derived from ``seed`` and the node id; jacob_cov values are shared between
    leaves through one cache (same model, batch and jacob_cov seed for every leaf)."""
    if not isinstance(tree, SplitTree):
        raise TypeError(f"complexity: expected a SplitTree, got {type(tree).__name__}")
    if model is not None and search_space(model) != tree.space:
        raise ValueError("complexity: the supernet's search space is not the split tree's")
    seed = int(kw.pop("seed", 0))
    cache = kw.pop("cache", None)
    cache = {} if cache is None else cache
    nodes = tree.leaves() if leaves is None else [tree.node(i) for i in leaves]
    out = []
    for n in nodes:
        leaf_seed = derive_seed("lidsplit.complexity", "leaf", seed, n.id) % (1 << 31)
        out.append(complexity_scores(model if model is not None else tree.space, n.sub, name=f"leaf {n.id}",
                                     seed=seed, sample_seed=leaf_seed, cache=cache, **kw))
    return out


def report_json(scores: Sequence[ComplexityScores], settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``{"format": "lidsplit.complexity", "version": 1, "settings": ..., "spaces": [...]}``."""
    return {
        "format": REPORT_FORMAT,
        "version": 1,
        "settings": dict(settings or {}),
        "spaces": [s.to_json() for s in scores],
    }

