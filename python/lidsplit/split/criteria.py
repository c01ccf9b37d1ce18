"""Split criteria: for one edge of one sub-supernet, an ``n x n`` similarity matrix of its ``n`` one-op
sub-supernets (plus what was measured, for reports).

Criteria (built by name with :func:`make_criterion`, or directly):

- ``lid`` (:class:`LIDCriterion`, NAS-LID): the LID profile (``lidsplit.ops.lid_profile`` over the
  outputs of ``model.feature_layers()``) of each one-op variant on the same batch; similarity of two
  profiles ``inverse`` ``1/(||a-b|| + eps)`` (the paper, default), ``inverse_plus_one``
  ``1/(||a-b|| + 1 + 1e-6)`` (the authors' code, "mse"), ``cosine`` (the authors' code default) or
  ``pearson`` (the paper's Table 5). Forward only, under ``no_grad``; the n profiles of a batch go to
  one batched ``lid_profile`` call. ``grouped=True`` runs the n variants in one forward
  (``use_grouped``: the batch repeated n times, one group per variant).
- ``gm`` (:class:`GMCriterion`, GM-NAS): cosine similarity of the gradients of the loss w.r.t. the
  shared weights (default ``shared_parameters(model, label)``: every parameter of the other edges in
  every cell plus the reduction blocks; stem, final BN and classifier excluded) when each op is enabled
  alone. The n gradients stay lists of per-parameter tensors: one ``lidsplit.ops.gradient_gram`` call
  (the kernel behind ``gradient_cosine``) gives the Gram matrix, normalised here with
  ``gradient_cosine``'s conventions (zero vector: cosine 0; diagonal 1), so the gradient norms are
  reported too.
- zero-cost proxies (:class:`ProxyCriterion`: ``gradnorm``, ``snip``, ``grasp``, ``synflow``,
  ``jacob_cov``, ``ntk``, ``linear_regions``; functions of :mod:`lidsplit.split.proxies`): a scalar
  ``m_i`` per one-op sub-supernet; ``S_ij = -|m_i - m_j|`` after normalising against the whole
  sub-supernet, ``(m_i - m_ref) / |m_ref|`` (gradnorm: not normalised), as the zero-cost-proxy paper.
  The model a proxy sees is the supernet in ``sum`` mode restricted to the one-op sub-supernet
  (``use_sum(model, sub.restrict(edge, [op]))``; the reference: ``use_sum(model, sub)``). The paper
  (001) evaluates "temporary models" of the sub-supernet with the op changed on the target edge; it
  defines its gradient-matching model with the op *disabled* (``variant="disable"``: the edge keeps
  every op but ``op``) and does not say how the other edges are run; the sum over their enabled ops is
  the sub-supernet itself, without sampling noise (``others="path"``: a sampled single path instead).
- ``exhaustive`` (:class:`ExhaustiveCriterion`, few-shot NAS): no measurement; the chosen edge is split
  into one group per op whatever the branching factor.
- ``random`` (:class:`RandomCriterion`): a seeded random symmetric similarity matrix (hence a seeded
  random partition).

The other edges (``others``): ``"path"`` (default of ``lid`` and ``gm``, the authors' codes): per batch
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
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from lidsplit.data.core import TensorLoader, derive_seed
from lidsplit.split import proxies as _proxies
from lidsplit.supernet import (
    SubSupernet,
    choices,
    record_outputs,
    search_space,
    shared_parameters,
    use_grouped,
    use_path,
    use_sum,
    use_weighted,
)

__all__ = [
    "ScoringSet",
    "scoring_set",
    "EdgeScore",
    "Criterion",
    "LIDCriterion",
    "GMCriterion",
    "ProxyCriterion",
    "ExhaustiveCriterion",
    "RandomCriterion",
    "CRITERIA",
    "SIMILARITIES",
    "OTHERS",
    "make_criterion",
    "characterisation_mode",
    "lid_similarity",
    "lid_profiles",
    "feature_outputs",
]

SIMILARITIES = ("inverse", "inverse_plus_one", "cosine", "pearson")
OTHERS = ("path", "sum", "weighted")
_ALIASES = {
    "nas_lid": "lid",
    "nas-lid": "lid",
    "gradient_matching": "gm",
    "gm_nas": "gm",
    "gm-nas": "gm",
    "lr": "linear_regions",
    "jacobcov": "jacob_cov",
    "few_shot": "exhaustive",
    "fewshot": "exhaustive",
}
_REL_TOL = 1e-6
_DEAD_TOL = 1e-5


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
    from lidsplit.data.core import DataLoaders, DataSplits, Dataset

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
        from lidsplit.train._util import progress_bar

        bar = progress_bar(es, enabled=progress, desc=f"{self.name}: edges", total=len(es))
        out = {}
        for e in bar:
            out[e] = self.score_edge(model, scoring, e)
        return out

    def score_edge(self, model: nn.Module | None, scoring: ScoringSet, edge: int | str) -> EdgeScore:
        """The EdgeScore of one edge: :meth:`_measure` on every batch of ``scoring``, similarity matrices
        of the informative batches averaged (module docstring)."""
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
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        sims: list[np.ndarray] = []
        meas: list[dict[str, np.ndarray]] = []
        all_sims: list[np.ndarray] = []
        all_meas: list[dict[str, np.ndarray]] = []
        notes: list[str] = []
        ctx = characterisation_mode(model) if model is not None else nullcontext()
        watch = _EdgeInputWatch(model, space.edges[e].label) if model is not None else None
        with ctx:
            for r, (x, y) in enumerate(scoring.batches):
                with watch if watch is not None else nullcontext():
                    sim, m, ok, note = self._measure(model, scoring, e, ops, r, x, y, timings)
                if watch is not None and ok and watch.dead():
                    ok = False
                    note = "the edge's input is zero on this path (dead edge)" + ("; " + note if note else "")
                if note:
                    notes.append(f"batch {r}: {note}")
                if sim is not None:
                    all_sims.append(sim)
                    all_meas.append(m)
                if sim is None or (not ok and self.skip_uninformative):
                    continue
                sims.append(sim)
                meas.append(m)
        informative = bool(sims)
        if not sims:
            if not all_sims:
                err = _proxies.DegenerateProxyError if isinstance(self, ProxyCriterion) else ValueError
                raise err(
                    f"{self.name}: no batch gave a measurement on edge {space.edges[e].label!r}: " + "; ".join(notes))
            sims, meas = all_sims, all_meas
        s = np.mean(np.stack(sims), axis=0)
        s = (s + s.T) / 2.0
        if not np.isfinite(s).all():
            raise FloatingPointError(f"{self.name}: non-finite similarity on edge {space.edges[e].label!r}: {s}")
        measurements = {k: np.mean(np.stack([m[k] for m in meas]), axis=0) for k in (meas[0] if meas else {})}
        return EdgeScore(
            criterion=self.name, edge=e, label=space.edges[e].label, ops=ops,
            op_names=tuple(space.edges[e].ops[i] for i in ops), similarity=s, batches=len(sims),
            skipped=len(scoring) - len(sims), informative=informative,
            measurements=measurements, seconds=time.perf_counter() - t0, timings=timings, notes=notes,
        )

    def _measure(
        self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int, x: Tensor,
        y: Tensor, timings: dict[str, float],
    ) -> tuple[np.ndarray | None, dict[str, np.ndarray], bool, str]:
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


def _logits(out: Any) -> Tensor:
    from lidsplit.train._util import logits_of

    return logits_of(out)


# ---- LID -----------------------------------------------------------------------------------------


def lid_profiles(features: Sequence[Sequence[Tensor]], k: int = 20, estimator: str = "mle") -> tuple[np.ndarray, int]:
    """LID profiles ``(P, L)`` (float64 numpy) of P lists of L layer outputs, by one batched
    ``lidsplit.ops.lid_profile`` call, and the number of degenerate matrices. A matrix with no valid row
    (all samples equal, e.g. a cell whose inputs are all ``none``: a point has dimension 0) gets LID 0;
    those are found by retrying matrix by matrix only when the batched call refuses."""
    from lidsplit.ops import lid_profile
    from lidsplit.ops.lid import ESTIMATORS

    if estimator not in ESTIMATORS:  # checked here: the fallback below reads a ValueError as a degenerate matrix
        raise ValueError(f"lid: unknown estimator {estimator!r}; expected one of {', '.join(map(repr, ESTIMATORS))}")
    feats = [[f.contiguous() for f in group] for group in features]
    b = int(feats[0][0].shape[0])
    if b <= k:
        raise ValueError(f"lid: batch of {b} samples needs to exceed k = {k} neighbours; use a larger batch_size "
                         "or a smaller k")

    def call(fs: Sequence[Sequence[Tensor]]) -> Tensor:
        return lid_profile([list(g) for g in fs], k=k, estimator=estimator)

    try:
        return call(feats).detach().double().cpu().numpy(), 0
    except ValueError:
        pass
    out = np.zeros((len(feats), len(feats[0])), dtype=np.float64)
    bad = 0
    for p, group in enumerate(feats):
        for i, f in enumerate(group):
            try:
                out[p, i] = float(call([[f]])[0, 0])
            except ValueError:
                bad += 1
    return out, bad


def feature_outputs(rec: Sequence[Any], num_layers: int, who: str) -> list[Tensor]:
    """The tensors ``record_outputs`` caught for ``num_layers`` feature layers in one forward (a layer
    returning a tuple gives its first element); ``who`` prefixes the errors."""
    outs = []
    for o in rec:
        if isinstance(o, (tuple, list)) and o:
            o = o[0]
        if not isinstance(o, Tensor):
            raise TypeError(f"{who}: a feature layer returned {type(o).__name__}, expected a tensor")
        outs.append(o)
    if len(outs) != num_layers:
        raise RuntimeError(f"{who}: recorded {len(outs)} outputs for {num_layers} feature layers (a feature layer "
                           "must run exactly once per forward)")
    return outs


def lid_similarity(profiles: np.ndarray | Tensor, kind: str = "inverse", eps: float = 1e-6) -> np.ndarray:
    """``(n, n)`` similarity of n LID profiles ``(n, L)`` (module docstring for the kinds). ``cosine`` and
    ``pearson`` of a zero / constant profile with another are 0 (1 on the diagonal)."""
    a = np.asarray(profiles.detach().cpu() if isinstance(profiles, Tensor) else profiles, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"profiles: expected (n, L), got shape {a.shape}")
    if kind in ("inverse", "inverse_plus_one"):
        d = np.sqrt(np.maximum(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1), 0.0))
        return 1.0 / (d + eps) if kind == "inverse" else 1.0 / (d + 1.0 + 1e-6)
    if kind in ("cosine", "pearson"):
        v = a - a.mean(1, keepdims=True) if kind == "pearson" else a
        norm = np.linalg.norm(v, axis=1)
        scale = max(1e-300, float(np.abs(a).max()))
        ok = norm > 1e-12 * scale * math.sqrt(a.shape[1])
        u = np.where(ok[:, None], v / np.where(ok, norm, 1.0)[:, None], 0.0)
        s = np.clip(u @ u.T, -1.0, 1.0)
        np.fill_diagonal(s, 1.0)
        return s
    raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {kind!r}")


class LIDCriterion(Criterion):
    """NAS-LID (module docstring). ``k``: neighbours (20); ``similarity``: ``inverse`` | ``inverse_plus_one``
    | ``cosine`` | ``pearson``; ``eps`` of ``inverse`` (1e-6); ``others``: ``path`` | ``sum`` |
    ``weighted``; ``grouped``: the n variants in one forward (``use_grouped``; not with ``weighted``);
    ``batched``: keep the n variants' layer outputs and profile them in one ``lid_profile`` call
    (default False: each variant is profiled right after its forward, so only one variant's outputs are
    alive; the measured speed difference is small, the memory difference n-fold, see
    benchmarks/bench_criteria.py); ``grouped`` always profiles the n groups in one call;
    ``estimator``: of ``lid_profile`` (``mle`` | ``levina_bickel`` | ``official``); ``layers``: a callable
    ``model -> modules`` (default ``model.feature_layers()``). Default 50 batches of 128 (the authors')."""

    name = "lid"
    rule = "max_intra"
    balanced = True
    default_batches = 50
    default_batch_size = 128

    def __init__(
        self, *, k: int = 20, similarity: str = "inverse", others: str = "path", grouped: bool = False,
        batched: bool = False, estimator: str = "mle", eps: float = 1e-6, arch_weights: Any = None,
        layers: Callable[[nn.Module], Sequence[nn.Module]] | None = None, skip_uninformative: bool = True,
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k: expected an int >= 1, got {k!r}")
        if similarity not in SIMILARITIES:
            raise ValueError(f"similarity: expected one of {SIMILARITIES}, got {similarity!r}")
        if not eps > 0:
            raise ValueError(f"eps: must be > 0, got {eps}")
        self.others = _check_others(others, arch_weights)
        if grouped and others == "weighted":
            raise ValueError("grouped=True runs 0/1 masks only (use_grouped); it cannot run others='weighted'")
        self.k, self.similarity, self.grouped, self.estimator, self.eps = k, similarity, bool(grouped), estimator, eps
        self.batched = bool(batched)
        self.arch_weights, self.layers, self.skip_uninformative = arch_weights, layers, bool(skip_uninformative)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "similarity": self.similarity, "others": self.others,
                "grouped": self.grouped, "batched": self.batched, "estimator": self.estimator, "eps": self.eps,
                "arch_weights": _weights_digest(self.arch_weights),
                "layers": None if self.layers is None else getattr(self.layers, "__qualname__", repr(self.layers)),
                "skip_uninformative": self.skip_uninformative}

    def _layers(self, model: nn.Module) -> list[nn.Module]:
        if self.layers is not None:
            mods = list(self.layers(model))
        elif callable(getattr(model, "feature_layers", None)):
            mods = list(model.feature_layers())
        else:
            raise TypeError(f"lid: {type(model).__name__} has no feature_layers(); pass layers=callable(model)")
        if not mods:
            raise ValueError("lid: no feature layers to characterise")
        return mods

    def features(self, model: nn.Module, subs: Sequence[SubSupernet], x: Tensor) -> Iterator[list[list[Tensor]]]:
        """The feature-layer outputs of the variant sub-supernets on ``x`` (no grad), as chunks of lists of
        L tensors: one chunk of n (grouped or ``batched``) or n chunks of one (one variant at a time)."""
        layers = self._layers(model)
        n, b = len(subs), x.shape[0]
        if self.grouped:
            with torch.no_grad(), use_grouped(model, subs), record_outputs(layers) as rec:
                model(x.repeat(n, *([1] * (x.dim() - 1))))
            outs = feature_outputs(rec, len(layers), "lid")
            yield [[o[g * b:(g + 1) * b] for o in outs] for g in range(n)]
            return
        feats = []
        for s in subs:
            with torch.no_grad(), _mode(model, s, self.others, self.arch_weights), record_outputs(layers) as rec:
                model(x)
            feats.append(feature_outputs(rec, len(layers), "lid"))
            if not self.batched:
                yield feats
                feats = []
        if feats:
            yield feats

    def _measure(self, model, scoring, edge, ops, r, x, y, timings):
        t = time.perf_counter()
        subs = _variant_subs(scoring, edge, ops, r, self.others)
        profs, bad = [], 0
        for feats in self.features(model, subs, x):
            t = _add_time(timings, "forward", t)
            p, nb = lid_profiles(feats, self.k, self.estimator)
            del feats
            profs.append(p)
            bad += nb
            t = _add_time(timings, "lid", t)
        prof = np.concatenate(profs, axis=0)
        sim = lid_similarity(prof, self.similarity, self.eps)
        ok = not _identical(prof)
        note = "" if ok else "identical LID profiles (the edge is dead on this path)"
        if bad:
            note = (note + "; " if note else "") + f"{bad} degenerate layer output(s) given LID 0"
        return sim, {"lid": prof}, ok, note


# ---- gradient matching ---------------------------------------------------------------------------


class GMCriterion(Criterion):
    """GM-NAS (module docstring). ``params``: ``"shared"`` (default: ``shared_parameters(model, label)``),
    ``"all"`` (every parameter outside the edge's ops) or a callable ``(model, label) -> parameters``;
    ``others``: ``path`` | ``sum`` | ``weighted``; ``objective``: ``"loss"`` (``loss_fn(logits, y)``,
    GM-NAS) or ``"logits_sum"`` (the zero-cost-proxy code's gradient matching). Default 100 batches of
    64 (GM-NAS' code)."""

    name = "gm"
    rule = "min_cut"
    balanced = True
    default_batches = 100
    default_batch_size = 64

    def __init__(
        self, *, params: str | Callable[[nn.Module, str], Sequence[nn.Parameter]] = "shared", others: str = "path",
        objective: str = "loss", loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        arch_weights: Any = None, skip_uninformative: bool = True,
    ) -> None:
        if not (callable(params) or params in ("shared", "all")):
            raise ValueError(f"params: expected 'shared', 'all' or a callable, got {params!r}")
        if objective not in ("loss", "logits_sum"):
            raise ValueError(f"objective: expected 'loss' or 'logits_sum', got {objective!r}")
        self.others = _check_others(others, arch_weights)
        self.params, self.objective, self.loss_fn = params, objective, loss_fn
        self.arch_weights, self.skip_uninformative = arch_weights, bool(skip_uninformative)

    def config(self) -> dict[str, Any]:
        p = self.params if isinstance(self.params, str) else getattr(self.params, "__qualname__", repr(self.params))
        return {"name": self.name, "params": p, "others": self.others, "objective": self.objective,
                "loss_fn": getattr(self.loss_fn, "__name__", repr(self.loss_fn)),
                "arch_weights": _weights_digest(self.arch_weights), "skip_uninformative": self.skip_uninformative}

    def shared(self, model: nn.Module, label: str) -> list[nn.Parameter]:
        """The parameters whose gradients are matched when splitting edge ``label``."""
        from lidsplit.supernet import edge_parameters

        if self.params == "shared":
            ps = shared_parameters(model, label)
        elif self.params == "all":
            ex = {id(p) for p in edge_parameters(model, label)}
            ps = [p for p in model.parameters() if id(p) not in ex]
        else:
            ps = list(self.params(model, label))
        ps = [p for p in ps if p.requires_grad]
        if not ps:
            raise ValueError(f"gm: no shared parameter (requiring grad) for edge {label!r}")
        return ps

    def gradients(self, model: nn.Module, subs: Sequence[SubSupernet], x: Tensor, y: Tensor,
                  params: Sequence[nn.Parameter]) -> list[list[Tensor | None]]:
        grads = []
        for s in subs:
            with torch.enable_grad(), _mode(model, s, self.others, self.arch_weights):
                logits = _logits(model(x))
                obj = self.loss_fn(logits, y) if self.objective == "loss" else logits.sum()
                grads.append(list(torch.autograd.grad(obj, list(params), allow_unused=True)))
        return grads

    def _measure(self, model, scoring, edge, ops, r, x, y, timings):
        from lidsplit.ops import gradient_gram

        t = time.perf_counter()
        label = scoring.sub.space.edges[edge].label
        params = self.shared(model, label)
        subs = _variant_subs(scoring, edge, ops, r, self.others)
        grads = self.gradients(model, subs, x, y, params)
        t = _add_time(timings, "forward_backward", t)
        gram = gradient_gram(grads).cpu().numpy()
        del grads
        _add_time(timings, "gram", t)
        d = np.sqrt(np.clip(np.diag(gram), 0.0, None))
        ok_v = d > 0
        inv = np.where(ok_v, 1.0 / np.where(ok_v, d, 1.0), 0.0)
        cos = np.clip(gram * inv[:, None] * inv[None, :], -1.0, 1.0)
        np.fill_diagonal(cos, np.where(ok_v, 1.0, 0.0))
        if not np.isfinite(cos).all():
            return None, {}, False, "non-finite gradients"
        # identical gradient vectors <=> equal norms and cosine 1 everywhere (or all zero)
        same = bool((d.max() - d.min()) <= _REL_TOL * max(d.max(), 1e-300) and (cos >= 1.0 - 1e-9).all()) or not ok_v.any()
        note = "" if not same else ("all gradients zero" if not ok_v.any() else "identical gradients (the edge is dead on this path)")
        return cos, {"grad_norm": d}, not same, note


# ---- zero-cost proxies ---------------------------------------------------------------------------


class ProxyCriterion(Criterion):
    """A zero-cost proxy (module docstring). ``proxy``: a name of :data:`lidsplit.split.proxies.PROXIES`;
    ``others``: ``sum`` (default) | ``path`` | ``weighted``; ``variant``: ``"enable"`` (the edge runs op i
    alone) or ``"disable"`` (every enabled op but i); ``normalise``: against the whole sub-supernet
    (default: every proxy but gradnorm, as the paper); ``options``: keyword arguments of the proxy
    (``linear_regions`` counts ``nn.ReLU`` and ``nn.ReLU6`` outputs unless ``activations`` is given).
    Default 1 batch of 64 (zero-cost); edges chosen at random (the paper) and unbalanced min-cut."""

    rule = "random"
    balanced = False
    default_batches = 1
    default_batch_size = 64

    def __init__(
        self, proxy: str, *, others: str = "sum", variant: str = "enable", normalise: bool | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, arch_weights: Any = None,
        options: Mapping[str, Any] | None = None, skip_uninformative: bool = True,
    ) -> None:
        if proxy not in _proxies.PROXIES:
            raise ValueError(f"proxy: unknown {proxy!r}; expected one of {sorted(_proxies.PROXIES)}")
        if variant not in ("enable", "disable"):
            raise ValueError(f"variant: expected 'enable' or 'disable', got {variant!r}")
        self.name = proxy
        self.others = _check_others(others, arch_weights)
        self.variant = variant
        self.normalise = (proxy != "gradnorm") if normalise is None else bool(normalise)
        self.loss_fn, self.arch_weights = loss_fn, arch_weights
        self.options = dict(options or {})
        if proxy == "linear_regions":  # MobileNet blocks use ReLU6: its kink at 0 is a region boundary too
            self.options.setdefault("activations", (nn.ReLU, nn.ReLU6))
        self.skip_uninformative = bool(skip_uninformative)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "others": self.others, "variant": self.variant, "normalise": self.normalise,
                "loss_fn": getattr(self.loss_fn, "__name__", repr(self.loss_fn)),
                "arch_weights": _weights_digest(self.arch_weights),
                "options": {k: (v if isinstance(v, (int, float, str, bool)) or v is None
                                else [getattr(a, "__name__", repr(a)) for a in v] if isinstance(v, tuple) else repr(v))
                            for k, v in sorted(self.options.items())},
                "skip_uninformative": self.skip_uninformative}

    def _value(self, model: nn.Module, sub: SubSupernet, x: Tensor, y: Tensor) -> float:
        with _mode(model, sub, "sum" if self.others == "path" else self.others, self.arch_weights):
            return _proxies.compute_proxy(self.name, model, x, y, self.loss_fn, **self.options)

    def _measure(self, model, scoring, edge, ops, r, x, y, timings):
        t = time.perf_counter()
        sub = scoring.sub
        if self.others == "path":  # the other edges on path r, the target edge as in the sub-supernet
            masks = [frozenset((a,)) for a in scoring.paths[r]]
            masks[edge] = sub.masks[edge]
            base = SubSupernet(sub.space, tuple(masks))
        else:
            base = sub
        if self.variant == "enable":
            subs = [base.restrict(edge, [i]) for i in ops]
        else:
            subs = [base.restrict(edge, [j for j in ops if j != i]) for i in ops]
        try:
            vals = np.array([self._value(model, s, x, y) for s in subs], dtype=np.float64)
            ref = self._value(model, base, x, y) if self.normalise else None
        except _proxies.DegenerateProxyError as err:
            _add_time(timings, "proxy", t)
            return None, {}, False, f"degenerate proxy: {err}"
        _add_time(timings, "proxy", t)
        m = vals
        note = ""
        if ref is not None:
            if math.isfinite(ref) and abs(ref) > 1e-300:
                m = (vals - ref) / abs(ref)
            else:
                note = f"reference {ref!r} is zero or non-finite: values not normalised"
        sim = -np.abs(m[:, None] - m[None, :])
        meas = {"values": vals, "normalised": m}
        if ref is not None:
            meas["reference"] = np.float64(ref)
        ok = not _identical(vals[:, None])
        if not ok:
            note = (note + "; " if note else "") + "identical proxy values"
        return sim, meas, ok, note


