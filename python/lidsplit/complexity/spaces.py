"""From names to scores: the one path the command line (``lidsplit complexity``) takes.

A space is named ``NAME`` or ``NAME:JSON`` with JSON an object of constructor arguments
(``lidsplit.spaces.build(NAME, **JSON)``), or one of :data:`PRESETS`. :func:`score_spaces` builds each
(seeded) and scores it; :func:`score_tree` scores the leaves of a saved split tree (with the tree's
supernet when a space is named). Bad names, arguments and files raise ``ConfigError`` /
``DamagedFileError`` naming the spec or file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lidsplit import spaces
from lidsplit.common.errors import ConfigError
from lidsplit.common.io import parse_file
from lidsplit.complexity.scores import ComplexityScores, complexity_scores, tree_complexity
from lidsplit.complexity.size import PAPER_PROXYLESSNAS_KW, PROXYLESSNAS_KW
from lidsplit.complexity.table import AccuracyTable
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import search_space

__all__ = ["PRESETS", "SpaceSpec", "parse_space", "build_space", "unique_names", "score_spaces", "score_tree"]

#: Named presets: ProxylessNAS's ImageNet blocks (6^6 * 7^15) and the complexity paper's count with a
#: searchable first block (3 * 6^6 * 7^15 ~ 6.645e17); 1-channel 10-class inputs so the digits batch fits.
PRESETS: dict[str, Mapping[str, Any]] = {"proxylessnas-imagenet": PROXYLESSNAS_KW,
                                         "proxylessnas-paper": PAPER_PROXYLESSNAS_KW}


@dataclass(frozen=True)
class SpaceSpec:
    """A parsed space spec: the ``text`` given, its display ``name``, the ``builder`` and its arguments."""

    text: str
    name: str
    builder: str
    kwargs: dict[str, Any] = field(default_factory=dict)


def parse_space(text: str) -> SpaceSpec:
    """``NAME`` or ``NAME:JSON`` (see the module doc) as a :class:`SpaceSpec`."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise ConfigError(f"--space {text!r}: missing the space name")
    kw: Any = {}
    if sep:
        try:
            kw = json.loads(rest)
        except json.JSONDecodeError as e:
            raise ConfigError(f"--space {text!r}: the part after ':' must be a JSON object of arguments ({e})") from None
        if not isinstance(kw, dict):
            raise ConfigError(f"--space {text!r}: the part after ':' must be a JSON object, got {type(kw).__name__}")
    key = name.lower()
    if key in PRESETS:
        return SpaceSpec(text, name, "mobilenet", {**PRESETS[key], "in_channels": 1, "num_classes": 10, **kw})
    return SpaceSpec(text, name, key, kw)


def build_space(spec: SpaceSpec, seed: int, device: str | torch.device = "cpu") -> nn.Module:
    """The supernet of ``spec``, initialised from ``seed`` (torch's global RNG left as it was), on ``device``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = spaces.build(spec.builder, **spec.kwargs)
        except TypeError as e:
            raise ConfigError(f"--space {spec.text!r}: bad constructor arguments ({e})") from None
        except ValueError as e:
            if "unknown search space" not in str(e):
                raise
            raise ConfigError(f"--space {spec.text!r}: unknown space {spec.name!r}; choose from "
                              f"{list(spaces.SPACES) + list(PRESETS)}") from None
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise ConfigError(f"--device {str(device)!r}: {e}") from None


def unique_names(specs: Sequence[SpaceSpec]) -> list[str]:
    """The display names of ``specs``, numbered where a name repeats (``nb201``, ``nb201 #2``)."""
    names: list[str] = []
    for s in specs:
        n, k = s.name, 2
        while n in names:
            n, k = f"{s.name} #{k}", k + 1
        names.append(n)
    return names


def score_spaces(specs: Sequence[SpaceSpec], *, tables: Mapping[str, str | os.PathLike[str]] | None = None,
                 table_loader: str | None = None, seed: int = 0, device: str = "cpu",
                 **options: Any) -> list[ComplexityScores]:
    """The scores of every space of ``specs`` (named by :func:`unique_names`); ``tables``: display name ->
    accuracy table path; ``options``: the keywords of :func:`~lidsplit.complexity.complexity_scores`."""
    out = []
    for spec, name in zip(specs, unique_names(specs)):
        model = build_space(spec, seed, device)
        path = (tables or {}).get(name)
        table = None if path is None else AccuracyTable.load(path, search_space(model), loader=table_loader)
        out.append(complexity_scores(model, name=name, table=table, seed=seed, device=device, **options))
    return out


def score_tree(tree_path: str | os.PathLike[str], space: SpaceSpec | None = None, *,
               table: str | os.PathLike[str] | None = None, table_loader: str | None = None, seed: int = 0,
               device: str = "cpu", **options: Any) -> list[ComplexityScores]:
    """The scores of the leaves of the split tree saved at ``tree_path``; with ``space`` (the tree's
    supernet) the leaves' performance diversity too."""
    tree = parse_file(tree_path, SplitTree.from_json, what="split tree",
                      remedy="pass the tree.json of a finished split (OUT/split/tree.json)")
    model = None
    if space is not None:
        model = build_space(space, seed, device)
        if search_space(model) != tree.space:
            raise ConfigError(f"--tree {str(tree_path)!r} was split from a different search space than --space "
                              f"{space.text!r} ({tree.space!r} vs {search_space(model)!r})")
    acc = None if table is None else AccuracyTable.load(table, tree.space, loader=table_loader)
    return tree_complexity(tree, model, table=acc, seed=seed, device=device, **options)
