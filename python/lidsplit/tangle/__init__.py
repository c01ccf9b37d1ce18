"""TangleNAS: weight-entangled search spaces and gradient-based search on them.

- Entangled ops (Choice subclasses, usable in every supernet mode): :class:`EntangledConv2d`,
  :class:`EntangledLinear`, :class:`EntangledAttention`; searchable dimensions :class:`ArchDim`; a mixture
  runs once with the superposed weight (:func:`lidsplit.ops.superpose`), a single path runs the centred /
  prefix slice. :func:`set_mixture` switches to the explicit (weight-sharing) computation.
- Spaces: :func:`toy_macro` (the paper's toy conv-macro space), :func:`nb201_entangled` (NB201 with 1x1
  and 3x3 convs entangled), :func:`mobilenet_entangled` (kernels x expansions, stage depths),
  :func:`transformer` (character-level GPT: embedding, depth, heads, MLP ratio).
- Search: :func:`search` (DARTS / GDAS / DrNAS, bi-level), :func:`derive_arch`; two-stage baselines
  :func:`spos_train`, :func:`random_search`, :func:`evolutionary_search`.
"""

from lidsplit.tangle.baselines import (
    BlackBoxResult,
    classification_score,
    evolutionary_search,
    loss_score,
    random_search,
    spos_train,
)
from lidsplit.tangle.core import (
    ArchDim,
    Combos,
    Entangled,
    FixedDim,
    FixedEntangled,
    Scaled,
    Sel,
    combi_weights,
    combos,
    prefix_batch_norm,
    set_mixture,
)
from lidsplit.tangle.mobilenet import EntangledMBConv, EntangledMobileNet, mobilenet_entangled
from lidsplit.tangle.modules import (
    EntangledAttention,
    EntangledConv2d,
    EntangledLinear,
    PrefixLayerNorm,
    SuperConv2d,
    SuperEmbedding,
    product_width,
    same_width,
)
from lidsplit.tangle.nb201 import NB201EntangledEdge, nb201_entangled
from lidsplit.tangle.search import (
    METHODS,
    SearchConfig,
    SearchResult,
    arch_parameters,
    derive_arch,
    dirichlet_mean,
    sample_weights,
    search,
)
from lidsplit.tangle.text import CharCorpus, LMBatches, stdlib_text
from lidsplit.tangle.toy_macro import TOY_CHANNELS, TOY_KERNELS, ToyMacro, toy_macro
from lidsplit.tangle.transformer import TangleGPT, lm_loss, transformer

__all__ = [
    "METHODS",
    "TOY_CHANNELS",
    "TOY_KERNELS",
    "ArchDim",
    "BlackBoxResult",
    "CharCorpus",
    "Combos",
    "Entangled",
    "EntangledAttention",
    "EntangledConv2d",
    "EntangledLinear",
    "EntangledMBConv",
    "EntangledMobileNet",
    "FixedDim",
    "FixedEntangled",
    "LMBatches",
    "NB201EntangledEdge",
    "PrefixLayerNorm",
    "Scaled",
    "SearchConfig",
    "SearchResult",
    "Sel",
    "SuperConv2d",
    "SuperEmbedding",
    "TangleGPT",
    "ToyMacro",
    "arch_parameters",
    "classification_score",
    "combi_weights",
    "combos",
    "derive_arch",
    "dirichlet_mean",
    "evolutionary_search",
    "lm_loss",
    "loss_score",
    "mobilenet_entangled",
    "nb201_entangled",
    "prefix_batch_norm",
    "product_width",
    "random_search",
    "same_width",
    "sample_weights",
    "search",
    "set_mixture",
    "spos_train",
    "stdlib_text",
    "toy_macro",
    "transformer",
]