# ---- baselines -----------------------------------------------------------------------------------


class ExhaustiveCriterion(Criterion):
    """Few-shot NAS: no measurement (a zero similarity matrix); the split run splits the chosen edge into
    one group per op whatever the branching factor. Edge chosen in order (``rule="ordered"``: the first
    candidate) by default (a split run's ``rule="random"``: a seeded random edge)."""

    name = "exhaustive"
    rule = "ordered"
    balanced = True
    exhaustive = True
    needs_model = False
    default_batches = 1

    def score_edge(self, model, scoring, edge):
        sub = scoring.sub
        e = sub.space.edge_index(edge)
        ops = sub.enabled(e)
        return EdgeScore(self.name, e, sub.space.edges[e].label, ops, tuple(sub.space.edges[e].ops[i] for i in ops),
                         np.zeros((len(ops), len(ops))), batches=0)


class RandomCriterion(Criterion):
    """A seeded random similarity: ``U[0, 1)`` off-diagonal entries from a generator seeded by the
    ScoringSet's seed and the edge, so a partition is random but reproducible. Edges chosen at random."""

    name = "random"
    rule = "random"
    balanced = True
    needs_model = False
    default_batches = 1

    def score_edge(self, model, scoring, edge):
        sub = scoring.sub
        e = sub.space.edge_index(edge)
        ops = sub.enabled(e)
        rng = np.random.default_rng(derive_seed("lidsplit.split.random_criterion", scoring.seed, e))
        a = np.triu(rng.random((len(ops), len(ops))), 1)
        s = a + a.T
        np.fill_diagonal(s, 1.0)
        return EdgeScore(self.name, e, sub.space.edges[e].label, ops, tuple(sub.space.edges[e].ops[i] for i in ops),
                         s, batches=0)


