"""What every split criterion shares: the scoring set, the edge score, the model state during scoring,
the dead-edge watch and the :class:`Criterion` base class whose :meth:`Criterion.score_edge` averages a
subclass's per-batch measurements.

A criterion gives, for one edge of one sub-supernet, an ``n x n`` similarity matrix of its ``n`` one-op
sub-supernets (plus what was measured, for reports). To add one, subclass :class:`Criterion`, implement
:meth:`Criterion._measure` (one batch) and register it (:mod:`lidsplit.split.criteria.registry`).

The other edges (``others``): ``"path"`` (default of ``lid``, ``gm`` (the authors' codes) and the proxies): per batch
``r`` one architecture drawn uniformly inside the sub-supernet, shared by the n variants (only the
target edge differs); ``"sum"``: the sum of their enabled ops (NAS-LID eq. 4); ``"weighted"``: a
DARTS mixture with given architecture weights (``arch_weights``, softmax masked to the sub-supernet).

Common random numbers. A :class:`ScoringSet` fixes, for one sub-supernet, the ``R`` batches and the
``R`` sampled paths (seeded). Every criterion scores every candidate edge on the same ScoringSet, so
all edges and all criteria see the same data and the same paths (the authors' codes draw a fresh
shuffled loader per edge). The per-batch similarity matrices are averaged over the batches (NAS-LID
and GM-NAS average similarities, not measurements).

Uninformative batches. With a sampled path the target edge can be dead: its output is never used (NB201:
edge ``1<-0`` when both ``2<-1`` and ``3<-1`` are ``none``), or its input is zero (NB201: edge ``3<-2``
when ``2<-0`` is ``none`` and ``2<-1`` reads a zero node). The n variants then compute the same network,
or networks that differ by rounding only, and the similarity of (some of) their pairs is maximal (``1/eps
= 1e6`` for ``inverse``, cosine 1). Averaged in, such a batch adds up to ``1e6 / R`` to pairs of that
edge only, which biases the edge selection towards edges that are often dead and swamps the informative
batches. With ``skip_uninformative=True`` (default) a batch is left out of the average and counted in
``skipped`` when the n measurements are identical (relative tolerance ``1e-6``) or when the edge's input
is zero up to rounding in every cell (at most ``1e-5`` times the largest input of any edge, read by hooks
on the ``Choice`` modules); an edge whose batches are all uninformative gets the plain average and
``informative=False`` (the split run then prefers informative edges). ``skip_uninformative=False``
averages every batch, as the authors' codes.

Model state. Scoring runs in :func:`characterisation_mode`: every module in eval mode except the
BatchNorms, which use batch statistics (as the authors' codes, whose models stay in train mode) but
with ``track_running_stats`` switched off for the duration, so running statistics and
``num_batches_tracked`` are never changed (the authors' code updates them as a side effect). Flags are
restored on exit; ``.grad`` fields are never written (gradients come from ``torch.autograd.grad``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.common.progress import progress_bar
from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import DataLoaders, Dataset, DataSplits, TensorLoader
from lidsplit.supernet import (
    SubSupernet,
    choices,
    search_space,
    use_path,
    use_sum,
    use_weighted,
)

__all__ = [
    "ScoringSet",
    "scoring_set",
    "EdgeScore",
    "Criterion",
    "OTHERS",
    "characterisation_mode",
]

OTHERS = ("path", "sum", "weighted")
_REL_TOL = 1e-6
_DEAD_TOL = 1e-5

#: one batch's ``(similarity (n, n) or None, measurements, informative, note)`` (see ``Criterion._measure``)
Measurement = tuple[np.ndarray | None, dict[str, np.ndarray], bool, str]

# ---- model state during scoring ------------------------------------------------------------------


@contextmanager
def characterisation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Every module in eval mode but the BatchNorms, which use batch statistics without updating their
    running statistics (``training=True``, ``track_running_stats=False``); everything restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    bns = [(m, m.track_running_stats) for m in model.modules() if isinstance(m, _BatchNorm)]
    try:
        model.eval()
        for m, _ in bns:
            m.training = True
            m.track_running_stats = False
        yield model
    finally:
        for m, t in bns:
            m.track_running_stats = t
        for m, t in modes:
            m.training = t


# ---- the common batches and paths ----------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ScoringSet:
    """The ``R`` batches ``(x, y)`` and ``R`` paths (architectures sampled uniformly inside ``sub``)
    every criterion uses for every edge of ``sub``: batch ``r`` is paired with path ``r``."""

    sub: SubSupernet
    batches: tuple[tuple[Tensor, Tensor], ...]
    paths: tuple[tuple[int, ...], ...]
    seed: int
    batch_size: int

    def __post_init__(self) -> None:
        if len(self.batches) != len(self.paths):
            raise ValueError(f"ScoringSet: {len(self.batches)} batches but {len(self.paths)} paths")
        if not self.batches:
            raise ValueError("ScoringSet: needs at least one batch")
        for p in self.paths:
            if not self.sub.contains(p):
                raise ValueError(f"ScoringSet: path {p} is outside the sub-supernet {self.sub}")

    def __len__(self) -> int:
        return len(self.batches)

    def to(self, device: torch.device | str) -> ScoringSet:
        bs = tuple((x.to(device), y.to(device)) for x, y in self.batches)
        return ScoringSet(self.sub, bs, self.paths, self.seed, self.batch_size)

    def describe(self) -> dict[str, Any]:
        """JSON summary (for reports): sizes, seed, a digest of the data and the paths."""
        h = hashlib.sha256()
        for x, y in self.batches:
            h.update(x.detach().cpu().numpy().tobytes())
            h.update(y.detach().cpu().numpy().tobytes())
        return {"batches": len(self), "batch_size": self.batch_size, "seed": self.seed,
                "data_sha": h.hexdigest()[:16], "paths": [list(p) for p in self.paths]}


def _dataset_of(data: Any) -> Any:
    """The Dataset behind DataSplits / DataLoaders / TensorLoader / Dataset, or None for other iterables."""
    if isinstance(data, DataSplits):
        return data.train
    if isinstance(data, DataLoaders):
        return data.train.dataset
    if isinstance(data, TensorLoader):
        return data.dataset
    if isinstance(data, Dataset):
        return data
    return None


def scoring_set(
    sub: SubSupernet,
    data: Any,
    batches: int,
    *,
    batch_size: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> ScoringSet:
    """The ScoringSet of ``sub``: ``batches`` full batches of ``batch_size`` samples and as many paths.

    ``data``: a ``DataSplits`` (its train split), ``DataLoaders`` (train), ``TensorLoader`` or
    ``Dataset``: the batches are drawn by a ``TensorLoader`` shuffled with a seed derived from ``seed``
    (dropping the last partial batch, continuing into further epochs if needed), so they are a pure
    function of ``(data, batch_size, seed)``. Any other iterable of ``(x, y)`` batches: its first
    ``batches`` batches (``batch_size`` ignored). Paths: ``sub.sample`` on a generator seeded from ``seed``.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches: expected an int >= 1, got {batches!r}")
    ds = _dataset_of(data)
    out: list[tuple[Tensor, Tensor]] = []
    if ds is not None:
        if batch_size is None:
            batch_size = getattr(data, "batch_size", None) or 64
        if batch_size > len(ds):
            raise ValueError(f"batch_size: {batch_size} is larger than the data set ({len(ds)} samples)")
        loader = TensorLoader(ds, batch_size, shuffle=True, seed=derive_seed("lidsplit.split.scoring", seed),
                              drop_last=True)
        epoch = 0
        while len(out) < batches:
            for b in loader.iter_epoch(epoch):
                out.append(b)
                if len(out) == batches:
                    break
            epoch += 1
    else:
        if isinstance(data, (str, bytes)) or not isinstance(data, Iterable):
            raise TypeError(f"data: expected DataSplits / DataLoaders / TensorLoader / Dataset or an iterable of "
                            f"(x, y) batches, got {type(data).__name__}")
        for b in data:
            x, y = (b["x"], b["y"]) if isinstance(b, Mapping) else (b[0], b[1])
            out.append((x, y))
            if len(out) == batches:
                break
        if len(out) < batches:
            raise ValueError(f"data: yielded {len(out)} batches, {batches} needed")
        batch_size = int(out[0][0].shape[0])
    if device is not None:
        out = [(x.to(device), y.to(device)) for x, y in out]
    g = torch.Generator().manual_seed(derive_seed("lidsplit.split.paths", seed))
    paths = tuple(sub.sample(g) for _ in range(batches))
    return ScoringSet(sub, tuple(out), paths, int(seed), int(batch_size))


