"""Ground-truth tables shipped with lidsplit: standalone accuracies / losses of sampled architectures.

``ground_truth("nb201_digits")`` (also ``lidsplit.data.ground_truth``) loads ``lidsplit/data/tables/nb201_digits.json``, made by
``benchmarks/ground_truth/make_table.py`` (see its ``protocol`` and ``data`` entries): a seeded sample
of NB201 cells trained from scratch, several seeds each, on ``hard_digits``. ``ground_truth("nb201_colour")``
is a second, independent one: another architecture sample, trained on ``colour_digits`` (3-channel
digits, another distortion family and source split). Architectures are keyed by
their NB201 string (``lidsplit.spaces.to_nb201_string``); a tuple of op indices or op names in the
table's edge order is accepted as well.

A *degenerate* architecture has no path of non-``none`` edges from the cell input to its output; the
network is then at chance. The Kendall tau recorded in ``meta["kendall_tau"]`` (and :attr:`Table.tau`)
is measured between two training seeds over the non-degenerate architectures: it bounds how well any
predictor can be expected to agree with the table.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from lidsplit.data.colour import colour_digits
from lidsplit.data.core import DataSplits
from lidsplit.data.distorted import hard_digits

__all__ = ["ground_truth", "Table", "TableEntry", "TABLES"]

#: The tables shipped in ``lidsplit/data/tables``.
TABLES: tuple[str, ...] = ("nb201_digits", "nb201_colour")

_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", "train_loss")


@dataclass(frozen=True)
class TableEntry:
    """One architecture of a table: means / standard deviations over seeds and the per-seed values.

    Accuracies are in percent, losses are mean cross-entropies.
    """

    arch: str
    index: int
    degenerate: bool
    params: int
    seeds: tuple[int, ...]
    test_acc: float
    test_acc_std: float
    test_loss: float
    test_loss_std: float
    val_acc: float
    val_acc_std: float
    val_loss: float
    val_loss_std: float
    per_seed: dict[str, tuple[float, ...]]


class Table:
    """A ground-truth table: ``table[arch] -> TableEntry``, ``arch in table``, ``len(table)``."""

    def __init__(self, data: dict[str, Any]):
        try:
            self.name: str = str(data["name"])
            space = data["space"]
            self.edges: tuple[str, ...] = tuple(space["edges"])
            self.ops: tuple[str, ...] = tuple(space["ops"])
            raw = data["archs"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"lidsplit: not a ground-truth table (missing {e})") from None
        self.meta: dict[str, Any] = {k: v for k, v in data.items() if k != "archs"}
        self._entries: dict[str, TableEntry] = {}
        for arch, e in raw.items():
            self._entries[arch] = TableEntry(
                arch=arch,
                index=int(e["index"]),
                degenerate=bool(e["degenerate"]),
                params=int(e["params"]),
                seeds=tuple(int(s) for s in e["seeds"]),
                **{f"{m}{suffix}": float(e[f"{m}_{stat}"]) for m in _METRICS[:4]
                   for suffix, stat in (("", "mean"), ("_std", "std"))},
                per_seed={m: tuple(float(v) for v in e[m]) for m in _METRICS if m in e},
            )

    # ---- lookup -----------------------------------------------------------------------------------
    def key(self, arch: str | Sequence[int | str]) -> str:
        """The table key (NB201 string) of `arch`: a string, or op indices / names in edge order."""
        if isinstance(arch, str):
            return arch
        if isinstance(arch, bytes) or not isinstance(arch, Sequence):
            raise TypeError(f"lidsplit: an architecture is an NB201 string or a sequence of ops, got {type(arch).__name__}")
        if len(arch) != len(self.edges):
            raise ValueError(f"lidsplit: architecture has {len(arch)} entries, table {self.name!r} has "
                             f"{len(self.edges)} edges {list(self.edges)}")
        names = []
        for label, a in zip(self.edges, arch):
            if isinstance(a, str):
                if a not in self.ops:
                    raise ValueError(f"lidsplit: edge {label!r}: unknown op {a!r}; ops are {list(self.ops)}")
                names.append(a)
            elif isinstance(a, int) and not isinstance(a, bool) and 0 <= a < len(self.ops):
                names.append(self.ops[a])
            else:
                raise ValueError(f"lidsplit: edge {label!r}: op {a!r} is not an index 0..{len(self.ops) - 1} or a name")
        # NB201 string: node i lists 'op~j' for its inputs j, edges labelled 'i<-j' in node order
        nodes: dict[int, list[str]] = {}
        for label, op in zip(self.edges, names):
            i, j = (int(t) for t in label.split("<-"))
            nodes.setdefault(i, []).append(f"{op}~{j}")
        return "+".join("|" + "|".join(nodes[i]) + "|" for i in sorted(nodes))

    def __getitem__(self, arch: str | Sequence[int | str]) -> TableEntry:
        k = self.key(arch)
        try:
            return self._entries[k]
        except KeyError:
            raise KeyError(f"lidsplit: architecture {k!r} is not in table {self.name!r} "
                           f"({len(self)} architectures; see Table.archs())") from None

    def __contains__(self, arch: object) -> bool:
        try:
            return self.key(arch) in self._entries  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def archs(self, include_degenerate: bool = False) -> list[str]:
        """The architectures of the table (in sampling order), degenerate ones only if asked."""
        return [a for a, e in self._entries.items() if include_degenerate or not e.degenerate]

    def accuracy(self, arch: str | Sequence[int | str], split: str = "test") -> float:
        """Mean accuracy (%) over seeds on ``split`` ('test' or 'val')."""
        return getattr(self[arch], f"{_split(split)}_acc")

    def loss(self, arch: str | Sequence[int | str], split: str = "test") -> float:
        """Mean cross-entropy over seeds on ``split`` ('test' or 'val')."""
        return getattr(self[arch], f"{_split(split)}_loss")

    def scores(self, archs: Sequence[str | Sequence[int | str]], metric: str = "test_acc") -> list[float]:
        """``metric`` (test_acc, test_loss, val_acc, val_loss; seed mean) of each of `archs`."""
        if metric not in _METRICS[:4]:
            raise ValueError(f"lidsplit: metric must be one of {list(_METRICS[:4])}, got {metric!r}")
        return [getattr(self[a], metric) for a in archs]

    # ---- metadata ---------------------------------------------------------------------------------
    @property
    def tau(self) -> float:
        """Mean seed-to-seed Kendall tau of test accuracy over the non-degenerate architectures."""
        return float(self.meta["kendall_tau"]["seed_to_seed"]["test_acc"]["mean"])

    @property
    def protocol(self) -> dict[str, Any]:
        return self.meta["protocol"]

    def dataset(self) -> DataSplits:
        """The train / val / test data the table was trained and scored on (rebuilt, bit-identical):
        a supernet meant to be compared with this table must be trained on this task."""
        d, task = self.meta["data"], self.protocol.get("data")
        common = dict(image_size=int(d["image_size"]), fractions=d["fractions"], variants=d["variants"],
                      strength=float(d["strength"]), fov=float(d["fov"]), magnitudes=d["magnitudes"])
        if task == "hard_digits":
            return hard_digits(int(d["seed"]), occlusion=float(d["occlusion"]), **common)
        if task == "colour_digits":
            return colour_digits(int(d["seed"]), **common)
        raise ValueError(f"lidsplit: table {self.name!r} was made on {task!r}; Table.dataset() rebuilds "
                         f"hard_digits and colour_digits")

    def __repr__(self) -> str:
        nd = len(self.archs())
        return f"Table({self.name!r}: {len(self)} archs, {nd} non-degenerate, seed-to-seed tau {self.tau:.3f})"


def _split(split: str) -> str:
    if split not in ("test", "val"):
        raise ValueError(f"lidsplit: split must be 'test' or 'val', got {split!r}")
    return split


def ground_truth(name: str = "nb201_digits") -> Table:
    """Load a shipped ground-truth table by name (see :data:`TABLES`)."""
    if name not in TABLES:
        raise ValueError(f"lidsplit: unknown ground-truth table {name!r}; shipped tables: {list(TABLES)}")
    path = resources.files("lidsplit.data").joinpath("tables", f"{name}.json")
    if not path.is_file():
        raise FileNotFoundError(f"lidsplit: ground-truth table {name!r} is not installed (looked for {path})")
    with path.open("r", encoding="utf-8") as f:
        return Table(json.load(f))
