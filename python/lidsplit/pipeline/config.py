"""The pipeline's configuration: one schema for config files (TOML, YAML, JSON) and command-line flags.

A config file holds sections of keys; every key also has a flag (``FIELDS`` lists them)::

    [data]                      # --data, --data-path, --batch-size
    name = "digits"
    [split]                     # --criterion, --rounds, ...
    criterion = "lid"
    rounds = 2

Resolution, later wins: the defaults, the run directory's saved ``config.json`` (a re-run resumes with
the run's own settings), the ``--config`` file, the flags given. Unknown sections or keys and values of the
wrong type are errors (:class:`ConfigError`, naming the key, the value, its type and where it came from);
nothing is guessed or converted silently except an int where a float is expected.

Each key belongs to the stage whose results it changes (``Field.stage``); the pipeline refuses to change a
key of a stage that has already produced results in the run directory (see ``lidsplit.pipeline.Pipeline``).
Keys of stage ``None`` (progress bars, threads) never change results and may differ between sittings.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lidsplit.common.errors import ConfigError

__all__ = ["ConfigError", "Field", "FIELDS", "STAGES", "defaults", "load_file", "merge", "validate",
           "identity", "flag_of"]

#: The pipeline's stages, in order.
STAGES: tuple[str, ...] = ("split", "train", "search", "evaluate", "report")

CRITERIA = ("lid", "gm", "gradnorm", "snip", "grasp", "synflow", "jacob_cov", "ntk", "linear_regions",
            "exhaustive", "random")


@dataclass(frozen=True)
class Field:
    """One config key: ``section.key`` of ``type`` (``int``, ``float``, ``bool``, ``str``), ``None``
    allowed when ``optional``; ``choices`` / ``minimum`` bound it; ``stage`` is the stage whose results it
    changes (``None``: none); ``flag`` the command-line flag (default ``--key`` with ``_`` -> ``-``)."""

    section: str
    key: str
    type: type
    default: Any
    help: str
    stage: str | None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    optional: bool = False
    flag: str | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"


def _f(section: str, key: str, typ: type, default: Any, help: str, stage: str | None, **kw: Any) -> Field:
    return Field(section, key, typ, default, help, stage, **kw)


FIELDS: tuple[Field, ...] = (
    # run
    _f("run", "seed", int, 0, "seed of everything: data split, initial weights, sampling, search", "split"),
    _f("run", "device", str, "cpu", "cpu, cuda, or auto (cuda when available)", None, choices=("cpu", "cuda", "auto")),
    _f("run", "threads", int, 0, "CPU threads for torch (0: torch's default)", None, minimum=0),
    _f("run", "progress", bool, True, "show progress bars", None),
    # data
    _f("data", "name", str, "digits", "digits (ships with lidsplit), hard_digits (the ground-truth task), "
       "cifar10, cifar100", "split", choices=("digits", "hard_digits", "cifar10", "cifar100"), flag="--data"),
    _f("data", "path", str, None, "CIFAR directory (else LIDSPLIT_CIFAR10 / LIDSPLIT_CIFAR100 / LIDSPLIT_DATA)",
       "split", optional=True, flag="--data-path"),
    _f("data", "batch_size", int, 64, "batch size of all training and evaluation", "split", minimum=1),
    # space
    _f("space", "name", str, "nb201", "built-in search space", "split", choices=("nb201", "darts", "mobilenet"),
       flag="--space"),
    _f("space", "channels", int, 8, "NB201 supernet width C", "split", minimum=1),
    _f("space", "cells", int, 1, "NB201 cells per stage N", "split", minimum=1),
    # split
    _f("split", "criterion", str, "lid", "splitting criterion", "split", choices=CRITERIA),
    _f("split", "rounds", int, 2, "rounds of 2-way splits (2^rounds sub-supernets)", "split", minimum=1),
    _f("split", "warmup_epochs", int, 4, "supernet training before each split", "split", minimum=0),
    _f("split", "finetune_epochs", int, 4, "training of the leaves after the last split", "split", minimum=0),
    _f("split", "restart", bool, False, "re-initialise the leaves before fine-tuning (GM-NAS)", "split"),
    _f("split", "batches", int, 8, "scoring batches R per edge", "split", minimum=1),
    # training hyper-parameters (every training of the split; the train stage's epochs)
    _f("train", "optimizer", str, "sgd", "sgd (nesterov momentum) or adam", "split", choices=("sgd", "adam")),
    _f("train", "lr", float, 0.025, "initial learning rate (cosine decay to lr_min)", "split", minimum=0.0),
    _f("train", "lr_min", float, 0.001, "final learning rate", "split", minimum=0.0),
    _f("train", "momentum", float, 0.9, "SGD momentum", "split", minimum=0.0),
    _f("train", "weight_decay", float, 5e-4, "L2 weight decay", "split", minimum=0.0),
    _f("train", "grad_clip", float, 5.0, "max gradient norm (omit / null: no clipping)", "split", optional=True,
       minimum=0.0),
    _f("train", "epochs", int, 0, "the train stage: more fine-tuning epochs for every leaf (0: none)", "train",
       minimum=0, flag="--train-epochs"),
    # search
    _f("search", "strategy", str, "evolution", "evolution (NAS-LID), aging (regularized evolution), random",
       "search", choices=("evolution", "aging", "random")),
    _f("search", "per_leaf", bool, False, "one search per leaf instead of one over the whole tree", "search"),
    _f("search", "population", int, 50, "evolution / aging: population size", "search", minimum=1),
    _f("search", "keep", int, 10, "evolution: parents kept per generation", "search", minimum=1),
    _f("search", "n_crossover", int, 20, "evolution: children by crossover", "search", minimum=0),
    _f("search", "n_mutation", int, 20, "evolution: children by mutation", "search", minimum=0),
    _f("search", "crossover_prob", float, 0.1, "evolution: per-edge crossover probability", "search", minimum=0.0),
    _f("search", "mutation_prob", float, 0.1, "evolution: per-edge mutation probability", "search", minimum=0.0),
    _f("search", "generations", int, 10, "evolution: generations", "search", minimum=1),
    _f("search", "sample_size", int, 10, "aging: tournament size", "search", minimum=1),
    _f("search", "cycles", int, 200, "aging: evaluations after the initial population", "search", minimum=0),
    _f("search", "samples", int, 200, "random: architectures drawn", "search", minimum=1),
    _f("search", "calib_batches", int, 10, "BatchNorm recalibration batches per evaluation", "search", minimum=1),
    _f("search", "max_batches", int, None, "validation batches per evaluation (omit: all)", "search",
       optional=True, minimum=1),
    # evaluate
    _f("evaluate", "select", str, "val_acc", "final choice across leaves: val_acc, val_loss, successive_halving",
       "evaluate", choices=("val_acc", "val_loss", "successive_halving")),
    _f("evaluate", "scratch_epochs", int, 20, "train the final architecture from scratch for this many epochs "
       "and report its test accuracy (0: skip)", "evaluate", minimum=0),
    # report
    _f("report", "lid_archs", int, 4, "architectures per leaf for the leaves' LID profiles", "report", minimum=1),
    _f("report", "lid_batch", int, 256, "images in the LID profiles' batch", "report", minimum=2),
    _f("report", "lid_k", int, 20, "neighbours k of the LID estimate", "report", minimum=1),
    _f("report", "dpi", int, 120, "PNG resolution", "report", minimum=30),
)

_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(f.section for f in FIELDS))


def flag_of(field: Field) -> str:
    """The command-line flag of ``field``."""
    return field.flag or "--" + field.key.replace("_", "-")


def defaults() -> dict[str, dict[str, Any]]:
    """``{section: {key: default}}`` for every field."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for f in FIELDS:
        out[f.section][f.key] = copy.deepcopy(f.default)
    return out


