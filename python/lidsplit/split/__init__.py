"""Splitting supernets into sub-supernets: the split tree, criteria, exact partitions, edge selection,
policies, split distances, zero-cost proxies, and the split run.

The whole run is one call: ``lidsplit.split(model, data, criterion="lid", policy=2, ...)`` returns a
:class:`SplitTree` (see :mod:`lidsplit.split.run`). ``lidsplit.split`` is this package *and* callable:
the package module's class is set to a ``types.ModuleType`` subclass with ``__call__`` (assigning a
module's ``__class__`` is supported by Python since 3.5, see the data model's "Customizing module
attribute access"), so ``lidsplit.split(...)``, ``lidsplit.split.split(...)`` and
``lidsplit.run_split(...)`` are the same function, and ``lidsplit.split.SplitTree`` etc. still work.

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
from lidsplit.split.run import SplitEvent, SplitRunError, candidate_edges, load_leaf, split
from lidsplit.split.selection import RULES, EdgeChoice, select_edge, separability
from lidsplit.split.tree import SplitNode, SplitTree

run_split = split

__all__ = [
    # tree
    "SplitNode",
    "SplitTree",
    # the run
    "split",
    "run_split",
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
    """``lidsplit.split`` is callable: ``lidsplit.split(...)`` is :func:`lidsplit.split.run.split`."""

    def __call__(self, *args, **kwargs):
        return split(*args, **kwargs)


_CallableModule.__call__.__doc__ = split.__doc__
_sys.modules[__name__].__class__ = _CallableModule
