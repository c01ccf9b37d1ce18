"""The criterion registry: one list of names for everything, and a new criterion is one class plus one
registration (proved by registering a toy criterion and running a split with it)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import lidsplit
from lidsplit.data import synthetic
from lidsplit.pipeline.config import FIELDS
from lidsplit.spaces import nb201
from lidsplit.split import Criterion, ScoringSet, criterion_names, make_criterion, register_criterion
from lidsplit.split.criteria import Measurement, registry

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are dropped afterwards."""
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_ALIASES", dict(registry._ALIASES))


def test_the_builtin_names_are_the_pipeline_choices() -> None:
    names = criterion_names()
    assert names == ("lid", "gm", "gradnorm", "snip", "grasp", "synflow", "jacob_cov", "ntk", "linear_regions",
                     "fisher", "exhaustive", "random")
    assert lidsplit.split.CRITERIA == names  # the old name, kept for a release
    (field,) = [f for f in FIELDS if f.section == "split" and f.key == "criterion"]
    assert field.choices == names
    for name in names:
        assert make_criterion(name).name == name


@pytest.mark.usefixtures("scratch_registry")
def test_a_name_or_alias_is_registered_once() -> None:
    with pytest.raises(ValueError, match=r"\['lid'\] already registered"):
        register_criterion("lid", lambda: None)
    with pytest.raises(ValueError, match=r"\['fewshot'\] already registered"):
        register_criterion("mine", lambda: None, aliases=("FewShot",))
    with pytest.raises(ValueError, match="lower-case"):
        register_criterion("My-Name", lambda: None)
    register_criterion("broken", lambda: 42)
    with pytest.raises(TypeError, match="returned a int, not a Criterion"):
        make_criterion("broken")
    with pytest.raises(ValueError, match=r"unknown 'nope'; expected one of \[.*'broken'\]"):
        make_criterion("nope")


@pytest.mark.usefixtures("scratch_registry")
def test_a_new_criterion_is_one_class_plus_one_registration() -> None:
    @register_criterion("op_index", aliases=("by-index",))
    class OpIndexCriterion(Criterion):
        """Similarity ``-|i - j|`` of the op indices, times the batch mean of |x| (so it is measured)."""

        name = "op_index"
        default_batches = 1
        default_batch_size = 16

        def _measure(self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int,
                     x: Tensor, y: Tensor, timings: dict[str, float]) -> Measurement:
            idx = np.asarray(ops, dtype=np.float64)
            scale = float(x.abs().mean())
            return -np.abs(idx[:, None] - idx[None, :]) * scale, {"scale": np.float64(scale)}, True, ""

    assert criterion_names()[-1] == "op_index"
    (field,) = [f for f in FIELDS if f.section == "split" and f.key == "criterion"]
    assert field.choices[-1] == "op_index"  # the pipeline's --criterion reads the registry when asked
    assert isinstance(make_criterion("By_Index"), OpIndexCriterion)
    torch.manual_seed(0)
    model = nb201(C=4, N=1)
    data = synthetic(128, num_classes=4, in_channels=1, image_size=8, seed=0)
    res = lidsplit.run_split(model, data, "op_index", 1, warmup_epochs=0, progress=False)
    tree = getattr(res, "tree", res)
    assert len(tree.leaves()) == 2
    root = tree.root
    assert root.criterion == "op_index"
    # ops 0..4 in a balanced 2-way min-cut of -|i - j|: neighbours stay together
    assert sorted(map(sorted, root.groups)) in ([[0, 1], [2, 3, 4]], [[0, 1, 2], [3, 4]])
    assert root.scores["criterion_config"] == {"name": "op_index"}
