"""Which edge to split next, and how separable an edge's ops are (NAS-LID eq. 7).

Edge selection. Given one op-similarity matrix per candidate edge, every candidate is partitioned
exactly (:func:`lidsplit.split.partition.partition`) into ``b`` groups and one edge is chosen by a rule:

- ``"max_intra"`` (NAS-LID paper, default for LID): the edge whose best partition has the highest
  intra-group similarity (partition score gamma, eq. 6 / Alg. 1 line 18).
- ``"min_cut"`` (GM-NAS, default for gradient matching): the lowest cut cost.
- ``"max_cut"`` (what the NAS-LID *code* does: the largest inter-group similarity).
- ``"random"``: uniformly among the candidates, from ``seed`` (int or ``numpy.random.Generator``).
- ``"ordered"``: the first candidate edge (lowest index); the zero-cost-proxy paper's fixed order is
  this rule applied to the edges in the order the caller lists them as candidates.

Scores are compared as *means per pair* by default (``score="mean"``: ``intra / #intra pairs``,
``cut / #cut pairs``): the raw sums grow with the number of ops, so they are comparable across edges
only when every edge has the same number of ops and the same ``b`` -- and then the mean ranks the edges
exactly as the raw sum does (NAS-LID on NAS-Bench-201: 5 ops everywhere). ``score="raw"`` compares the
sums as the papers write them. A partition with no intra pair (``b == n``) has a NaN mean intra; it
ranks last for ``max_intra`` (there is no within-group evidence to prefer it).

Ties (within ``atol + rtol * max|score|``) go to the lowest edge index. Candidates: the edges of the
mapping / sequence (``None`` entries of a sequence are skipped), restricted to ``candidates`` if given,
and only those with at least ``b`` ops (and at least 2), so a split is never empty; if no edge
qualifies, ValueError. ``"random"`` and ``"ordered"`` partition only the chosen edge.

Separability (NAS-LID eq. 7) -- read carefully. The paper prints

    D = sqrt( 1/(2n) * sum_{i != j} (s_ij - s_bar)^2 ),   s_bar = 1/(2n) * sum_{i != j} s_ij,

and says ``s_bar`` "is the average similarity of all pairs" with ``n = 5`` ops. For ``n = 5`` there are
exactly ``2n = 10`` unordered pairs, so eq. 7 is the (population) standard deviation of the similarities
over the unordered pairs ``i < j``; read literally with ordered pairs ``i != j`` (20 terms for n=5),
``s_bar`` would be twice the mean and ``D^2 = 2 (var + mean^2)``, a measure of magnitude that
contradicts the text ("the lower the separability score, the higher the inter-similarity"). We
implement:

- ``convention="pairs"`` (default): ``sqrt(mean_{i<j} (s_ij - mean_{i<j} s_ij)^2)``, the paper's meaning
  for any ``n`` (identical to eq. 7 over unordered pairs when ``n = 5``);
- ``convention="literal"``: eq. 7 as printed, double sum over ordered ``i != j`` with ``1/(2n)``
  (asymmetric matrices are rejected anyway, so ``s_ij = s_ji``).

The diagonal is ignored in both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from lidsplit.split.partition import (
    DEFAULT_ATOL,
    DEFAULT_MAX_PARTITIONS,
    DEFAULT_RTOL,
    Partition,
    partition,
    validate_similarity,
)

__all__ = ["EdgeChoice", "select_edge", "separability", "RULES"]

RULES = ("max_intra", "min_cut", "max_cut", "random", "ordered")
Rule = Literal["max_intra", "min_cut", "max_cut", "random", "ordered"]


@dataclass(frozen=True)
class EdgeChoice:
    """The chosen edge (its key in the input) and its partition. ``scores``: per partitioned candidate,
    the quantity the rule compared (intra for ``max_intra``, -inf where the mean is NaN; the cut for
    ``min_cut``/``max_cut``; per pair or raw as ``score`` says); ``partitions``: each candidate's best
    partition. Both ``None`` for ``random``/``ordered`` (only the chosen edge is partitioned).
    ``candidates``: the eligible edges, in index order."""

    edge: Any
    partition: Partition
    rule: str
    scores: dict[Any, float] | None
    partitions: dict[Any, Partition] | None
    candidates: tuple[Any, ...]


def _items(similarities: Mapping[Any, Any] | Sequence[Any]) -> list[tuple[Any, Any]]:
    if isinstance(similarities, Mapping):
        keys = list(similarities.keys())
        try:
            keys = sorted(keys)
        except TypeError:
            pass  # keys not orderable: insertion order is the index order
        return [(k, similarities[k]) for k in keys]
    if isinstance(similarities, (str, bytes)) or not isinstance(similarities, Sequence):
        raise TypeError("similarities: expected a mapping edge -> matrix or a sequence of matrices")
    return [(i, m) for i, m in enumerate(similarities) if m is not None]


def _score(p: Partition, rule: str, score: str) -> float:
    if rule == "max_intra":
        v = p.mean_intra if score == "mean" else p.intra
        return -math.inf if math.isnan(v) else v
    v = p.mean_cut if score == "mean" else p.cut
    return -v if rule == "min_cut" else v  # higher is better


def select_edge(
    similarities: Mapping[Any, Any] | Sequence[Any],
    b: int,
    rule: Rule = "max_intra",
    *,
    balanced: bool = True,
    score: Literal["mean", "raw"] = "mean",
    candidates: Sequence[Any] | None = None,
    seed: int | np.random.Generator | None = 0,
    ops: Mapping[Any, Sequence[Any]] | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    max_partitions: int = DEFAULT_MAX_PARTITIONS,
) -> EdgeChoice:
    """Choose the edge to split into ``b`` groups (module docstring). ``similarities``: mapping
    ``edge -> (n_e, n_e) matrix`` or a sequence indexed by edge (``None`` = not a candidate). ``ops``:
    optional ``edge -> op labels`` passed to :func:`partition` (groups then use those labels)."""
    if rule not in RULES:
        raise ValueError(f"rule: unknown {rule!r}; expected one of {RULES}")
    if score not in ("mean", "raw"):
        raise ValueError(f"score: expected 'mean' or 'raw', got {score!r}")
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 2:
        raise ValueError(f"b: a split needs a branching factor >= 2, got {b!r}")
    items = _items(similarities)
    if candidates is not None:
        allowed = set(candidates)
        unknown = allowed - {k for k, _ in items}
        if unknown:
            raise ValueError(f"candidates: edges {sorted(unknown, key=repr)} have no similarity matrix")
        items = [(k, m) for k, m in items if k in allowed]
    mats = {}
    for k, m in items:
        s = validate_similarity(m, name=f"similarities[{k!r}]")
        if s.shape[0] >= max(b, 2):
            mats[k] = s
    eligible = [k for k, _ in items if k in mats]
    if not eligible:
        sizes = {k: np.shape(m)[0] for k, m in items}
        raise ValueError(f"select_edge: no candidate edge has >= {b} ops to split into {b} groups (ops per edge: {sizes})")

    def part(k: Any) -> Partition:
        return partition(
            mats[k], b, balanced=balanced, ops=None if ops is None else ops[k], rtol=rtol, atol=atol,
            max_partitions=max_partitions,
        )

    if rule in ("random", "ordered"):
        if rule == "ordered":
            k = eligible[0]
        else:
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            k = eligible[int(rng.integers(len(eligible)))]
        return EdgeChoice(k, part(k), rule, None, None, tuple(eligible))

    parts = {k: part(k) for k in eligible}
    scores = {k: _score(p, rule, score) for k, p in parts.items()}
    finite = [v for v in scores.values() if math.isfinite(v)]
    best = max(scores.values())
    tol = atol + rtol * (max(abs(v) for v in finite) if finite else 0.0)
    chosen = next(k for k in eligible if scores[k] >= best - tol)
    shown = {k: (-v if rule == "min_cut" else v) for k, v in scores.items()}  # report the cut itself
    return EdgeChoice(chosen, parts[chosen], rule, shown, parts, tuple(eligible))


def separability(similarity: Any, *, convention: Literal["pairs", "literal"] = "pairs") -> float:
    """NAS-LID separability score D of one edge's similarity matrix (eq. 7; see the module docstring
    for the two conventions). 0 for fewer than 2 ops."""
    s = validate_similarity(similarity)
    n = s.shape[0]
    if n < 2:
        return 0.0
    if convention == "pairs":
        v = s[np.triu_indices(n, 1)]
        return float(np.sqrt(np.mean((v - v.mean()) ** 2)))
    if convention == "literal":
        off = s[~np.eye(n, dtype=bool)]
        s_bar = off.sum() / (2 * n)
        return float(np.sqrt(np.sum((off - s_bar) ** 2) / (2 * n)))
    raise ValueError(f"convention: expected 'pairs' or 'literal', got {convention!r}")