def _typename(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _check(field: Field, value: Any, source: str) -> Any:
    where = f" (from {source})" if source else ""
    if value is None:
        if field.optional:
            return None
        raise ConfigError(f"config: {field.name} must be {field.type.__name__}, got null{where}")
    ok = (isinstance(value, bool) if field.type is bool
          else isinstance(value, int) and not isinstance(value, bool) if field.type is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) if field.type is float
          else isinstance(value, field.type))
    if not ok:
        raise ConfigError(f"config: {field.name} must be {field.type.__name__}, got {value!r} "
                          f"({_typename(value)}){where}")
    if field.type is float:
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"config: {field.name} must be finite, got {value!r}{where}")
    if field.choices is not None and value not in field.choices:
        raise ConfigError(f"config: {field.name} must be one of {', '.join(map(str, field.choices))}; "
                          f"got {value!r}{where}")
    if field.minimum is not None and value < field.minimum:
        raise ConfigError(f"config: {field.name} must be >= {field.minimum:g}, got {value!r}{where}")
    return value


def _suggest(word: str, options: Any) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(raw: Mapping[str, Any], source: str = "") -> dict[str, dict[str, Any]]:
    """Check a (possibly partial) ``{section: {key: value}}`` mapping; returns a checked copy."""
    where = f" in {source}" if source else ""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config{where}: expected sections of keys (a mapping), got {_typename(raw)}")
    out: dict[str, dict[str, Any]] = {}
    for section, keys in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"config: unknown section {section!r}{where}{_suggest(str(section), SECTIONS)}; "
                              f"sections: {', '.join(SECTIONS)}")
        if not isinstance(keys, Mapping):
            raise ConfigError(f"config: [{section}]{where} must hold keys, got {keys!r} ({_typename(keys)})")
        known = [f.key for f in FIELDS if f.section == section]
        for key, value in keys.items():
            field = _BY_NAME.get(f"{section}.{key}")
            if field is None:
                raise ConfigError(f"config: unknown key {section}.{key}{where}{_suggest(str(key), known)}; "
                                  f"[{section}] keys: {', '.join(known)}")
            out.setdefault(section, {})[key] = _check(field, value, source)
    _check_combination(merge(defaults(), out), source)
    return out


