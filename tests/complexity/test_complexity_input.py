"""The jacob_cov batch takes its channels from the model (or is the run's data), not always 1-channel
digits."""

from __future__ import annotations

import pytest
import torch
from _complexity_helpers import SMALL_OPS
from torch import nn

from lidsplit.complexity import complexity_scores, evaluation_batch, model_input_channels, tree_complexity
from lidsplit.data import synthetic
from lidsplit.spaces import nb201
from lidsplit.split import SplitTree
from lidsplit.supernet import Choice


def colour_small(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nb201(C=2, ops=SMALL_OPS, in_channels=3)


class Declared(nn.Module):
    input_shape = (5, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.pick = Choice("e", {"a": nn.Identity(), "b": nn.ReLU()})


def test_model_input_channels():
    assert model_input_channels(colour_small()) == 3
    assert model_input_channels(nb201(C=2, ops=SMALL_OPS)) == 1
    assert model_input_channels(Declared()) == 5  # what the model declares wins over its first conv
    assert model_input_channels(Tokens()) is None


def test_digits_batch_repeated_to_the_models_channels():
    grey = evaluation_batch("digits", 8, seed=2)
    colour = evaluation_batch("digits", 8, seed=2, in_channels=3)
    assert grey.shape == (8, 1, 8, 8) and colour.shape == (8, 3, 8, 8) and colour.is_contiguous()
    assert all(torch.equal(colour[:, c : c + 1], grey) for c in range(3))
    with pytest.raises(ValueError, match="in_channels must be an int >= 1"):
        evaluation_batch("digits", 8, in_channels=0)


def test_colour_supernet_scores_by_default():
    s = complexity_scores(colour_small(), samples=3, batch_size=8)
    assert s.performance.settings["batch"] == [8, 3, 8, 8] and s.performance.settings["data"] == "digits"
    assert s.performance.raw_sd_jacob_cov is not None and s.performance.raw_sd_jacob_cov > 0
    syn = complexity_scores(colour_small(), samples=3, batch_size=8, data="synthetic")
    assert syn.performance.settings["batch"] == [8, 3, 8, 8]


def test_run_data_as_the_batch():
    run_data = synthetic(64, num_classes=4, in_channels=3, image_size=8, seed=0)
    tree = SplitTree(colour_small().space)
    (s,) = tree_complexity(tree, colour_small(), samples=3, batch_size=8, data=run_data)
    assert s.performance.settings["batch"] == [8, 3, 8, 8] and s.performance.settings["data"] == run_data.name
    with pytest.raises(ValueError, match="exceeds the 40 training images of the synthetic data"):
        complexity_scores(colour_small(), samples=3, batch_size=41, data=run_data)