# ---- registry ------------------------------------------------------------------------------------

CRITERIA: tuple[str, ...] = ("lid", "gm", *_proxies.PROXIES, "exhaustive", "random")


def make_criterion(criterion: str | Criterion, **options: Any) -> Criterion:
    """A criterion by name (``lid``, ``gm``, a proxy name, ``exhaustive``, ``random``; aliases such as
    ``gradient_matching``, ``lr``, ``jacobcov``) with its options, or a Criterion returned as is."""
    if isinstance(criterion, Criterion):
        if options:
            raise TypeError("make_criterion: options are for criteria given by name")
        return criterion
    if not isinstance(criterion, str):
        raise TypeError(f"criterion: expected a name or a Criterion, got {type(criterion).__name__}")
    key = criterion.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key == "lid":
        return LIDCriterion(**options)
    if key == "gm":
        return GMCriterion(**options)
    if key in _proxies.PROXIES:
        return ProxyCriterion(key, **options)
    if key == "exhaustive":
        if options:
            raise TypeError(f"exhaustive takes no options, got {sorted(options)}")
        return ExhaustiveCriterion()
    if key == "random":
        if options:
            raise TypeError(f"random takes no options, got {sorted(options)}")
        return RandomCriterion()
    raise ValueError(f"criterion: unknown {criterion!r}; expected one of {list(CRITERIA)}")
