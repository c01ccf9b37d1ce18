"""Shared fixtures of the search tests (helpers in ``_search_helpers``)."""

from __future__ import annotations

import pytest
from _search_helpers import make_tree, tiny_supernet
from torch import nn

from lidsplit.data import DataLoaders, synthetic
from lidsplit.split import SplitTree


@pytest.fixture(autouse=True)
def _one_thread(one_thread) -> None:  # type: ignore[no-untyped-def]
    """Every test here runs on one torch thread."""


@pytest.fixture
def tree() -> SplitTree:
    return make_tree()


@pytest.fixture(scope="module")
def leaf_models() -> dict[int, nn.Module]:
    """Untrained leaf supernets, different initial weights per leaf."""
    return {leaf: tiny_supernet(leaf) for leaf in make_tree().leaf_ids()}


@pytest.fixture(scope="module")
def toy_loaders() -> DataLoaders:
    """Loaders of 32 (4 classes, 1 x 8 x 8 images) for the entangled toy space's searches."""
    return synthetic(192, num_classes=4, in_channels=1, image_size=8, seed=0, noise=0.5).loaders(32, seed=0)
