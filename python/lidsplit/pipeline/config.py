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
import dataclasses
import difflib
import json
import math
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lidsplit import spaces
from lidsplit import split as _split
from lidsplit.common.errors import ConfigError
from lidsplit.common.executor import EXECUTORS
from lidsplit.data.registry import dataset_names
from lidsplit.search.select import CRITERIA as SELECTIONS
from lidsplit.search.strategies import STRATEGIES
from lidsplit.split.run import LR_SCHEDULES
from lidsplit.split.schedule import PRESETS

__all__ = ["ConfigError", "Field", "FIELDS", "STAGES", "SECTIONS", "Config", "defaults", "load_file", "merge",
           "validate", "identity", "flag_of", "RunSection", "DataSection", "SpaceSection", "SplitSection",
           "TrainSection", "SearchSection", "EvaluateSection", "ReportSection"]

#: The pipeline's stages, in order.
STAGES: tuple[str, ...] = ("split", "train", "search", "evaluate", "report")

Choices = tuple[Any, ...] | Callable[[], tuple[Any, ...]]


def key(default: Any, help: str, stage: str | None, *, choices: Choices | None = None,
        minimum: float | None = None, maximum: float | None = None, flag: str | None = None) -> Any:
    """A config key of a section dataclass: its default, help, the stage whose results it changes
    (``None``: none), allowed values (``choices``: a tuple, or a function reading a registry),
    bounds (those the engine accepts) and its command-line flag (default ``--key``)."""
    return dataclasses.field(default=default, metadata={"help": help, "stage": stage, "choices": choices,
                                                        "minimum": minimum, "maximum": maximum, "flag": flag})


# ---- the schema: one dataclass per section; FIELDS, flags, validation and defaults derive from it -------


@dataclass(frozen=True)
class RunSection:
    seed: int = key(0, "seed of everything: data split, initial weights, sampling, search", "split")
    device: str = key("cpu", "cpu, cuda, or auto (cuda when available)", None, choices=("cpu", "cuda", "auto"))
    # one thread: the small built-in supernets train fastest on it, and it keeps a run at its share of
    # shared cores (benchmarks/bench_load.md)
    threads: int = key(1, "CPU threads for torch (0: torch's default, every core)", None, minimum=0)
    progress: bool = key(True, "show progress bars", None)
    executor: str = key("local", "where independent tasks run: local (this process, one after another) or ray "
                        "(Ray tasks; pip install 'lidsplit[ray]'); results are the same", None, choices=EXECUTORS)
    workers: int = key(1, "tasks at once (ray: Ray tasks in flight; local: one at a time)", None, minimum=1)
    ray_address: str | None = key(None, "an existing Ray cluster (ray start --head prints it; auto: the one on this "
                                  "machine); none: start a local one", None)


@dataclass(frozen=True)
class DataSection:
    name: str = key("digits", "digits (ships with lidsplit), hard_digits (the ground-truth task), cifar10, cifar100, "
                    "synthetic (random images, for tests)", "split", choices=dataset_names, flag="--data")
    path: str | None = key(None, "CIFAR directory (else LIDSPLIT_CIFAR10 / LIDSPLIT_CIFAR100 / LIDSPLIT_DATA)",
                           "split", flag="--data-path")
    # BatchNorm needs two images per batch in training
    batch_size: int = key(64, "batch size of all training and evaluation", "split", minimum=2)


@dataclass(frozen=True)
class SpaceSection:
    name: str = key("nb201", "built-in search space", "split", choices=spaces.space_names, flag="--space")
    channels: int = key(8, "NB201 supernet width C", "split", minimum=1)
    cells: int = key(1, "NB201 cells per stage N", "split", minimum=1)


@dataclass(frozen=True)
class SplitSection:
    criterion: str = key("lid", "splitting criterion", "split", choices=_split.criterion_names)
    rounds: int = key(2, "rounds of 2-way splits (2^rounds sub-supernets)", "split", minimum=1)
    preset: str = key("custom", "training protocol (lidsplit.split.schedule) resolved for base_epochs: equal-budget, "
                      "split-finetune, nas-lid, nas-lid-code, gm-nas, few-shot; custom: the five keys below",
                      "split", choices=lambda: ("custom", *PRESETS))
    base_epochs: int = key(8, "a preset's base epochs E (the one-shot supernet's epochs)", "split", minimum=1)
    warmup_epochs: int = key(4, "custom: supernet training before each split", "split", minimum=0)
    finetune_epochs: int = key(4, "custom: training of the leaves after the last split", "split", minimum=0)
    restart: bool = key(False, "custom: re-initialise the leaves before fine-tuning (GM-NAS)", "split")
    lr_schedule: str = key("restart", "custom: learning rate across stages: restart (a cosine per stage) or "
                           "continued (one cosine per root-to-leaf path)", "split", choices=LR_SCHEDULES)
    carry_optimizer: bool = key(False, "custom: children inherit their parent's optimiser state", "split")
    batches: int = key(8, "scoring batches R per edge", "split", minimum=1)
    proxy_convention: str = key("original", "zero-cost-proxy criteria: the original papers' definitions or the "
                                "ZC-split paper's code (zc-split-code)", "split",
                                choices=lambda: tuple(_split.proxies.CONVENTIONS))


