"""Outside optimisers on lidsplit's leaves: Optuna objectives and Syne Tune-style config spaces.

Both speak label-keyed architectures (``{"normal/2<-0": "sep_conv_3x3", ...}``), which every lidsplit
entry point accepts in place of an op-index tuple (``SearchSpace.validate_arch`` / ``from_dict``).

* ``optuna_objective(evaluator)``: ``objective(trial) -> accuracy`` for ``study.optimize`` or ask/tell;
  one ``trial.suggest_categorical(label, op names)`` per edge (the ops enabled in the tree's root).
  ``optuna_distributions(...)`` gives the same as Optuna distributions (``study.ask(fixed_distributions)``,
  ``add_trial``); only that function imports optuna.
* ``config_space(...)``: ``{label: Categorical(op names)}``, the plain-dict form of Syne Tune's
  ``{"x": choice([...])}`` (no Syne Tune dependency); ``Categorical.sample`` draws a config.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lidsplit.search.driver import AskTell
from lidsplit.search.evaluator import Result
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import SearchSpace, SubSupernet

__all__ = ["Categorical", "config_space", "optuna_distributions", "optuna_objective"]

#: What the helpers read the edges and their enabled ops from.
Domain = SearchSpace | SubSupernet | SplitTree | Any  # Any: an object with a ``tree`` (a LeafEvaluator)


def _region(domain: Domain) -> SubSupernet:
    tree = getattr(domain, "tree", None)
    if isinstance(tree, SplitTree):
        domain = tree
    if isinstance(domain, SplitTree):
        return domain.root.sub
    if isinstance(domain, SubSupernet):
        return domain
    if isinstance(domain, SearchSpace):
        return SubSupernet.full(domain)
    raise TypeError(
        f"lidsplit: expected a SearchSpace, SubSupernet, SplitTree or LeafEvaluator, got {type(domain).__name__}"
    )


@dataclass(frozen=True)
class Categorical:
    """One edge's domain: its enabled op names (Syne Tune's ``choice([...])``)."""

    categories: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.categories)

    def sample(self, random_state: random.Random | None = None) -> str:
        return (random_state or random).choice(self.categories)


def config_space(domain: Domain) -> dict[str, Categorical]:
    """``{edge label: Categorical(enabled op names)}`` in edge order; a config drawn from it (or any dict
    label -> op name) is an architecture every lidsplit function accepts."""
    sub = _region(domain)
    return {e.label: Categorical(sub.enabled_names(i)) for i, e in enumerate(sub.space.edges)}


def optuna_distributions(domain: Domain) -> dict[str, Any]:
    """``{edge label: optuna.distributions.CategoricalDistribution(enabled op names)}`` (imports optuna)."""
    try:
        from optuna.distributions import CategoricalDistribution
    except ImportError:
        raise ImportError("lidsplit: optuna_distributions needs optuna (pip install optuna)") from None
    return {lb: CategoricalDistribution(list(c.categories)) for lb, c in config_space(domain).items()}


def optuna_objective(
    evaluator: Callable[[Any], Result] | Any,
    *,
    domain: Domain | None = None,
    record: AskTell | None = None,
) -> Callable[[Any], float]:
    """An Optuna objective ``objective(trial) -> validation accuracy`` (maximise it).

    evaluator: a :class:`LeafEvaluator` (or any callable ``arch -> Result``; then pass ``domain``).
    domain: where the edges and their ops come from (default the evaluator's tree).
    record: an :class:`AskTell` to tell every result into (a lidsplit history of the Optuna run; records
        are marked ``asked=False``).

    Each trial suggests one op name per edge (``trial.suggest_categorical(label, names)``; ``study.best_params``
    is then a label-keyed architecture), the evaluator gets the op-index tuple; the leaf, loss and sample count
    are stored as the trial's user attributes. Needs no import of optuna itself.
    """
    evaluate = getattr(evaluator, "evaluate", evaluator)
    if not callable(evaluate):
        raise TypeError(f"optuna_objective: evaluator must be a LeafEvaluator or a callable arch -> Result, got "
                        f"{type(evaluator).__name__}")
    region = _region(evaluator if domain is None else domain)
    space = config_space(region)
    if record is not None and not isinstance(record, AskTell):
        raise TypeError(f"optuna_objective: record must be an AskTell, got {type(record).__name__}")

    def objective(trial: Any) -> float:
        # the evaluator gets the index tuple, as run_search gives it
        arch = region.space.from_dict({lb: trial.suggest_categorical(lb, list(c.categories))
                                       for lb, c in space.items()})
        r = evaluate(arch)
        if not isinstance(r, Result):
            raise TypeError(f"optuna_objective: the evaluator returned a {type(r).__name__}, expected a search Result")
        trial.set_user_attr("leaf", r.leaf)
        trial.set_user_attr("loss", None if math.isnan(r.loss) else r.loss)
        trial.set_user_attr("n", r.n)
        if record is not None:
            record.tell(arch, r)
        return r.acc

    return objective
