"""Deprecated (kept for one release): TangleNAS now lives in the layers it spans.

===========================================  ==================================================
was ``lidsplit.tangle.``                     now
===========================================  ==================================================
``core``, ``modules`` (entangled ops)        :mod:`lidsplit.supernet.entangled`
``nb201_entangled(...)``                     ``lidsplit.spaces.nb201(..., entangled=True)``
``mobilenet_entangled(...)``                 ``lidsplit.spaces.mobilenet(..., entangled=True)``
``EntangledMobileNet``                       ``lidsplit.spaces.MobileNetSupernet(entangled=True)``
``toy_macro``, ``transformer``, ``lm_loss``  :mod:`lidsplit.spaces` (``toy_macro``, ``transformer``)
``CharCorpus``, ``LMBatches``, ...           :mod:`lidsplit.data` (``lidsplit.data.text``)
``search``, ``SearchConfig``, ...            ``lidsplit.search.gradient_search``, ``GradientSearchConfig``
``random_search``, ``evolutionary_search``   :mod:`lidsplit.search` (the ``RandomSearch`` / ``Evolution``
                                             strategies driven by ``run_search``)
``spos_train``                               :func:`lidsplit.train.spos_train`
===========================================  ==================================================

Importing this module warns (DeprecationWarning); every old name and submodule path still resolves.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from typing import Any

from lidsplit.data import text as _text
from lidsplit.data.text import CharCorpus, LMBatches, stdlib_text
from lidsplit.search import blackbox as _blackbox
from lidsplit.search import gradient as _gradient
from lidsplit.search.blackbox import BlackBoxResult, classification_score, evolutionary_search, loss_score, random_search
from lidsplit.search.gradient import METHODS, arch_parameters, derive_arch, dirichlet_mean, sample_weights
from lidsplit.search.gradient import GradientSearchConfig as SearchConfig
from lidsplit.search.gradient import GradientSearchResult as SearchResult
from lidsplit.search.gradient import gradient_search as search
from lidsplit.spaces.mobilenet import EntangledMBConv, MobileNetSupernet
from lidsplit.spaces.nb201 import NB201EntangledEdge, NB201Supernet
from lidsplit.spaces.toy_macro import TOY_CHANNELS, TOY_KERNELS, ToyMacro, toy_macro
from lidsplit.spaces.transformer import TangleGPT, lm_loss, transformer
from lidsplit.supernet.entangled import (
    ArchDim,
    Combos,
    Entangled,
    EntangledAttention,
    EntangledConv2d,
    EntangledLinear,
    FixedDim,
    FixedEntangled,
    PrefixLayerNorm,
    Scaled,
    Sel,
    SuperConv2d,
    SuperEmbedding,
    combi_weights,
    combos,
    prefix_batch_norm,
    product_width,
    same_width,
    set_mixture,
)
from lidsplit.supernet.entangled import core as _core
from lidsplit.supernet.entangled import modules as _modules
from lidsplit.train import spos_train

# the space modules share their names with the builders lidsplit.spaces exports: import them by path
_nb201, _mobilenet, _toy_macro, _transformer = (importlib.import_module(f"lidsplit.spaces.{m}")
                                                for m in ("nb201", "mobilenet", "toy_macro", "transformer"))

warnings.warn("lidsplit.tangle is deprecated and will be removed in the next release: entangled ops are in "
              "lidsplit.supernet.entangled, the spaces in lidsplit.spaces (nb201/mobilenet(entangled=True), "
              "toy_macro, transformer), the text corpus in lidsplit.data, DARTS/GDAS/DrNAS and the black-box "
              "searches in lidsplit.search, spos_train in lidsplit.train", DeprecationWarning, stacklevel=2)


def nb201_entangled(C: int = 8, N: int = 1, num_classes: int = 10, in_channels: int = 1, affine: bool = False,
                    track_running_stats: bool = True, ops: Any = _nb201.NB201_OPS,
                    bn_scale: str = "after") -> NB201Supernet:
    """Deprecated: ``lidsplit.spaces.nb201(..., entangled=True)``."""
    return _nb201.nb201(C, N, num_classes, in_channels, affine, track_running_stats, ops, entangled=True,
                        bn_scale=bn_scale)


def mobilenet_entangled(**kw: Any) -> MobileNetSupernet:
    """Deprecated: ``lidsplit.spaces.mobilenet(..., entangled=True)``."""
    return _mobilenet.mobilenet(entangled=True, **kw)


class EntangledMobileNet(MobileNetSupernet):
    """Deprecated: ``lidsplit.spaces.MobileNetSupernet(..., entangled=True)`` (keyword arguments)."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(entangled=True, **kw)


# the old submodule paths (``from lidsplit.tangle.core import Sel``, ...) resolve to the new modules; the
# ones whose names changed resolve to this module, which holds every old name
for _old, _new in {"core": _core, "modules": _modules, "text": _text, "toy_macro": _toy_macro,
                   "transformer": _transformer}.items():
    sys.modules[f"{__name__}.{_old}"] = _new
for _old in ("nb201", "mobilenet", "search", "baselines"):
    sys.modules[f"{__name__}.{_old}"] = sys.modules[__name__]
del _old, _new

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
