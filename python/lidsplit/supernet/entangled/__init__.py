"""Weight-entangled ops (TangleNAS): Choice subclasses that hold the weights of their largest choice and
run any choice as a slice, any mixture as ONE pass with the superposed weight
(:func:`lidsplit.ops.superpose`). They work in every supernet forward mode, as any Choice does.

- :mod:`~lidsplit.supernet.entangled.core`: selections (:class:`Sel`), searchable dimensions
  (:class:`ArchDim`, :class:`Scaled`), the :class:`Entangled` base, combi coefficients, boxes, the
  prefix BatchNorm and :func:`set_mixture` (superposed or explicit weight-sharing computation);
- :mod:`~lidsplit.supernet.entangled.modules`: :class:`EntangledConv2d`, :class:`EntangledLinear`,
  :class:`EntangledAttention` and the transformer helpers (:class:`PrefixLayerNorm`,
  :class:`SuperEmbedding`).

The spaces built from them are in :mod:`lidsplit.spaces` (``nb201(entangled=True)``,
``mobilenet(entangled=True)``, ``toy_macro``, ``transformer``).
"""

from lidsplit.supernet.entangled.core import (
    ArchDim,
    Combos,
    DimArg,
    Entangled,
    FixedDim,
    FixedEntangled,
    Scaled,
    Sel,
    combi_weights,
    combos,
    grouped,
    prefix_batch_norm,
    resolve,
    set_mixture,
)
from lidsplit.supernet.entangled.modules import (
    EntangledAttention,
    EntangledConv2d,
    EntangledLinear,
    PrefixLayerNorm,
    SuperConv2d,
    SuperEmbedding,
    product_width,
    same_width,
    weighted_sum,
)

__all__ = [
    "ArchDim",
    "Combos",
    "DimArg",
    "Entangled",
    "EntangledAttention",
    "EntangledConv2d",
    "EntangledLinear",
    "FixedDim",
    "FixedEntangled",
    "PrefixLayerNorm",
    "Scaled",
    "Sel",
    "SuperConv2d",
    "SuperEmbedding",
    "combi_weights",
    "combos",
    "grouped",
    "prefix_batch_norm",
    "product_width",
    "resolve",
    "same_width",
    "set_mixture",
    "weighted_sum",
]
