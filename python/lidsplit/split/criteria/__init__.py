"""Split criteria: for one edge of one sub-supernet, an ``n x n`` similarity matrix of its ``n`` one-op
sub-supernets (plus what was measured, for reports).

One module per family, each registering its names (:mod:`~lidsplit.split.criteria.registry`):

- :mod:`~lidsplit.split.criteria.base`: :class:`Criterion`, :class:`ScoringSet`, :class:`EdgeScore`,
  :func:`characterisation_mode`; the design notes (common random numbers, uninformative batches, model
  state, the ``others`` modes);
- :mod:`~lidsplit.split.criteria.lid`: ``lid`` (NAS-LID), :func:`lid_profiles`, :func:`lid_similarity`;
- :mod:`~lidsplit.split.criteria.gm`: ``gm`` (GM-NAS, gradient matching);
- :mod:`~lidsplit.split.criteria.proxy`: the zero-cost proxies (``gradnorm``, ``snip``, ``grasp``,
  ``synflow``, ``jacob_cov``, ``ntk``, ``linear_regions``, ``fisher``);
- :mod:`~lidsplit.split.criteria.baselines`: ``exhaustive`` (few-shot NAS) and ``random``.

Build one by name with :func:`make_criterion`; :func:`criterion_names` lists the registered names.
A new criterion is one module with a :class:`Criterion` subclass decorated by :func:`register_criterion`.
"""

from typing import Any

from lidsplit.split.criteria.base import (
    OTHERS,
    Criterion,
    EdgeScore,
    Measurement,
    ScoringSet,
    characterisation_mode,
    scoring_set,
)
from lidsplit.split.criteria.lid import SIMILARITIES, LIDCriterion, feature_outputs, lid_profiles, lid_similarity
from lidsplit.split.criteria.gm import GMCriterion
from lidsplit.split.criteria.proxy import ProxyCriterion
from lidsplit.split.criteria.baselines import ExhaustiveCriterion, RandomCriterion
from lidsplit.split.criteria.registry import criterion_names, make_criterion, register_criterion

__all__ = [
    "ScoringSet",
    "scoring_set",
    "EdgeScore",
    "Criterion",
    "Measurement",
    "LIDCriterion",
    "GMCriterion",
    "ProxyCriterion",
    "ExhaustiveCriterion",
    "RandomCriterion",
    "CRITERIA",
    "SIMILARITIES",
    "OTHERS",
    "criterion_names",
    "register_criterion",
    "make_criterion",
    "characterisation_mode",
    "lid_similarity",
    "lid_profiles",
    "feature_outputs",
]


def __getattr__(name: str) -> Any:
    # CRITERIA (kept for one release; use criterion_names()): read live from the registry
    if name == "CRITERIA":
        return criterion_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
