"""Architecture search over the leaves of a split tree, and the choice of the final architecture.

- ``LeafEvaluator(tree, models, loaders)``: scores an architecture with the weights of the one leaf that
  contains it (``tree.route``), BatchNorm recalibrated; leaf models loaded once (LRU cache).
- Strategies (ask/tell): ``Evolution`` (NAS-LID), ``RegularizedEvolution`` (Real et al.), ``RandomSearch``,
  and ``PerLeaf`` (one strategy per leaf).
- ``AskTell`` / ``run_search``: the one driver loop, with a progressive JSON history, resume, an optional
  reporting-only oracle and tqdm progress. Outside optimisers use ``AskTell`` or ``LeafEvaluator.evaluate``.
- ``select_final``: the final architecture among the leaves' picks (validation accuracy, leaf validation
  loss, or GM-NAS successive halving); ``train_from_scratch``: train it and report its test accuracy.
- Gradient-based single-stage search (DARTS / GDAS / DrNAS): ``gradient_search``,
  ``GradientSearchConfig``, ``arch_parameters``, ``derive_arch``.
- Black-box search with a score function (TangleNAS's two-stage baselines): ``random_search``,
  ``evolutionary_search`` (the strategies above, driven by ``run_search``), ``classification_score``,
  ``loss_score``.
- ``rank_correlations``: Kendall tau-b / Spearman rho of predicted against true scores, over all
  architectures and over the top-k (NAS-LID's ranking measure); ``kendall_tau``, ``spearman_rho``.

Nothing here reads a benchmark's true accuracy to steer or stop a search.

An outside optimiser (Optuna, Syne Tune, ...) drives the leaves as its objective. Architectures may be
label-keyed dicts (``{"normal/2<-0": "sep_conv_3x3", ...}``) wherever an op-index tuple is accepted
(``space.to_dict`` / ``space.from_dict`` convert). With Optuna (``optuna_objective``; ``record=AskTell(...)``
also keeps a lidsplit history)::

    ev = LeafEvaluator(tree, models, loaders)
    study = optuna.create_study(direction="maximize")
    study.optimize(optuna_objective(ev), n_trials=100)

``config_space(tree)`` is the Syne Tune-style ``{label: Categorical(op names)}``.

or a built-in strategy is driven from outside: ``at = AskTell(Evolution(tree), history="h.json")``, then
``while (a := at.ask()) is not None: at.tell(a, ev.evaluate(a))``.
"""

from lidsplit.search.blackbox import (
    BlackBoxResult,
    ScoreFn,
    classification_score,
    evolutionary_search,
    loss_score,
    random_search,
)
from lidsplit.search.driver import AskTell, HistoryError, Oracle, Record, SearchResult, run_search
from lidsplit.search.evaluator import LeafEvaluator, ModelSource, Result
from lidsplit.search.gradient import (
    METHODS,
    GradientSearchConfig,
    GradientSearchResult,
    arch_parameters,
    derive_arch,
    dirichlet_mean,
    gradient_search,
    sample_weights,
)
from lidsplit.search.interop import Categorical, config_space, optuna_distributions, optuna_objective
from lidsplit.search.ranking import kendall_tau, rank_correlations, spearman_rho
from lidsplit.search.select import (
    CRITERIA,
    ScratchResult,
    Selection,
    TrainFn,
    scratch_train_fn,
    select_final,
    successive_halving,
    train_from_scratch,
)
from lidsplit.search.strategies import (
    STRATEGIES,
    Evolution,
    PerLeaf,
    RandomSearch,
    RegularizedEvolution,
    Strategy,
    make_strategy,
    rank_key,
)

__all__ = [
    "Categorical",
    "config_space",
    "optuna_distributions",
    "optuna_objective",
    "STRATEGIES",
    "make_strategy",
    "AskTell",
    "CRITERIA",
    "Evolution",
    "HistoryError",
    "LeafEvaluator",
    "ModelSource",
    "Oracle",
    "PerLeaf",
    "RandomSearch",
    "Record",
    "RegularizedEvolution",
    "Result",
    "ScratchResult",
    "SearchResult",
    "Selection",
    "Strategy",
    "TrainFn",
    "kendall_tau",
    "rank_correlations",
    "rank_key",
    "run_search",
    "scratch_train_fn",
    "select_final",
    "spearman_rho",
    "successive_halving",
    "train_from_scratch",
    "METHODS",
    "GradientSearchConfig",
    "GradientSearchResult",
    "arch_parameters",
    "derive_arch",
    "dirichlet_mean",
    "gradient_search",
    "sample_weights",
    "BlackBoxResult",
    "ScoreFn",
    "classification_score",
    "evolutionary_search",
    "loss_score",
    "random_search",
]
