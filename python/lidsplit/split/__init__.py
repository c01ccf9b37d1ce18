"""Splitting supernets into sub-supernets: the split tree, criteria, exact partitions, edge selection,
policies, split distances, zero-cost proxies, and the split run.

The whole run is one call: ``lidsplit.run_split(model, data, criterion="lid", policy=2, ...)`` returns a
:class:`SplitResult` (the :class:`SplitTree` with its leaves' weights; see :mod:`lidsplit.split.run`, whose
:class:`SplitRun` holds the steps). ``lidsplit.split.split`` is the same function (its old name). Calling
the package itself, ``lidsplit.split(...)``, still works for one release but warns (DeprecationWarning):
the package module's class is a ``types.ModuleType`` subclass with ``__call__``.

Note: the name ``partition`` here is the function (:func:`lidsplit.split.partition.partition`); its
module stays importable as ``from lidsplit.split.partition import ...``.
"""

import sys as _sys
import types as _types
from typing import Any as _Any

from lidsplit.split.criteria import (
    Criterion,
    EdgeScore,
    ExhaustiveCriterion,
    GMCriterion,
    LIDCriterion,
    ProxyCriterion,
    RandomCriterion,
    ScoringSet,
    characterisation_mode,
    criterion_names,
    lid_profiles,
    lid_similarity,
    make_criterion,
    register_criterion,
    scoring_set,
)
from lidsplit.split.distance import (
    DistanceSummary,
    SplitRecord,
    cross_split_distance,
    external_split_distance,
    internal_split_distance,
    label_distance,
    split_distance,
)
from lidsplit.split.partition import (
    CutStats,
    Partition,
    count_partitions,
    cut_stats,
    enumerate_partitions,
    partition,
)
from lidsplit.split.policy import SplitPolicy, budget, constant, levels, rounds
from lidsplit.split.proxies import PROXIES, DegenerateProxyError, compute_proxy, proxy_similarity
from lidsplit.split.run import (
    SplitConfig,
    SplitEvent,
    SplitResult,
    SplitRun,
    SplitRunError,
    _deprecated_call,
    candidate_edges,
    load_leaf,
    run_split,
    split,
)
from lidsplit.split.selection import RULES, EdgeChoice, select_edge, separability
from lidsplit.split.tree import SplitNode, SplitTree

__all__ = [
    # tree
    "SplitNode",
    "SplitTree",
    # the run
    "run_split",
    "split",
    "SplitConfig",
    "SplitRun",
    "SplitResult",
    "SplitEvent",
    "SplitRunError",
    "load_leaf",
    "candidate_edges",
    # criteria
    "CRITERIA",
    "Criterion",
    "EdgeScore",
    "ExhaustiveCriterion",
    "GMCriterion",
    "LIDCriterion",
    "ProxyCriterion",
    "RandomCriterion",
    "ScoringSet",
    "characterisation_mode",
    "criterion_names",
    "register_criterion",
    "lid_profiles",
    "lid_similarity",
    "make_criterion",
    "scoring_set",
    # partition / selection
    "CutStats",
    "Partition",
    "count_partitions",
    "cut_stats",
    "enumerate_partitions",
    "partition",
    "RULES",
    "EdgeChoice",
    "select_edge",
    "separability",
    # policies
    "SplitPolicy",
    "budget",
    "constant",
    "levels",
    "rounds",
    # distances
    "DistanceSummary",
    "SplitRecord",
    "cross_split_distance",
    "external_split_distance",
    "internal_split_distance",
    "label_distance",
    "split_distance",
    # proxies
    "PROXIES",
    "DegenerateProxyError",
    "compute_proxy",
    "proxy_similarity",
]


def __getattr__(name: str) -> _Any:
    if name == "CRITERIA":  # the old constant, for one release: criterion_names() read when asked
        return criterion_names()
    raise AttributeError(name)


class _CallableModule(_types.ModuleType):
    """``lidsplit.split(...)`` (deprecated): :func:`lidsplit.run_split` with a DeprecationWarning."""

    def __call__(self, *args: _Any, **kwargs: _Any) -> SplitResult:
        return _deprecated_call(*args, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
