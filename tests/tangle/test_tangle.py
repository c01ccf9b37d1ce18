"""lidsplit.tangle, deprecated for one release: importing it warns, and every old name and submodule path
still resolves to its new home."""

from __future__ import annotations

import importlib
import sys

import pytest
import torch

from lidsplit import search, spaces
from lidsplit.supernet import entangled, search_space

OLD_NAMES = ["METHODS", "TOY_CHANNELS", "TOY_KERNELS", "ArchDim", "BlackBoxResult", "CharCorpus", "Combos", "Entangled",
             "EntangledAttention", "EntangledConv2d", "EntangledLinear", "EntangledMBConv", "EntangledMobileNet",
             "FixedDim", "FixedEntangled", "LMBatches", "NB201EntangledEdge", "PrefixLayerNorm", "Scaled",
             "SearchConfig", "SearchResult", "Sel", "SuperConv2d", "SuperEmbedding", "TangleGPT", "ToyMacro",
             "arch_parameters", "classification_score", "combi_weights", "combos", "derive_arch", "dirichlet_mean",
             "evolutionary_search", "lm_loss", "loss_score", "mobilenet_entangled", "nb201_entangled",
             "prefix_batch_norm", "product_width", "random_search", "same_width", "sample_weights", "search",
             "set_mixture", "spos_train", "stdlib_text", "toy_macro", "transformer"]


@pytest.fixture(scope="module")
def T():
    for name in [m for m in sys.modules if m == "lidsplit.tangle" or m.startswith("lidsplit.tangle.")]:
        del sys.modules[name]
    with pytest.warns(DeprecationWarning, match="lidsplit.tangle is deprecated"):
        return importlib.import_module("lidsplit.tangle")


def test_every_old_name_resolves(T) -> None:
    assert sorted(T.__all__) == sorted(OLD_NAMES)
    for name in OLD_NAMES:
        assert getattr(T, name) is not None, name
    assert T.search is search.gradient_search and T.SearchConfig is search.GradientSearchConfig
    assert T.Sel is entangled.Sel and T.toy_macro is spaces.toy_macro


def test_old_submodule_paths_resolve(T) -> None:
    from lidsplit.tangle.core import Sel, _fixed_class  # noqa: F401  (a private name too: the same module)
    from lidsplit.tangle.modules import EntangledConv2d
    from lidsplit.tangle.nb201 import nb201_entangled  # noqa: F401
    from lidsplit.tangle.search import SearchConfig
    from lidsplit.tangle.text import CharCorpus

    assert Sel is entangled.Sel and EntangledConv2d is entangled.EntangledConv2d
    assert SearchConfig is search.GradientSearchConfig and CharCorpus.__module__ == "lidsplit.data.text"


def test_old_builders_give_the_new_spaces(T) -> None:
    torch.manual_seed(0)
    old = T.nb201_entangled(C=4, bn_scale="before")
    assert search_space(old) == search_space(spaces.nb201(C=4, entangled=True)) == search_space(spaces.nb201(C=4))
    assert all(e.conv.bn_scale == "before" for c in old.cells if hasattr(c, "edges") for e in c.edges)
    assert search_space(T.mobilenet_entangled()) == search_space(T.EntangledMobileNet())
    assert search_space(T.EntangledMobileNet()) == search_space(spaces.mobilenet(entangled=True))
    assert isinstance(T.EntangledMobileNet(), spaces.MobileNetSupernet)
