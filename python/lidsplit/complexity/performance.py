"""Performance diversity: the spread of jacob_cov over a space, checked against trained accuracy (PDS).

The paper (search-space complexity framework, eq. 1) compares the standard deviation of the jacob_cov
score (Mellor et al., ``lidsplit.split.proxies.jacob_cov``) over the architectures of a space with the
standard deviation of their trained accuracy, Cohen's-d style::

    PDS = |SD_jacob_cov - SD_accuracy| / SD_pooled,    SD_pooled = (SD_jacob_cov + SD_accuracy) / 2

A low PDS means jacob_cov, computed without training, predicts the spread of performance well.

Common scale (the paper leaves it open). jacob_cov (a negative log-eigenvalue sum, ~-10^2, with
outliers of ~-10^5 when the correlation matrix is near singular) and accuracy (fraction or percent) have
unrelated units, so each score is put on a common scale over the sample *before* its standard
deviation is taken (``scale=``):

* ``"minmax"`` (default): ``(v - min) / (max - min)`` over the architectures of the sample, so both lie
  in [0, 1] and the SD measures how the values spread inside their range (0 .. 0.5). A constant score
  gives 0.
* ``"robust"``: the same with the 5th / 95th percentiles in place of min / max and values clipped to
  [0, 1], so a few extreme jacob_cov outliers do not squash the spread of the rest.
* ``"none"``: raw values; only meaningful when the two scores share a unit.

Rank normalisation and z-scoring are deliberately *not* offered: both fix the SD (ranks scaled to [0, 1]
have SD ~0.289 for any distribution without ties; z-scores have SD 1), so PDS would be ~0 whatever the
space. Standard deviations are population SDs (``ddof=0``); the PDS is a ratio, so the choice cancels.
If both SDs are 0 the PDS is 0 (the two agree exactly).

Protocol. jacob_cov is evaluated for each architecture of the population (``lidsplit.complexity.
sampling``) on the supernet *at initialisation*, one fixed batch, via ``use_path``, BatchNorm in train
mode (batch statistics, as Mellor et al.'s code); the model's parameters and buffers are not changed.
The PDS of each repeat is computed on its own sample; the result averages over repeats (the paper:
5 samples of 10,000 architectures for DARTS and ProxylessNAS, every architecture otherwise).

Degenerate architectures (jacob_cov undefined: the output does not depend on the input, e.g. an NB201
cell whose edges are all ``none``): ``degenerate="worst"`` (default) gives them the lowest jacob_cov of
the sample (they are untrainable, so "worst" is their honest rank); ``"drop"`` leaves them out of both
scores. Their number is reported either way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lidsplit.common.seeds import derive_seed
from lidsplit.data import DataSplits, load
from lidsplit.split.proxies import DegenerateProxyError, jacob_cov
from lidsplit.supernet import Arch, use_path

__all__ = [
    "SCALES",
    "DEGENERATE",
    "scale_scores",
    "population_sd",
    "pds",
    "pds_from_sd",
    "jacob_cov_scores",
    "evaluation_batch",
    "model_input_channels",
    "PerformanceDiversity",
]

SCALES: tuple[str, ...] = ("minmax", "robust", "none")
DEGENERATE: tuple[str, ...] = ("worst", "drop")
ROBUST_QUANTILES = (0.05, 0.95)


def _check_scale(scale: str) -> str:
    if scale in ("rank", "zscore"):
        raise ValueError(f"complexity: scale={scale!r} fixes the standard deviation (PDS would be ~0 for any "
                         f"space); use one of {list(SCALES)}")
    if scale not in SCALES:
        raise ValueError(f"complexity: unknown scale {scale!r}; choose from {list(SCALES)}")
    return scale


def scale_scores(values: Sequence[float] | np.ndarray, scale: str = "minmax") -> np.ndarray:
    """``values`` (finite) put on the common scale ``scale`` (see the module doc)."""
    _check_scale(scale)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"complexity: expected a 1-D array of scores, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("complexity: scores must be finite before scaling")
    if scale == "none" or v.size == 0:
        return v.copy()
    if scale == "minmax":
        lo, hi = float(v.min()), float(v.max())
    else:
        lo, hi = (float(q) for q in np.quantile(v, ROBUST_QUANTILES))
    if not hi > lo:
        return np.zeros_like(v)
    return np.clip((v - lo) / (hi - lo), 0.0, 1.0)


def population_sd(values: Sequence[float] | np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(v.std()) if v.size else math.nan


def pds_from_sd(sd_jacob_cov: float, sd_accuracy: float) -> float:
    """``|a - b| / ((a + b) / 2)`` for two standard deviations (0 when both are 0)."""
    a, b = float(sd_jacob_cov), float(sd_accuracy)
    if a < 0 or b < 0 or not (math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"complexity: standard deviations must be finite and >= 0, got {a}, {b}")
    pooled = (a + b) / 2.0
    return 0.0 if pooled == 0.0 else abs(a - b) / pooled


def pds(jacob_cov_values: Sequence[float] | np.ndarray, accuracy: Sequence[float] | np.ndarray,
        scale: str = "minmax") -> float:
    """PDS (eq. 1) of paired scores of the same architectures, each scaled by ``scale`` first."""
    j = np.asarray(jacob_cov_values, dtype=np.float64)
    a = np.asarray(accuracy, dtype=np.float64)
    if j.shape != a.shape or j.ndim != 1:
        raise ValueError(f"complexity: pds needs two 1-D arrays of the same length, got {j.shape} and {a.shape}")
    if j.size < 2:
        raise ValueError("complexity: pds needs at least 2 architectures")
    return pds_from_sd(population_sd(scale_scores(j, scale)), population_sd(scale_scores(a, scale)))


# ---- jacob_cov over architectures ---------------------------------------------------------------


def model_input_channels(model: nn.Module) -> int | None:
    """The channels of the images ``model`` takes: ``model.in_channels`` or ``model.input_shape[0]`` when
    the model declares them, else the ``in_channels`` of its first convolution (module order); None when
    neither tells (e.g. a token model)."""
    declared = getattr(model, "input_shape", None)
    if isinstance(declared, (tuple, list)) and declared and isinstance(declared[0], int):
        return int(declared[0])
    declared = getattr(model, "in_channels", None)
    if isinstance(declared, int) and not isinstance(declared, bool):
        return declared
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return int(m.in_channels)
    return None


def evaluation_batch(data: str | Tensor | DataSplits = "digits", batch_size: int = 32, seed: int = 0, *,
                     in_channels: int = 1, image_size: int = 8) -> Tensor:
    """The fixed batch jacob_cov is computed on: ``batch_size`` images drawn (seeded) from the train
    split of ``data`` (``"digits"``: 1x8x8, its channel repeated to ``in_channels``; ``"synthetic"``:
    ``in_channels`` x ``image_size``^2; a ``DataSplits``: the run's data, as it is), or the given tensor
    itself. jacob_cov needs ``batch_size`` below the input dimension (64 for digits) to avoid a singular
    correlation matrix; default 32."""
    if isinstance(data, Tensor):
        if data.dim() < 2 or data.shape[0] < 2:
            raise ValueError(f"complexity: the evaluation batch needs >= 2 samples, got shape {tuple(data.shape)}")
        return data
    if batch_size < 2:
        raise ValueError(f"complexity: batch_size must be >= 2 (jacob_cov correlates samples), got {batch_size}")
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"complexity: in_channels must be an int >= 1, got {in_channels!r}")
    if isinstance(data, DataSplits):
        splits, what = data, f"the {data.name or 'given'} data"
    elif data == "synthetic":
        splits = load("synthetic", n=max(256, 2 * batch_size), in_channels=in_channels, image_size=image_size, seed=seed)
        what = repr(data)
    else:
        splits, what = (load(data, seed=seed) if data == "digits" else load(data)), repr(data)
    x = splits.train.x
    if batch_size > x.shape[0]:
        raise ValueError(f"complexity: batch_size {batch_size} exceeds the {x.shape[0]} training images of {what}")
    g = torch.Generator().manual_seed(derive_seed("lidsplit.complexity", "batch", int(seed)))
    x = x[torch.randperm(x.shape[0], generator=g)[:batch_size]]
    if data == "digits" and in_channels != 1:  # grey digits for a colour model: the same image per channel
        x = x.expand(-1, in_channels, *x.shape[2:])
    return x.contiguous()


def jacob_cov_scores(model: nn.Module, archs: Sequence[Arch], x: Tensor, *, seed: int = 0,
                     cache: dict[Arch, float] | None = None) -> np.ndarray:
    """jacob_cov of each architecture (``use_path``) on batch ``x``, NaN where it is undefined. The model
    runs in train mode (batch statistics) and is left in its previous mode; ``cache`` maps archs already
    scored to their values (filled in)."""
    cache = {} if cache is None else cache
    out = np.empty(len(archs), dtype=np.float64)
    was_training = model.training
    model.train()
    try:
        for i, a in enumerate(archs):
            if a not in cache:
                try:
                    with use_path(model, a):
                        cache[a] = jacob_cov(model, x, seed=seed)
                except DegenerateProxyError:
                    cache[a] = math.nan
                except RuntimeError as e:
                    # no path from the input to the output at all (e.g. every NB201 edge into the output
                    # node is ``none``): autograd refuses the graph-less output; same meaning as above
                    if "does not require grad" not in str(e):
                        raise
                    cache[a] = math.nan
            out[i] = cache[a]
    finally:
        model.train(was_training)
    return out


# ---- result -------------------------------------------------------------------------------------


def _f(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


@dataclass
class PerformanceDiversity:
    """Result of the performance-diversity step (means over repeats; ``per_repeat`` keeps each).

    ``sd_jacob_cov`` / ``sd_accuracy``: SDs on the common ``scale``; ``raw_*``: SDs of the raw values.
    ``pds`` is None without an accuracy table (then ``note`` says so) or with fewer than 2 scored
    architectures; ``pds_std`` is the SD of the PDS over repeats (0 for a single repeat).
    """

    pds: float | None
    pds_std: float | None
    sd_jacob_cov: float | None
    sd_accuracy: float | None
    raw_sd_jacob_cov: float | None
    raw_sd_accuracy: float | None
    scale: str
    population: str
    n_archs: int
    repeats: int
    n_degenerate: int
    degenerate: str
    note: str | None = None
    per_repeat: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "pds": _f(self.pds),
            "pds_std": _f(self.pds_std),
            "sd_jacob_cov": _f(self.sd_jacob_cov),
            "sd_accuracy": _f(self.sd_accuracy),
            "raw_sd_jacob_cov": _f(self.raw_sd_jacob_cov),
            "raw_sd_accuracy": _f(self.raw_sd_accuracy),
            "scale": self.scale,
            "population": self.population,
            "n_archs": self.n_archs,
            "repeats": self.repeats,
            "n_degenerate": self.n_degenerate,
            "degenerate": self.degenerate,
            "note": self.note,
            "per_repeat": [{k: (_f(v) if isinstance(v, float) else v) for k, v in r.items()} for r in self.per_repeat],
            "settings": dict(self.settings),
        }


def summarise(samples: Sequence[Sequence[Arch]], scores: Mapping[Arch, float],
              accuracy: Mapping[Arch, float] | None, *, scale: str = "minmax", degenerate: str = "worst",
              population: str = "sampled", note: str | None = None,
              settings: Mapping[str, Any] | None = None) -> PerformanceDiversity:
    """Per-repeat SDs and PDS from jacob_cov ``scores`` (NaN = degenerate) and optional ``accuracy``."""
    _check_scale(scale)
    if degenerate not in DEGENERATE:
        raise ValueError(f"complexity: unknown degenerate policy {degenerate!r}; choose from {list(DEGENERATE)}")
    reps: list[dict[str, Any]] = []
    notes = [note] if note else []
    n_deg_total: set[Arch] = set()
    for r, archs in enumerate(samples):
        j = np.array([scores[a] for a in archs], dtype=np.float64)
        bad = ~np.isfinite(j)
        n_deg_total.update(a for a, b in zip(archs, bad) if b)
        keep = np.ones(len(archs), dtype=bool)
        if bad.any():
            if degenerate == "drop" or bad.all():
                keep &= ~bad
            else:
                j = np.where(bad, j[~bad].min(), j)
        acc = None
        if accuracy is not None:
            acc = np.array([accuracy.get(a, math.nan) for a in archs], dtype=np.float64)
            keep &= np.isfinite(acc)
            acc = acc[keep]
        j = j[keep]
        rec: dict[str, Any] = {"n": int(keep.sum()), "n_degenerate": int(bad.sum())}
        if j.size >= 1:
            rec["sd_jacob_cov"] = population_sd(scale_scores(j, scale))
            rec["raw_sd_jacob_cov"] = population_sd(j)
        if acc is not None and acc.size >= 1:
            rec["sd_accuracy"] = population_sd(scale_scores(acc, scale))
            rec["raw_sd_accuracy"] = population_sd(acc)
        if acc is not None and j.size >= 2:
            rec["pds"] = pds_from_sd(rec["sd_jacob_cov"], rec["sd_accuracy"])
        reps.append(rec)

    def mean(key: str) -> float | None:
        vals = [r[key] for r in reps if key in r]
        return float(np.mean(vals)) if vals else None

    pds_vals = [r["pds"] for r in reps if "pds" in r]
    if accuracy is None:
        notes.append("no accuracy table: jacob_cov spread only (pds=None)")
    elif not pds_vals:
        notes.append("fewer than 2 architectures with both a jacob_cov score and an accuracy: pds=None")
    if any(r["n"] == 0 for r in reps):
        notes.append("every sampled architecture is degenerate for jacob_cov")
    return PerformanceDiversity(
        pds=float(np.mean(pds_vals)) if pds_vals else None,
        pds_std=float(np.std(pds_vals)) if pds_vals else None,
        sd_jacob_cov=mean("sd_jacob_cov"),
        sd_accuracy=mean("sd_accuracy"),
        raw_sd_jacob_cov=mean("raw_sd_jacob_cov"),
        raw_sd_accuracy=mean("raw_sd_accuracy"),
        scale=scale,
        population=population,
        n_archs=max((len(s) for s in samples), default=0),
        repeats=len(samples),
        n_degenerate=len(n_deg_total),
        degenerate=degenerate,
        note="; ".join(notes) if notes else None,
        per_repeat=reps,
        settings=dict(settings or {}),
    )