def _check_combination(cfg: Mapping[str, Mapping[str, Any]], source: str) -> None:
    s = cfg["search"]
    if s["strategy"] == "evolution" and s["keep"] + s["n_crossover"] + s["n_mutation"] > s["population"]:
        raise ConfigError(f"config: search.keep + search.n_crossover + search.n_mutation = "
                          f"{s['keep'] + s['n_crossover'] + s['n_mutation']} exceeds search.population = "
                          f"{s['population']}" + (f" (from {source})" if source else ""))
    for key in ("crossover_prob", "mutation_prob"):
        if s[key] > 1.0:
            raise ConfigError(f"config: search.{key} must be <= 1, got {s[key]!r}")


def merge(base: Mapping[str, Mapping[str, Any]], *overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``base`` with every ``override``'s keys set, in order (a new dict)."""
    out = {s: dict(v) for s, v in base.items()}
    for o in overrides:
        for s, keys in o.items():
            out.setdefault(s, {}).update(keys)
    return out


def load_file(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Read and check a config file; the format follows the suffix: ``.toml``, ``.yaml`` / ``.yml``, ``.json``."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config: no such file {str(p)!r}")
    suffix = p.suffix.lower()
    try:
        if suffix == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            with p.open("rb") as fh:
                raw = tomllib.load(fh)
        elif suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as e:
                raise ConfigError(f"config: reading {str(p)!r} needs PyYAML: pip install 'lidsplit[yaml]' "
                                  "(or use a TOML / JSON config)") from e
            with p.open(encoding="utf-8") as fh:
                raw = yaml.safe_load(fh)
            raw = {} if raw is None else raw
        elif suffix == ".json":
            raw = json.loads(p.read_text(encoding="utf-8"))
        else:
            raise ConfigError(f"config: {str(p)!r}: unknown format {suffix or '(no suffix)'!r}; "
                              "expected .toml, .yaml, .yml or .json")
    except ConfigError:
        raise
    except Exception as e:  # a parser's syntax error: say which file
        raise ConfigError(f"config: cannot parse {str(p)!r}: {e}") from e
    return validate(raw, str(p))


def identity(cfg: Mapping[str, Mapping[str, Any]], stage: str) -> dict[str, Any]:
    """The keys that change ``stage``'s results: ``{"section.key": value}`` for every field of ``stage``
    and of the stages before it."""
    upto = STAGES[: STAGES.index(stage) + 1]
    return {f.name: cfg[f.section][f.key] for f in FIELDS if f.stage in upto}
