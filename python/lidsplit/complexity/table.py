"""Accuracy tables: architecture -> trained accuracy, for the performance diversity score (PDS).

File formats (``AccuracyTable.load`` / ``.save``; the format follows the suffix, ``.json`` or ``.csv``):

JSON::

    {"format": "lidsplit.AccuracyTable", "version": 1,
     "space": {"edges": [...]},          # optional: SearchSpace.to_json(); checked against the space
     "metric": "accuracy",               # optional, informational (e.g. "valid-accuracy")
     "accuracy": {"<arch key>": 93.1, "<arch key>": 91.7, ...}}

  A bare JSON object ``{"<arch key>": value, ...}`` is accepted too.

CSV: a header row, then one row per architecture; the column ``arch`` (or ``index``) holds the key and
the column named by ``metric`` (default ``accuracy``) the value; other columns are ignored.

Architecture keys (all forms may be mixed in one file):

* an integer: the architecture index of the space (``SearchSpace.arch_to_index``: mixed radix, first
  edge most significant; for NB201 this is *not* the benchmark file's row number);
* op names in edge order, joined by commas: ``"nor_conv_3x3,skip_connect,none,..."``;
* op indices in edge order, joined by commas: ``"3,1,0,..."`` (a key of one integer is an index);
* for NAS-Bench-201-style spaces (NB201's six edge labels), the canonical NB201 string
  ``"|nor_conv_3x3~0|+|skip_connect~0|none~1|+|..."``.

Values are floats in any unit (fraction or percent): the PDS compares normalised spreads (see
``lidsplit.complexity.performance``), so only with ``scale="none"`` does the unit matter. Non-finite
values are rejected; an architecture listed twice (under two key forms) is an error.

Loader hooks. ``AccuracyTable.load(path, space, loader=...)`` takes a registered loader name
(``"json"``, ``"csv"``, ``"nb201"``, ``"ground-truth"``) or any callable
``loader(path, space, **kw) -> Mapping[key, float]``; :func:`register_accuracy_loader` adds a name.

* ``"nb201"`` reads a NAS-Bench-201 benchmark file with the optional ``nas_201_api`` package (not a
  lidsplit dependency; the file is not shipped): keyword arguments ``dataset`` (default
  ``"cifar10-valid"``), ``hp`` (``"200"``) and ``metric`` (``"valid-accuracy"``).
* ``"ground-truth"`` reads lidsplit's ground-truth tables (``lidsplit.data.truth``): ``path`` is a table
  file, or the name of a shipped table (e.g. ``"nb201_digits"``); ``metric`` (default ``"test_acc"``,
  the seed mean) picks the column; degenerate architectures are kept (chance accuracy; see
  ``degenerate=`` in ``lidsplit.complexity.performance``). :meth:`AccuracyTable.from_ground_truth` does
  the same from a loaded table object.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from lidsplit.common.io import parse_file, read_json
from lidsplit.data import truth
from lidsplit.spaces import NB201_EDGES, NB201_SPACE, from_nb201_string
from lidsplit.supernet import Arch, SearchSpace

__all__ = [
    "AccuracyTable",
    "arch_key",
    "parse_arch_key",
    "register_accuracy_loader",
    "ACCURACY_LOADERS",
    "FORMAT",
]

FORMAT = "lidsplit.AccuracyTable"
VERSION = 1

Loader = Callable[..., Mapping[Any, float]]


def arch_key(space: SearchSpace, arch: Arch) -> str:
    """The canonical key of an architecture: its op names in edge order, joined by commas."""
    return ",".join(space.names(arch))


def _is_nb201(space: SearchSpace) -> bool:
    return space.labels == NB201_EDGES


def parse_arch_key(space: SearchSpace, key: Any) -> Arch:
    """An architecture from any key form of the module doc (int, list, or string). Raises ValueError."""
    if isinstance(key, bool):
        raise ValueError(f"accuracy table: {key!r} is not an architecture key")
    if isinstance(key, int):
        return space.index_to_arch(key)
    if isinstance(key, (list, tuple)):
        return space.validate_arch(key)
    if not isinstance(key, str):
        raise ValueError(f"accuracy table: {key!r} is not an architecture key")
    s = key.strip()
    if not s:
        raise ValueError("accuracy table: empty architecture key")
    try:
        if s.startswith("|"):
            if not _is_nb201(space):
                raise ValueError("NB201 strings need a space with NB201's edges (1<-0, 2<-0, ...)")
            return space.validate_arch(NB201_SPACE.names(from_nb201_string(s)))
        parts = [p.strip() for p in s.split(",")]
        if len(parts) == 1 and parts[0].lstrip("-").isdigit():
            return space.index_to_arch(int(parts[0]))
        if all(p.isdigit() for p in parts):
            return space.validate_arch([int(p) for p in parts])
        return space.validate_arch(parts)
    except (ValueError, KeyError, TypeError) as e:
        msg = e.args[0] if e.args else str(e)
        raise ValueError(f"accuracy table: key {key!r} is not an architecture of this space: {msg}") from None


class AccuracyTable(Mapping[Arch, float]):
    """A mapping ``arch (tuple of op indices) -> accuracy`` for one search space."""

    def __init__(self, space: SearchSpace, values: Mapping[Any, float], *, metric: str = "accuracy",
                 source: str | None = None):
        if not isinstance(space, SearchSpace):
            raise TypeError(f"accuracy table: space must be a SearchSpace, got {type(space).__name__}")
        self.space, self.metric, self.source = space, str(metric), source
        data: dict[Arch, float] = {}
        for key, v in values.items():
            arch = parse_arch_key(space, key)
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise ValueError(f"accuracy table: the value of {key!r} is {v!r}, not a number") from None
            if not math.isfinite(fv):
                raise ValueError(f"accuracy table: the value of {key!r} is {fv} (must be finite)")
            if arch in data:
                raise ValueError(f"accuracy table: architecture {arch_key(space, arch)!r} is listed twice")
            data[arch] = fv
        self._data = data

    # ---- mapping ----------------------------------------------------------------------------------
    def __getitem__(self, arch: Any) -> float:
        return self._data[self.space.validate_arch(arch) if not isinstance(arch, tuple) else arch]

    def __iter__(self) -> Iterator[Arch]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def get(self, arch: Any, default: Any = None) -> Any:  # type: ignore[override]
        try:
            a = self.space.validate_arch(arch)
        except (ValueError, TypeError, KeyError):
            return default
        return self._data.get(a, default)

    def archs(self) -> list[Arch]:
        """The table's architectures in index order."""
        return sorted(self._data)

    def __repr__(self) -> str:
        return f"AccuracyTable({len(self)} archs, metric={self.metric!r}{', ' + self.source if self.source else ''})"

    # ---- files ------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "space": self.space.to_json(),
            "metric": self.metric,
            "accuracy": {arch_key(self.space, a): self._data[a] for a in self.archs()},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.json`` (the format above) or ``.csv`` (columns ``arch``, ``<metric>``)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        elif suffix == ".csv":
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f)
                w.writerow(["arch", self.metric])
                for a in self.archs():
                    w.writerow([arch_key(self.space, a), repr(self._data[a])])
        else:
            raise ValueError(f"accuracy table: unknown file type {path.suffix!r} (use .json or .csv)")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: SearchSpace, *, loader: str | Loader | None = None,
             metric: str | None = None, **kw: Any) -> AccuracyTable:
        """Read a table for ``space``. ``loader``: None (by suffix: .json / .csv), a registered name, or a
        callable ``loader(path, space, **kw) -> Mapping[key, float]`` (or an ``AccuracyTable``)."""
        p = Path(path)
        if loader is None:
            suffix = p.suffix.lower()
            if suffix not in (".json", ".csv"):
                raise ValueError(f"accuracy table: cannot tell the format of {str(p)!r} from its suffix; "
                                 f"use .json or .csv, or pass a loader ({sorted(ACCURACY_LOADERS)})")
            loader = suffix[1:]
        if isinstance(loader, str):
            if loader not in ACCURACY_LOADERS:
                raise ValueError(f"accuracy table: unknown loader {loader!r}; registered: {sorted(ACCURACY_LOADERS)}")
            fn = ACCURACY_LOADERS[loader]
        elif callable(loader):
            fn = loader
        else:
            raise TypeError(f"accuracy table: loader must be a name or a callable, got {type(loader).__name__}")
        if metric is not None:
            kw["metric"] = metric
        if fn in (_load_json, _load_csv) and not p.is_file():
            raise FileNotFoundError(f"accuracy table: no such file: {str(p)!r}")
        got = fn(p, space, **kw)
        if isinstance(got, AccuracyTable):
            if got.space != space:
                raise ValueError("accuracy table: the loader returned a table for a different search space")
            return got
        if not isinstance(got, Mapping):
            raise TypeError(f"accuracy table: loader returned {type(got).__name__}, expected a mapping")
        return cls(space, got, metric=kw.get("metric") or "accuracy", source=str(p))


    @classmethod
    def from_ground_truth(cls, gt: Any, space: SearchSpace, *, metric: str = "test_acc",
                          include_degenerate: bool = True) -> AccuracyTable:
        """From a ground-truth table object (``lidsplit.data.truth.Table``, duck-typed: ``archs(
        include_degenerate=...)`` and ``scores(archs, metric)``); keys are its arch strings."""
        archs = list(gt.archs(include_degenerate=include_degenerate))
        values = dict(zip(archs, gt.scores(archs, metric)))
        return cls(space, values, metric=metric, source=str(getattr(gt, "name", "") or "ground truth"))


