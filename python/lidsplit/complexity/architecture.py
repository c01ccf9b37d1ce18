"""Architecture diversity: the variance of block-type count vectors over a space.

Each architecture is described by a vector counting its building blocks by type (the paper derives its
list of types from a model zoo: convolutions by kernel size, pooling, skip, MBConv, attention,
feed-forward, residual blocks, ...). Only the searchable part matters: the fixed parts of a network add
the same counts to every architecture and no variance.

Block types (:data:`BLOCK_TYPES`, fixed so that spaces are compared on the same axes; other kernel
sizes add ``conv{k}x{k}``, unknown ops add ``op:{name}``). Counting per op name
(:func:`op_block_counts`):

===========================  ==========================================================================
``none`` / ``zero``          nothing (the edge or block is absent)
``skip_connect``, identity   ``skip``
``nor_conv_KxK``, ``conv_K``  ``convKxK`` (one convolution layer)
``sep_conv_KxK`` (DARTS)     ``sep_conv`` + 2 x ``convKxK`` (depthwise) + 2 x ``conv1x1`` (pointwise)
``dil_conv_KxK`` (DARTS)     ``dil_conv`` + ``convKxK`` (depthwise, dilated) + ``conv1x1``
``avg/max_pool_KxK``         ``pool``
``KxK_MBConvE``              ``mbconv`` + ``convKxK`` (depthwise) + ``conv1x1`` (project) + another
                             ``conv1x1`` (expand) if E > 1
names with attention / attn  ``attention``;  ffn / mlp / feed_forward: ``ffn``;  res(idual)_block:
/ mha                        ``residual``
===========================  ==========================================================================

An op's counts can be overridden (``block_counts={"my_op": {"attention": 1, "ffn": 1}}``) and a
supernet may define ``op_block_counts(label, op_name) -> Mapping[str, float] | None`` to do so per edge.

Each edge label counts as many times as the supernet holds Choice modules with that label (NB201 with
``N`` cells per stage: ``3N`` cells share each edge, so a chosen op appears ``3N`` times); a bare
``SearchSpace`` counts each edge once.

Scalar. ``"trace"`` (default): the trace of the covariance matrix of the vectors = the sum of the
per-type variances (the total variance; adding block types a space never uses adds 0, so spaces are
comparable). ``"mean"``: the trace divided by the number of block types (:data:`BLOCK_TYPES` plus any
extra type met), the mean per-type variance.

Exact computation (``method="exact"``, default). Architectures of a (sub-)space are uniform over the
product of the per-edge op sets, so the per-edge counts are independent and the covariance over the
whole space is the sum over edges of ``multiplicity^2 x`` the covariance of that edge's op vectors
(uniform over its enabled ops): exact for any size, e.g. the 6.6e17 ProxylessNAS space, no sampling.
``method="sample"`` follows the paper's protocol instead: the covariance (``ddof=1``) of the vectors of
uniformly sampled distinct architectures (``ddof=0`` when the sample is the whole space, i.e. exact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from torch import nn

from lidsplit.complexity.sampling import repeat_generator, sample_archs
from lidsplit.supernet import Arch, SearchSpace, SubSupernet, choices, search_space

__all__ = [
    "BLOCK_TYPES",
    "SCALARS",
    "op_block_counts",
    "edge_multiplicity",
    "BlockFeaturizer",
    "ArchitectureDiversity",
    "architecture_diversity",
]

BLOCK_TYPES: tuple[str, ...] = (
    "conv1x1", "conv3x3", "conv5x5", "conv7x7",
    "sep_conv", "dil_conv", "mbconv", "pool", "skip", "residual", "attention", "ffn",
)
SCALARS: tuple[str, ...] = ("trace", "mean")

_KERNEL = r"(\d+)(?:x\d+)?"


def op_block_counts(name: str) -> dict[str, int]:
    """Block-type counts of one op, from its name (see the module table)."""
    n = name.lower()
    if n in ("none", "zero", "null"):
        return {}
    if n in ("skip", "skip_connect", "identity", "id"):
        return {"skip": 1}
    m = re.fullmatch(rf"{_KERNEL}_mbconv(\d+)", n)
    if m:
        k, e = int(m.group(1)), int(m.group(2))
        return _merge({"mbconv": 1}, {f"conv{k}x{k}": 1}, {"conv1x1": 2 if e > 1 else 1})
    m = re.fullmatch(rf"sep_conv_{_KERNEL}", n)
    if m:
        k = int(m.group(1))
        return _merge({"sep_conv": 1, f"conv{k}x{k}": 2}, {"conv1x1": 2})
    m = re.fullmatch(rf"dil_conv_{_KERNEL}", n)
    if m:
        k = int(m.group(1))
        return _merge({"dil_conv": 1, f"conv{k}x{k}": 1}, {"conv1x1": 1})
    m = re.fullmatch(rf"(?:nor_)?conv_?{_KERNEL}", n)
    if m:
        k = int(m.group(1))
        return {f"conv{k}x{k}": 1}
    if re.fullmatch(rf"(?:avg|max)_?pool(?:_{_KERNEL})?", n):
        return {"pool": 1}
    if re.search(r"attention|attn|mha", n):
        return {"attention": 1}
    if re.search(r"ffn|mlp|feed_?forward", n):
        return {"ffn": 1}
    if re.search(r"res(?:idual|net)?_?block", n):
        return {"residual": 1}
    return {f"op:{name}": 1}


def _merge(*ds: Mapping[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def edge_multiplicity(model: nn.Module) -> dict[str, int]:
    """How many Choice modules of ``model`` share each edge label (how often a chosen op is used)."""
    return {label: len(cs) for label, cs in choices(model).items()}


class BlockFeaturizer:
    """Per edge, the matrix ``F_e`` (ops x block types) of multiplicity-weighted block counts; an
    architecture's vector is ``sum_e F_e[arch[e]]``."""

    def __init__(self, space: SearchSpace, *, multiplicity: Mapping[str, int] | None = None,
                 block_counts: Mapping[str, Mapping[str, float]] | None = None,
                 counter: Callable[[str, str], Mapping[str, float] | None] | None = None):
        self.space = space
        mult = dict(multiplicity or {})
        per_edge: list[list[Mapping[str, float]]] = []
        extra: set[str] = set()
        for e in space.edges:
            rows = []
            for op in e.ops:
                c = counter(e.label, op) if counter is not None else None
                if c is None:
                    c = (block_counts or {}).get(op)
                if c is None:
                    c = op_block_counts(op)
                for k, v in c.items():
                    if not isinstance(k, str) or not math.isfinite(float(v)):
                        raise ValueError(f"complexity: bad block count {k!r}: {v!r} for op {op!r}")
                rows.append(c)
                extra.update(k for k in c if k not in BLOCK_TYPES)
            per_edge.append(rows)
        self.types: tuple[str, ...] = BLOCK_TYPES + tuple(sorted(extra))
        col = {t: i for i, t in enumerate(self.types)}
        self.multiplicity = tuple(int(mult.get(e.label, 1)) for e in space.edges)
        self.matrices: list[np.ndarray] = []
        for rows, m in zip(per_edge, self.multiplicity):
            f = np.zeros((len(rows), len(self.types)), dtype=np.float64)
            for i, c in enumerate(rows):
                for k, v in c.items():
                    f[i, col[k]] += float(v)
            self.matrices.append(m * f)

    def vector(self, arch: Arch) -> np.ndarray:
        arch = self.space.validate_arch(arch)
        return sum((f[a] for f, a in zip(self.matrices, arch)), np.zeros(len(self.types)))

    def vectors(self, archs: list[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros((0, len(self.types)))
        idx = np.asarray([self.space.validate_arch(a) for a in archs], dtype=np.int64)
        return sum(f[idx[:, e]] for e, f in enumerate(self.matrices))

    def exact_moments(self, sub: SubSupernet) -> tuple[np.ndarray, np.ndarray]:
        """Mean vector and covariance matrix over every architecture of ``sub`` (uniform), exactly."""
        d = len(self.types)
        mean, cov = np.zeros(d), np.zeros((d, d))
        for f, mask in zip(self.matrices, sub.masks):
            rows = f[sorted(mask)]
            mu = rows.mean(axis=0)
            c = rows - mu
            mean += mu
            cov += c.T @ c / rows.shape[0]
        return mean, cov


@dataclass
class ArchitectureDiversity:
    """``value``: the scalar diversity; ``variance`` / ``mean``: per block type (types used only)."""

    value: float
    scalar: str
    method: str
    types: tuple[str, ...]
    variance: dict[str, float]
    mean: dict[str, float]
    n_archs: int | None = None
    multiplicity: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "value": float(self.value),
            "scalar": self.scalar,
            "method": self.method,
            "n_types": len(self.types),
            "variance": dict(self.variance),
            "mean": dict(self.mean),
            "n_archs": self.n_archs,
            "multiplicity": dict(self.multiplicity),
        }


def architecture_diversity(
    obj: SearchSpace | SubSupernet | nn.Module,
    sub: SubSupernet | None = None,
    *,
    method: str = "exact",
    scalar: str = "trace",
    samples: int = 1000,
    seed: int = 0,
    block_counts: Mapping[str, Mapping[str, float]] | None = None,
    multiplicity: Mapping[str, int] | None = None,
) -> ArchitectureDiversity:
    """Architecture diversity of a space / sub-supernet / supernet (see the module doc).

    ``obj`` a supernet: edges and multiplicities from its Choice modules (and its ``op_block_counts``
    if defined); ``sub`` restricts to a sub-supernet of its space. ``method``: ``"exact"`` | ``"sample"``
    (``samples`` distinct archs, seeded by ``seed``).
    """
    if scalar not in SCALARS:
        raise ValueError(f"complexity: unknown diversity scalar {scalar!r}; choose from {list(SCALARS)}")
    if method not in ("exact", "sample"):
        raise ValueError(f"complexity: unknown diversity method {method!r}; choose 'exact' or 'sample'")
    counter = None
    if isinstance(obj, nn.Module):
        space = search_space(obj)
        mult = dict(edge_multiplicity(obj))
        counter = getattr(obj, "op_block_counts", None)
        if counter is not None and not callable(counter):
            counter = None
    elif isinstance(obj, SubSupernet):
        space, mult, sub = obj.space, {}, sub if sub is not None else obj
    elif isinstance(obj, SearchSpace):
        space, mult = obj, {}
    else:
        raise TypeError(f"complexity: expected a SearchSpace, SubSupernet or supernet module, got {type(obj).__name__}")
    if multiplicity is not None:
        mult.update(multiplicity)
    sub = SubSupernet.full(space) if sub is None else sub
    if sub.space != space:
        raise ValueError("complexity: the sub-supernet belongs to a different search space")
    feat = BlockFeaturizer(space, multiplicity=mult, block_counts=block_counts, counter=counter)
    n_archs: int | None = None
    if method == "exact":
        mean, cov = feat.exact_moments(sub)
    else:
        archs, complete = sample_archs(sub, samples, repeat_generator(seed, 0, "arch-diversity"))
        v = feat.vectors(archs)
        n_archs = len(archs)
        mean = v.mean(axis=0)
        ddof = 0 if complete or len(archs) < 2 else 1
        c = v - mean
        cov = c.T @ c / max(len(archs) - ddof, 1)
    var = np.clip(np.diag(cov), 0.0, None)
    total = float(var.sum())
    value = total if scalar == "trace" else total / len(feat.types)
    used = [i for i, t in enumerate(feat.types) if var[i] > 0 or mean[i] != 0]
    return ArchitectureDiversity(
        value=value,
        scalar=scalar,
        method=method,
        types=feat.types,
        variance={feat.types[i]: float(var[i]) for i in used},
        mean={feat.types[i]: float(mean[i]) for i in used},
        n_archs=n_archs,
        multiplicity={e.label: m for e, m in zip(space.edges, feat.multiplicity) if m != 1},
    )