# ---- results -------------------------------------------------------------------------------------


@dataclass
class EdgeScore:
    """A criterion's verdict on one edge: ``similarity[i, j]`` between the one-op sub-supernets of
    ``ops[i]`` and ``ops[j]`` (float64, symmetric; diagonal as the formula gives it, ignored by the
    partition). ``measurements``: per-op means over the used batches (e.g. ``lid`` ``(n, L)``,
    ``grad_norm`` ``(n,)``, proxy ``values`` ``(n,)``). ``batches``: batches averaged; ``skipped``:
    uninformative / degenerate batches left out (``notes`` says why); ``seconds``: wall time;
    ``timings``: a breakdown (criterion specific)."""

    criterion: str
    edge: int
    label: str
    ops: tuple[int, ...]
    op_names: tuple[str, ...]
    similarity: np.ndarray
    batches: int
    skipped: int = 0
    informative: bool = True
    measurements: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.ops)

    def to_json(self, *, timings: bool = False) -> dict[str, Any]:
        """JSON values (deterministic unless ``timings``: wall times are left out by default)."""
        d = {
            "criterion": self.criterion, "edge": self.edge, "label": self.label, "ops": list(self.ops),
            "op_names": list(self.op_names), "similarity": self.similarity.tolist(), "batches": self.batches,
            "skipped": self.skipped, "informative": self.informative,
            "measurements": {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in self.measurements.items()},
            "notes": list(self.notes),
        }
        if timings:
            d["seconds"] = self.seconds
            d["timings"] = dict(self.timings)
        return d


