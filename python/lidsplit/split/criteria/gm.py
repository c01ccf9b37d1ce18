"""GM-NAS's criterion: cosine similarity of the gradients of the loss w.r.t. the shared weights (default
``shared_parameters(model, label)``: every parameter of the other edges in every cell plus the reduction
blocks; stem, final BN and classifier excluded) when each op is enabled alone.

The n gradients stay lists of per-parameter tensors: one ``lidsplit.ops.gradient_gram`` call (the kernel
behind ``gradient_cosine``) gives the Gram matrix, normalised here with ``gradient_cosine``'s conventions
(zero vector: cosine 0; diagonal 1), so the gradient norms are reported too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.common.batch import logits_of
from lidsplit.ops import gradient_gram
from lidsplit.split.criteria.base import Criterion, Measurement, ScoringSet
from lidsplit.split.criteria.base import _REL_TOL, _add_time, _check_others, _mode, _variant_subs, _weights_digest
from lidsplit.split.criteria.registry import register_criterion
from lidsplit.supernet import SubSupernet, edge_parameters, shared_parameters

__all__ = ["GMCriterion"]


@register_criterion("gm", aliases=("gradient_matching", "gm_nas", "gm-nas"))
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
                logits = logits_of(model(x))
                obj = self.loss_fn(logits, y) if self.objective == "loss" else logits.sum()
                grads.append(list(torch.autograd.grad(obj, list(params), allow_unused=True)))
        return grads

    def _measure(self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int, x: Tensor,
                 y: Tensor, timings: dict[str, float]) -> Measurement:
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