@dataclass(frozen=True)
class TrainSection:
    """Training hyper-parameters of every training of the split; ``epochs``: the train stage's."""

    optimizer: str = key("sgd", "sgd (nesterov momentum) or adam", "split", choices=("sgd", "adam"))
    lr: float = key(0.025, "initial learning rate (cosine decay to lr_min)", "split", minimum=0.0)
    lr_min: float = key(0.001, "final learning rate", "split", minimum=0.0)
    momentum: float = key(0.9, "SGD momentum", "split", minimum=0.0)
    weight_decay: float = key(5e-4, "L2 weight decay", "split", minimum=0.0)
    grad_clip: float | None = key(5.0, "max gradient norm (omit / null: no clipping)", "split", minimum=0.0)
    epochs: int = key(0, "the train stage: more fine-tuning epochs for every leaf (0: none)", "train", minimum=0,
                      flag="--train-epochs")
    nproc: int = key(1, "data-parallel processes for every training (torch.distributed: gloo on CPU, nccl on "
                     "GPUs; same weights up to float rounding)", None, minimum=1)


@dataclass(frozen=True)
class SearchSection:
    """The search; keys named like a strategy's parameters reach it (``lidsplit.search.make_strategy``)."""

    strategy: str = key("evolution", "evolution (NAS-LID), aging (regularized evolution), random", "search",
                        choices=lambda: tuple(STRATEGIES))
    per_leaf: bool = key(False, "one search per leaf instead of one over the whole tree", "search")
    population: int = key(50, "evolution / aging: population size", "search", minimum=1)
    keep: int = key(10, "evolution: parents kept per generation", "search", minimum=1)
    n_crossover: int = key(20, "evolution: children by crossover", "search", minimum=0)
    n_mutation: int = key(20, "evolution: children by mutation", "search", minimum=0)
    crossover_prob: float = key(0.1, "evolution: per-edge crossover probability", "search", minimum=0.0, maximum=1.0)
    mutation_prob: float = key(0.1, "evolution: per-edge mutation probability", "search", minimum=0.0, maximum=1.0)
    generations: int = key(10, "evolution: generations", "search", minimum=1)
    sample_size: int = key(10, "aging: tournament size", "search", minimum=1)
    cycles: int = key(200, "aging: evaluations after the initial population", "search", minimum=0)
    samples: int = key(200, "random: architectures drawn", "search", minimum=1)
    calib_batches: int = key(10, "BatchNorm recalibration batches per evaluation", "search", minimum=1)
    max_batches: int | None = key(None, "validation batches per evaluation (omit: all)", "search", minimum=1)
    batch: int = key(1, "architectures asked before their results are told, evaluated as parallel tasks (the "
                     "history depends on it, never on the executor; 1: one after another)", "search", minimum=1,
                     flag="--search-batch")


@dataclass(frozen=True)
class EvaluateSection:
    select: str = key("val_acc", "final choice across leaves: val_acc, val_loss, successive_halving", "evaluate",
                      choices=lambda: tuple(SELECTIONS))
    scratch_epochs: int = key(20, "train the final architecture from scratch for this many epochs and report its "
                              "test accuracy (0: skip)", "evaluate", minimum=0)


@dataclass(frozen=True)
class ReportSection:
    lid_archs: int = key(4, "architectures per leaf for the leaves' LID profiles", "report", minimum=1)
    lid_batch: int = key(256, "images in the LID profiles' batch (more than lid_k)", "report", minimum=3)
    # the MLE of LID needs two neighbours (lidsplit.ops.lid_mle refuses k < 2)
    lid_k: int = key(20, "neighbours k of the LID estimate", "report", minimum=2)
    dpi: int = key(120, "PNG resolution", "report", minimum=30)


