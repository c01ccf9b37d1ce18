"""Pre-search scoring of a search space's complexity (the "pre-search evaluation framework" paper).

Judge a space, or each sub-supernet (leaf) of a split tree, before training anything:

* size: exact number of architectures (:mod:`~lidsplit.complexity.size`);
* performance diversity: spread of jacob_cov at initialisation, and the PDS against trained accuracy
  when an accuracy table exists (:mod:`~lidsplit.complexity.performance`, tables in
  :mod:`~lidsplit.complexity.table`);
* architecture diversity: variance of block-type count vectors (:mod:`~lidsplit.complexity.architecture`);
* multi-task ability: number of tasks the space declares (``Supernet.tasks``).

``complexity_scores(model)`` returns all of them; ``tree_complexity(tree, model)`` one per leaf;
``spider_chart(scores, "out.png")`` draws the comparison; ``report_json`` is the CLI's JSON
(``lidsplit complexity``); ``score_spaces`` / ``score_tree`` go from space names and tree files to scores
(the command line's one path, :mod:`~lidsplit.complexity.spaces`).
"""

from lidsplit.complexity.architecture import (
    BLOCK_TYPES,
    ArchitectureDiversity,
    BlockFeaturizer,
    architecture_diversity,
    edge_multiplicity,
    op_block_counts,
)
from lidsplit.complexity.chart import spider_chart
from lidsplit.complexity.performance import (
    SCALES,
    PerformanceDiversity,
    evaluation_batch,
    jacob_cov_scores,
    model_input_channels,
    pds,
    pds_from_sd,
    scale_scores,
)
from lidsplit.complexity.sampling import Population, sample_archs
from lidsplit.complexity.scores import (
    DEFAULT_TASKS,
    ComplexityScores,
    complexity_scores,
    multi_task,
    performance_diversity,
    report_json,
    tree_complexity,
)
from lidsplit.complexity.spaces import PRESETS, SpaceSpec, build_space, parse_space, score_spaces, score_tree
from lidsplit.complexity.size import (
    PAPER_PROXYLESSNAS_KW,
    PROXYLESSNAS_KW,
    PROXYLESSNAS_STAGES,
    darts_genotype_count,
    log10_size,
    space_size,
)
from lidsplit.complexity.table import AccuracyTable, arch_key, parse_arch_key, register_accuracy_loader

__all__ = [
    "PRESETS",
    "SpaceSpec",
    "build_space",
    "parse_space",
    "score_spaces",
    "score_tree",
    "AccuracyTable",
    "ArchitectureDiversity",
    "BLOCK_TYPES",
    "BlockFeaturizer",
    "ComplexityScores",
    "DEFAULT_TASKS",
    "PAPER_PROXYLESSNAS_KW",
    "PROXYLESSNAS_KW",
    "PROXYLESSNAS_STAGES",
    "PerformanceDiversity",
    "Population",
    "SCALES",
    "arch_key",
    "architecture_diversity",
    "complexity_scores",
    "darts_genotype_count",
    "edge_multiplicity",
    "evaluation_batch",
    "jacob_cov_scores",
    "log10_size",
    "model_input_channels",
    "multi_task",
    "op_block_counts",
    "parse_arch_key",
    "pds",
    "pds_from_sd",
    "performance_diversity",
    "register_accuracy_loader",
    "report_json",
    "sample_archs",
    "scale_scores",
    "space_size",
    "spider_chart",
    "tree_complexity",
]
