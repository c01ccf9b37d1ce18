"""Fuzz: the config loader and the tree / history / checkpoint / final-result readers given damaged and
random files end in a clean lidsplit error (or a valid result), never another exception, and never
change the file they read."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from lidsplit.common.errors import LidsplitError
from lidsplit.common.io import load_checkpoint, load_weights, parse_file
from lidsplit.pipeline.config import load_file
from lidsplit.search import AskTell, RandomSearch, run_search
from lidsplit.search.driver import HISTORY
from lidsplit.search.evaluator import Result
from lidsplit.spaces import NB201_SPACE
from lidsplit.split.tree import SplitTree

hypothesis = pytest.importorskip("hypothesis")
st = hypothesis.strategies
given, settings, HealthCheck = hypothesis.given, hypothesis.settings, hypothesis.HealthCheck

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def damaged(draw, good: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """``good`` truncated, zero-filled, with bytes overwritten, or replaced by random bytes."""
    kind = draw(st.sampled_from(["truncate", "zero", "flip", "random", "empty"]))
    if kind == "truncate":
        return good[: draw(st.integers(0, max(len(good) - 1, 0)))]
    if kind == "zero":
        return b"\0" * len(good)
    if kind == "empty":
        return b""
    if kind == "random":
        return draw(st.binary(max_size=512))
    out = bytearray(good)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers(-5, 10**6) | st.floats() | st.text(max_size=4),
                           lambda v: st.lists(v, max_size=3) | st.dictionaries(st.text(max_size=4), v, max_size=3),
                           max_leaves=6)


@st.composite
def mutated_json(draw, good: bytes) -> bytes:  # type: ignore[no-untyped-def]
    """``good`` (JSON) with one value somewhere replaced by a random JSON value, or a key dropped."""
    doc = json.loads(good)
    node, path = doc, []
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        path.append((node, key))
        node = node[key]
    if not path:
        return json.dumps(draw(JSON_VALUES)).encode()
    parent, key = path[-1]
    if isinstance(parent, dict) and draw(st.booleans()):
        del parent[key]
    else:
        parent[key] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


def damaged_json(good: bytes):  # type: ignore[no-untyped-def]
    return st.one_of(damaged(good), mutated_json(good))


def _tree() -> SplitTree:
    tree = SplitTree(NB201_SPACE)
    tree.split(0, 0, [[0, 1], [2, 3, 4]], criterion="lid", scores={"separability": 1.5}, seed=1)
    tree.split(1, 2, [[0], [1, 2, 3, 4]], criterion="lid", scores={}, seed=2)
    return tree


def _history(path: Path) -> None:
    run_search(_Eval(), RandomSearch(NB201_SPACE, samples=6, seed=0), history=path, progress=False)


class _Eval:
    def evaluate(self, arch: tuple[int, ...]) -> Result:
        return Result(sum(arch) / 24, 1.0 - sum(arch) / 24)

    def config(self) -> dict[str, str]:
        return {"fake": "evaluator"}


def _check(path: Path, data: bytes, read) -> None:  # type: ignore[no-untyped-def]
    path.write_bytes(data)
    try:
        read(path)
    except LidsplitError as e:
        assert str(path) in str(e) and "weights_only" not in str(e)
    assert path.read_bytes() == data  # never changed


CONFIG_TEXT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.dictionaries(st.sampled_from(["split", "search", "report", "run", "data", "x"]),
                    st.dictionaries(st.sampled_from(["rounds", "lid_k", "seed", "strategy", "keep", "name", "zz"]),
                                    st.one_of(st.integers(-3, 300), st.floats(), st.text(max_size=5), st.none(),
                                              st.booleans()), max_size=3), max_size=3).map(
        lambda d: json.dumps(d).encode()),
)


@FUZZ
@given(data=CONFIG_TEXT, suffix=st.sampled_from([".toml", ".json", ".yaml"]))
def test_config_loader(data: bytes, suffix: str) -> None:
    pytest.importorskip("yaml") if suffix == ".yaml" else None
    with tempfile.TemporaryDirectory() as d:
        _check(Path(d) / f"c{suffix}", data, load_file)


@FUZZ
@given(st.data())
def test_tree_reader(data) -> None:  # type: ignore[no-untyped-def]
    good = json.dumps(_tree().to_json()).encode()
    with tempfile.TemporaryDirectory() as d:
        _check(Path(d) / "tree.json", data.draw(damaged_json(good)),
               lambda p: parse_file(p, SplitTree.from_json, what="split tree"))


@FUZZ
@given(st.data())
def test_history_reader(data) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "history.json"
        _history(path)
        bad = data.draw(damaged_json(path.read_bytes()))

        def resume(p: Path) -> None:
            HISTORY.read(p)
            AskTell(RandomSearch(NB201_SPACE, samples=6, seed=0), history=p, evaluator_config=_Eval().config())

        _check(path, bad, resume)


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("steps", torch.zeros(()))


@FUZZ
@given(st.data())
def test_checkpoint_reader(data) -> None:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "final.pt"
        torch.save(_Tiny().state_dict(), path)
        bad = data.draw(damaged(path.read_bytes()))
        _check(path, bad, lambda p: load_weights(_Tiny(), p, what="weights file"))
        _check(path, bad, lambda p: load_checkpoint(p))


@pytest.fixture(scope="module")
def train_checkpoint(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real training checkpoint (1 epoch of a tiny NB201 supernet) and the identity it belongs to."""
    from lidsplit.data import synthetic
    from lidsplit.spaces import nb201
    from lidsplit.supernet import SubSupernet, search_space
    from lidsplit.train import TrainConfig, train_subsupernet
    from lidsplit.train.loop import _identity

    torch.manual_seed(0)
    model = nb201(C=2, N=1, num_classes=3, in_channels=3)
    sub = SubSupernet.full(search_space(model))
    loaders = synthetic(24, num_classes=3, image_size=8).loaders(8)
    path = tmp_path_factory.mktemp("ckpt") / "train.ckpt"
    cfg = TrainConfig(1, lr=0.01, seed=0)
    train_subsupernet(model, sub, loaders, config=cfg, checkpoint=path, progress=False)
    return path.read_bytes(), _identity(model, sub, cfg, loaders.train)


@FUZZ
@given(data=st.data())
def test_training_checkpoint_reader(train_checkpoint, data) -> None:  # type: ignore[no-untyped-def]
    from lidsplit.train.loop import _resume

    good, identity = train_checkpoint
    with tempfile.TemporaryDirectory() as d:
        _check(Path(d) / "train.ckpt", data.draw(damaged(good)), lambda p: _resume(p, identity))