@dataclass(frozen=True)
class Config:
    """The resolved pipeline config, typed: ``config.split.criterion``. ``Config.from_dict`` /
    ``to_dict`` convert from / to the ``{section: {key: value}}`` form of files and flags."""

    run: RunSection = dataclasses.field(default_factory=RunSection)
    data: DataSection = dataclasses.field(default_factory=DataSection)
    space: SpaceSection = dataclasses.field(default_factory=SpaceSection)
    split: SplitSection = dataclasses.field(default_factory=SplitSection)
    train: TrainSection = dataclasses.field(default_factory=TrainSection)
    search: SearchSection = dataclasses.field(default_factory=SearchSection)
    evaluate: EvaluateSection = dataclasses.field(default_factory=EvaluateSection)
    report: ReportSection = dataclasses.field(default_factory=ReportSection)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Mapping[str, Any]], source: str = "") -> Config:
        """A complete, checked config from a (possibly partial) mapping over the defaults."""
        full = merge(defaults(), validate(raw, source))
        return cls(**{f.name: _SECTION_TYPES[f.name](**full[f.name]) for f in dataclasses.fields(cls)})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}

    def identity(self, stage: str) -> dict[str, Any]:
        return identity(self.to_dict(), stage)


_SECTION_TYPES: dict[str, type] = {f.name: f.type if isinstance(f.type, type) else globals()[f.type]
                                   for f in dataclasses.fields(Config)}


@dataclass(frozen=True)
class Field:
    """One config key, derived from its section dataclass: ``section.key`` of ``type`` (``int``,
    ``float``, ``bool``, ``str``), ``None`` allowed when ``optional``; ``choices`` / ``minimum`` /
    ``maximum`` bound it; ``stage`` is the stage whose results it changes (``None``: none); ``flag`` the
    command-line flag (default ``--key`` with ``_`` -> ``-``)."""

    section: str
    key: str
    type: type
    default: Any
    help: str
    stage: str | None
    choices_of: Choices | None = None
    minimum: float | None = None
    maximum: float | None = None
    optional: bool = False
    flag: str | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def choices(self) -> tuple[Any, ...] | None:
        """The allowed values, read from the registry now (a criterion registered later counts)."""
        c = self.choices_of
        return c() if callable(c) else c


def _fields_of(section: str, cls: type) -> list[Field]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t, optional = hints[f.name], False
        if isinstance(t, types.UnionType):  # X | None
            (t,), optional = [a for a in typing.get_args(t) if a is not type(None)], True
        m = f.metadata
        out.append(Field(section, f.name, t, f.default, m["help"], m["stage"], m["choices"], m["minimum"],
                         m["maximum"], optional, m["flag"]))
    return out


FIELDS: tuple[Field, ...] = tuple(f for s, cls in _SECTION_TYPES.items() for f in _fields_of(s, cls))

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
    if field.maximum is not None and value > field.maximum:
        raise ConfigError(f"config: {field.name} must be <= {field.maximum:g}, got {value!r}{where}")
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


#: the split keys that a preset sets (its SplitSchedule.run_kwargs)
PRESET_KEYS = ("warmup_epochs", "finetune_epochs", "restart", "lr_schedule", "carry_optimizer")


def _check_combination(cfg: Mapping[str, Mapping[str, Any]], source: str) -> None:
    """The rules between keys (each one a rule of the engine, checked before anything runs)."""
    where = f" (from {source})" if source else ""
    s, r, sp = cfg["search"], cfg["report"], cfg["split"]
    if sp["preset"] != "custom":
        base = defaults()["split"]
        clash = [k for k in PRESET_KEYS if sp[k] != base[k]]
        if clash:
            raise ConfigError(f"config: split.preset = {sp['preset']!r} sets {', '.join('split.' + k for k in clash)}; "
                              f"leave them out or use split.preset = 'custom'{where}")
    if s["strategy"] == "evolution" and s["keep"] + s["n_crossover"] + s["n_mutation"] > s["population"]:
        raise ConfigError(f"config: search.keep + search.n_crossover + search.n_mutation = "
                          f"{s['keep'] + s['n_crossover'] + s['n_mutation']} exceeds search.population = "
                          f"{s['population']}{where}")
    if s["strategy"] == "aging" and s["sample_size"] > s["population"]:
        raise ConfigError(f"config: search.sample_size = {s['sample_size']} exceeds search.population = "
                          f"{s['population']}{where}")
    if r["lid_batch"] <= r["lid_k"]:
        raise ConfigError(f"config: report.lid_batch = {r['lid_batch']} must exceed report.lid_k = {r['lid_k']} "
                          f"(LID with k neighbours needs more than k images){where}")


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
