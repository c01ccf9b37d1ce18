"""Baselines without a measurement: few-shot NAS's exhaustive split and a seeded random similarity."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch import nn

from lidsplit.common.seeds import derive_seed
from lidsplit.split.criteria.base import Criterion, EdgeScore, ScoringSet
from lidsplit.split.criteria.registry import register_criterion

__all__ = ["ExhaustiveCriterion", "RandomCriterion"]


def _edge_score(crit: Criterion, scoring: ScoringSet, edge: int | str,
                similarity: Callable[[int, int], np.ndarray]) -> EdgeScore:
    """The EdgeScore of ``edge`` with ``similarity(e, n)``, an ``(n, n)`` matrix for edge index ``e``
    with ``n`` enabled ops (no batch measured)."""
    sub = scoring.sub
    e = sub.space.edge_index(edge)
    ops = sub.enabled(e)
    return EdgeScore(crit.name, e, sub.space.edges[e].label, ops, tuple(sub.space.edges[e].ops[i] for i in ops),
                     similarity(e, len(ops)), batches=0)


@register_criterion("exhaustive", aliases=("few_shot", "fewshot"))
class ExhaustiveCriterion(Criterion):
    """Few-shot NAS: no measurement (a zero similarity matrix); the split run splits the chosen edge into
    one group per op whatever the branching factor. Edge chosen in order (``rule="ordered"``: the first
    candidate) by default (a split run's ``rule="random"``: a seeded random edge)."""

    name = "exhaustive"
    rule = "ordered"
    balanced = True
    exhaustive = True
    needs_model = False
    default_batches = 1

    def score_edge(self, model: nn.Module | None, scoring: ScoringSet, edge: int | str) -> EdgeScore:
        return _edge_score(self, scoring, edge, lambda e, n: np.zeros((n, n)))


@register_criterion("random")
class RandomCriterion(Criterion):
    """A seeded random similarity: ``U[0, 1)`` off-diagonal entries from a generator seeded by the
    ScoringSet's seed and the edge, so a partition is random but reproducible. Edges chosen at random."""

    name = "random"
    rule = "random"
    balanced = True
    needs_model = False
    default_batches = 1

    def score_edge(self, model: nn.Module | None, scoring: ScoringSet, edge: int | str) -> EdgeScore:
        def similarity(e: int, n: int) -> np.ndarray:
            rng = np.random.default_rng(derive_seed("lidsplit.split.random_criterion", scoring.seed, e))
            a = np.triu(rng.random((n, n)), 1)
            s = a + a.T
            np.fill_diagonal(s, 1.0)
            return s

        return _edge_score(self, scoring, edge, similarity)
