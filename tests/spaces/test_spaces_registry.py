"""The space registry: ``build`` and the command line read one list; a new space is one builder plus one
registration."""

from __future__ import annotations

import pytest
import torch

from lidsplit import spaces
from lidsplit.pipeline.config import FIELDS
from lidsplit.spaces import registry, toy_macro
from lidsplit.supernet import search_space


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "BUILDERS", dict(registry.BUILDERS))
    monkeypatch.setattr(registry, "_NAMES", list(registry._NAMES))


def test_builtin_names_and_aliases() -> None:
    assert spaces.space_names() == ("nb201", "darts", "mobilenet") == spaces.SPACES
    assert type(spaces.build("NAS-Bench-201", C=4)).__name__ == "NB201Supernet"
    assert type(spaces.build("proxyless_nas")).__name__ == "MobileNetSupernet"
    assert spaces._BUILDERS is registry.BUILDERS  # the old private name
    with pytest.raises(ValueError, match=r"unknown search space 'nope'; choose from \["):
        spaces.build("nope")


@pytest.mark.usefixtures("scratch_registry")
def test_a_new_space_is_one_builder_plus_one_registration() -> None:
    @spaces.register_space("toy", aliases=("toy-macro",))
    def toy(num_classes: int = 10, in_channels: int = 1) -> torch.nn.Module:
        return toy_macro(num_classes=num_classes, in_channels=in_channels, width_mult=0.125)

    assert spaces.space_names()[-1] == "toy"
    (field,) = [f for f in FIELDS if f.section == "space" and f.key == "name"]
    assert field.choices[-1] == "toy"  # the pipeline's --space reads the registry when asked
    model = spaces.build("Toy_Macro", num_classes=3)
    assert search_space(model) == search_space(toy())
    with pytest.raises(ValueError, match=r"\['nb201'\] already registered"):
        spaces.register_space("nb201")(toy)
