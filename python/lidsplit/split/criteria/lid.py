"""NAS-LID's criterion: the LID profile (``lidsplit.ops.lid_profile`` over the outputs of
``model.feature_layers()``) of each one-op variant on the same batch, and the similarity of two profiles:
``inverse`` ``1/(||a-b|| + eps)`` (the paper, default), ``inverse_plus_one`` ``1/(||a-b|| + 1 + 1e-6)``
(the authors' code, "mse"), ``cosine`` (the authors' code default) or ``pearson`` (the paper's Table 5).

Forward only, under ``no_grad``; the n profiles of a batch go to one batched ``lid_profile`` call.
``grouped=True`` runs the n variants in one forward (``use_grouped``: the batch repeated n times, one
group per variant). :func:`lid_profiles` and :func:`feature_outputs` are also what the report uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lidsplit.ops import lid_profile
from lidsplit.ops.lid import ESTIMATORS
from lidsplit.split.criteria.base import Criterion, Measurement, ScoringSet
from lidsplit.split.criteria.base import _add_time, _check_others, _identical, _mode, _variant_subs, _weights_digest
from lidsplit.split.criteria.registry import register_criterion
from lidsplit.supernet import SubSupernet, record_outputs, use_grouped

__all__ = ["LIDCriterion", "SIMILARITIES", "lid_profiles", "lid_similarity", "feature_outputs"]

SIMILARITIES = ("inverse", "inverse_plus_one", "cosine", "pearson")


def lid_profiles(features: Sequence[Sequence[Tensor]], k: int = 20, estimator: str = "mle") -> tuple[np.ndarray, int]:
    """LID profiles ``(P, L)`` (float64 numpy) of P lists of L layer outputs, by one batched
    ``lidsplit.ops.lid_profile`` call, and the number of degenerate matrices. A matrix with no valid row
    (all samples equal, e.g. a cell whose inputs are all ``none``: a point has dimension 0) gets LID 0;
    those are found by retrying matrix by matrix only when the batched call refuses."""
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



@register_criterion("lid", aliases=("nas_lid", "nas-lid"))
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

    def _measure(self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int, x: Tensor,
                 y: Tensor, timings: dict[str, float]) -> Measurement:
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