class _EdgeInputWatch:
    """Forward pre-hooks on every ``Choice`` module: whether, during the forwards of one batch, every input
    that edge ``label`` received was zero up to rounding (at most ``_DEAD_TOL`` times the largest input of
    any edge; a node that sums ``none`` outputs and BatchNorms of zeros holds ~1e-7, not exactly 0)."""

    def __init__(self, model: nn.Module, label: str) -> None:
        self.label = label
        self.modules = [m for group in choices(model).values() for m in group]
        self.amax: dict[bool, list[Tensor]] = {True: [], False: []}
        self.handles: list[Any] = []

    def _hook(self, module: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs and isinstance(inputs[0], Tensor) and inputs[0].numel():
            self.amax[module.label == self.label].append(inputs[0].detach().abs().amax().float())

    def __enter__(self) -> _EdgeInputWatch:
        self.amax = {True: [], False: []}
        self.handles = [m.register_forward_pre_hook(self._hook) for m in self.modules]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def dead(self) -> bool:
        if not self.amax[True]:
            return False
        edge = torch.stack(self.amax[True]).max()
        every = torch.stack(self.amax[True] + self.amax[False]).max()
        return bool(edge <= _DEAD_TOL * every) and bool(every > 0)


def _identical(values: np.ndarray) -> bool:
    """Whether the n rows of ``values`` are equal within the relative tolerance."""
    v = np.asarray(values, dtype=np.float64).reshape(values.shape[0], -1)
    scale = max(1e-300, float(np.abs(v).max()))
    return bool(np.abs(v - v[0:1]).max() <= _REL_TOL * scale) if v.size else True


# ---- base class ----------------------------------------------------------------------------------


@dataclass
class _Batch:
    """One batch's measurement: similarity (None: no measurement possible), measurements, informative, notes."""

    sim: np.ndarray | None
    meas: dict[str, np.ndarray]
    ok: bool
    notes: list[str]



class Criterion:
    """Base of the criteria. Subclasses set ``name``, ``rule`` (default edge-selection rule of
    :func:`lidsplit.split.selection.select_edge`), ``balanced`` (default partition constraint),
    ``default_batches`` / ``default_batch_size`` (the ScoringSet a split run builds for them) and
    implement :meth:`_measure` (one batch) or override :meth:`score_edge`."""

    name: str = "criterion"
    rule: str = "max_intra"
    balanced: bool = True
    default_batches: int = 1
    default_batch_size: int = 64
    exhaustive: bool = False
    needs_model: bool = True
    skip_uninformative: bool = True
    #: raised when no batch of an edge gave a measurement (a proxy raises its DegenerateProxyError)
    degenerate_error: type[Exception] = ValueError

    def __init__(self, **options: Any) -> None:
        if options:
            raise TypeError(f"{self.name} takes no options, got {sorted(options)}")

    # -- identity --
    def config(self) -> dict[str, Any]:
        """The criterion's name and options as JSON values (a split run's identity includes it)."""
        return {"name": self.name}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({opts})"

    # -- scoring --
    def score_edges(
        self, model: nn.Module | None, scoring: ScoringSet, edges: Sequence[int | str] | None = None,
        *, progress: bool = False,
    ) -> dict[int, EdgeScore]:
        """Score each of ``edges`` (default: every edge of ``scoring.sub`` with >= 2 enabled ops) on the
        same ScoringSet; ``{edge index: EdgeScore}`` in edge order."""
        space = scoring.sub.space
        es = scoring.sub.splittable_edges() if edges is None else tuple(space.edge_index(e) for e in edges)
        bar = progress_bar(es, enabled=progress, desc=f"{self.name}: edges", total=len(es))
        out = {}
        for e in bar:
            out[e] = self.score_edge(model, scoring, e)
        return out

    def score_edge(self, model: nn.Module | None, scoring: ScoringSet, edge: int | str) -> EdgeScore:
        """The EdgeScore of one edge: :meth:`_measure` on every batch of ``scoring``, similarity matrices
        of the informative batches averaged (module docstring)."""
        space = scoring.sub.space
        e, ops = self._check_edge(model, scoring, edge)
        label = space.edges[e].label
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        batches = self._measure_batches(model, scoring, e, ops, timings)
        used = [b for b in batches if b.sim is not None and (b.ok or not self.skip_uninformative)]
        informative = bool(used)
        if not used:
            used = [b for b in batches if b.sim is not None]
            if not used:
                raise self.degenerate_error(f"{self.name}: no batch gave a measurement on edge {label!r}: "
                                            + "; ".join(n for b in batches for n in b.notes))
        s = np.mean(np.stack([b.sim for b in used]), axis=0)
        s = (s + s.T) / 2.0
        if not np.isfinite(s).all():
            raise FloatingPointError(f"{self.name}: non-finite similarity on edge {label!r}: {s}")
        measurements = {k: np.mean(np.stack([b.meas[k] for b in used]), axis=0) for k in used[0].meas}
        return EdgeScore(
            criterion=self.name, edge=e, label=label, ops=ops, op_names=tuple(space.edges[e].ops[i] for i in ops),
            similarity=s, batches=len(used), skipped=len(scoring) - len(used), informative=informative,
            measurements=measurements, seconds=time.perf_counter() - t0, timings=timings,
            notes=[n for b in batches for n in b.notes],
        )

    def _check_edge(self, model: nn.Module | None, scoring: ScoringSet, edge: int | str) -> tuple[int, tuple[int, ...]]:
        """The edge's index and enabled ops; errors for a single-op edge or a missing / foreign model."""
        sub = scoring.sub
        space = sub.space
        e = space.edge_index(edge)
        ops = sub.enabled(e)
        if len(ops) < 2:
            raise ValueError(f"{self.name}: edge {space.edges[e].label!r} has a single enabled op in {sub}; "
                             "nothing to compare")
        if self.needs_model:
            if model is None:
                raise ValueError(f"{self.name}: needs the supernet model")
            if search_space(model) != space:
                raise ValueError(f"{self.name}: the model's search space differs from the ScoringSet's")
        return e, ops

    def _measure_batches(self, model: nn.Module | None, scoring: ScoringSet, e: int, ops: tuple[int, ...],
                         timings: dict[str, float]) -> list[_Batch]:
        """:meth:`_measure` on every batch, in characterisation mode, each under the dead-edge watch."""
        label = scoring.sub.space.edges[e].label
        ctx: AbstractContextManager[Any] = characterisation_mode(model) if model is not None else nullcontext()
        watch = _EdgeInputWatch(model, label) if model is not None else None
        out: list[_Batch] = []
        with ctx:
            for r, (x, y) in enumerate(scoring.batches):
                with watch if watch is not None else nullcontext():
                    sim, m, ok, note = self._measure(model, scoring, e, ops, r, x, y, timings)
                if watch is not None and ok and watch.dead():
                    ok = False
                    note = "the edge's input is zero on this path (dead edge)" + ("; " + note if note else "")
                out.append(_Batch(sim, m, ok, [f"batch {r}: {note}"] if note else []))
        return out

    def _measure(
        self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int, x: Tensor,
        y: Tensor, timings: dict[str, float],
    ) -> Measurement:
        """One batch: ``(similarity (n, n), measurements, informative, note)``; similarity None = no
        measurement possible on this batch (degenerate; skipped with the note)."""
        raise NotImplementedError



def _add_time(timings: dict[str, float], key: str, t0: float) -> float:
    t = time.perf_counter()
    timings[key] = timings.get(key, 0.0) + (t - t0)
    return t


def _check_others(others: str, arch_weights: Any) -> str:
    if others not in OTHERS:
        raise ValueError(f"others: expected one of {OTHERS}, got {others!r}")
    if others == "weighted" and arch_weights is None:
        raise ValueError("others='weighted' needs arch_weights (a mapping label -> (n,) tensor, or (E, n) tensor)")
    return others


def _variant_subs(scoring: ScoringSet, edge: int, ops: Sequence[int], r: int, others: str,
                  base: SubSupernet | None = None) -> list[SubSupernet]:
    """The n one-op sub-supernets of ``edge`` for batch ``r``: the other edges on path ``r``
    (``others="path"``) or as in ``base`` (default the ScoringSet's sub-supernet)."""
    if others == "path":
        path = list(scoring.paths[r])
        space = scoring.sub.space
        out = []
        for i in ops:
            path[edge] = i
            out.append(SubSupernet.from_arch(space, path))
        return out
    base = scoring.sub if base is None else base
    return [base.restrict(edge, [i]) for i in ops]


def _mode(model: nn.Module, sub: SubSupernet, others: str, arch_weights: Any):
    """The forward mode of one variant sub-supernet."""
    if others == "path" and sub.size == 1:
        return use_path(model, tuple(next(iter(m)) for m in sub.masks))
    if others == "weighted":
        return use_weighted(model, arch_weights, softmax=True, sub=sub)
    return use_sum(model, sub)


def _weights_digest(w: Any) -> str | None:
    if w is None:
        return None
    h = hashlib.sha256()
    items = sorted(w.items()) if isinstance(w, Mapping) else [("", w)]
    for k, v in items:
        h.update(str(k).encode())
        h.update(torch.as_tensor(v).detach().cpu().double().numpy().tobytes())
    return h.hexdigest()[:16]