# ---- loaders ------------------------------------------------------------------------------------

_TABLE_REMEDY = "re-create or re-download it, or pass another table"


def _load_json(path: Path, space: SearchSpace, *, metric: str | None = None) -> AccuracyTable:
    d = read_json(path, what="accuracy table", remedy=_TABLE_REMEDY)
    if not isinstance(d, dict):
        raise ValueError(f"accuracy table: {str(path)!r} must hold a JSON object")
    if "format" in d:
        if d["format"] != FORMAT:
            raise ValueError(f"accuracy table: {str(path)!r} has format {d['format']!r}, expected {FORMAT!r}")
        if d.get("version", VERSION) != VERSION:
            raise ValueError(f"accuracy table: version {d.get('version')!r} is not supported (expected {VERSION})")
        if "space" in d and d["space"] is not None and SearchSpace.from_json(d["space"]) != space:
            raise ValueError(f"accuracy table: {str(path)!r} was written for a different search space")
        values = d.get("accuracy")
        if not isinstance(values, dict):
            raise ValueError(f"accuracy table: {str(path)!r} has no 'accuracy' object")
        m = metric or d.get("metric") or "accuracy"
    else:
        values, m = d, metric or "accuracy"
    return AccuracyTable(space, values, metric=m, source=str(path))


def _load_csv(path: Path, space: SearchSpace, *, metric: str | None = None) -> AccuracyTable:
    m = metric or "accuracy"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        key_col = "arch" if "arch" in cols else "index" if "index" in cols else None
        if key_col is None or m not in cols:
            raise ValueError(f"accuracy table: {str(path)!r} needs a header with columns 'arch' (or 'index') "
                             f"and {m!r}; found {cols}")
        values: dict[Any, float] = {}
        for i, row in enumerate(reader, start=2):
            key = row[key_col]
            k: Any = int(key) if key_col == "index" else key
            if k in values:
                raise ValueError(f"accuracy table: {str(path)!r} line {i}: key {key!r} repeated")
            try:
                values[k] = float(row[m])
            except (TypeError, ValueError):
                raise ValueError(f"accuracy table: {str(path)!r} line {i}: {m} = {row[m]!r} is not a number") from None
    return AccuracyTable(space, values, metric=m, source=str(path))


def _load_nb201(path: Path, space: SearchSpace, *, dataset: str = "cifar10-valid", hp: str = "200",
                metric: str | None = None) -> AccuracyTable:
    """NAS-Bench-201 benchmark file via ``nas_201_api`` (optional). Keys: the benchmark's arch strings."""
    try:
        from nas_201_api import NASBench201API  # type: ignore[import-not-found]
    except ImportError as e:
        raise ImportError("accuracy table: the 'nb201' loader needs the optional package nas_201_api "
                          "(pip install nas-bench-201) and a NAS-Bench-201 benchmark file") from e
    if not _is_nb201(space):
        raise ValueError("accuracy table: the 'nb201' loader needs a NAS-Bench-201 space")
    m = metric or "valid-accuracy"
    api = NASBench201API(str(path), verbose=False)
    values: dict[Any, float] = {}
    for i in range(len(api)):
        key = api.arch(i)
        try:
            a = parse_arch_key(space, key)
        except ValueError:
            continue  # an op outside a reduced space
        values[a] = float(api.get_more_info(i, dataset, hp=hp, is_random=False)[m])
    return AccuracyTable(space, values, metric=m, source=str(path))


def _load_ground_truth(path: Path, space: SearchSpace, *, metric: str | None = None,
                       include_degenerate: bool = True) -> AccuracyTable:
    """A lidsplit ground-truth table: a file in its JSON format, or the name of a shipped one."""
    p = Path(path)
    if p.is_file():
        gt = parse_file(p, truth.Table, what="ground-truth table", remedy=_TABLE_REMEDY)
    elif p.suffix == "" and p.parent == Path("."):
        gt = truth.ground_truth(str(p))
    else:
        raise FileNotFoundError(f"accuracy table: no such ground-truth table file: {str(p)!r}")
    return AccuracyTable.from_ground_truth(gt, space, metric=metric or "test_acc",
                                           include_degenerate=include_degenerate)


ACCURACY_LOADERS: dict[str, Loader] = {
    "json": _load_json,
    "csv": _load_csv,
    "nb201": _load_nb201,
    "ground-truth": _load_ground_truth,
}


def register_accuracy_loader(name: str, loader: Loader, *, overwrite: bool = False) -> None:
    """Make ``AccuracyTable.load(..., loader=name)`` call ``loader(path, space, **kw)``."""
    if not isinstance(name, str) or not name:
        raise ValueError("accuracy table: a loader name is a non-empty string")
    if not callable(loader):
        raise TypeError("accuracy table: a loader must be callable")
    if name in ACCURACY_LOADERS and not overwrite:
        raise ValueError(f"accuracy table: loader {name!r} exists (pass overwrite=True)")
    ACCURACY_LOADERS[name] = loader
