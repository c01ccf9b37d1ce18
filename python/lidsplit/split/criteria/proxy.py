"""Zero-cost proxies as split criteria (``gradnorm``, ``snip``, ``grasp``, ``synflow``, ``jacob_cov``,
``ntk``, ``linear_regions``; the measurements are :mod:`lidsplit.split.proxies`): a scalar ``m_i`` per
one-op sub-supernet; ``S_ij = -|m_i - m_j|`` after normalising against the whole sub-supernet,
``(m_i - m_ref) / |m_ref|`` (gradnorm: not normalised), as the zero-cost-proxy paper.

The model a proxy sees is the supernet in ``sum`` mode restricted to the one-op sub-supernet
(``use_sum(model, sub.restrict(edge, [op]))``; the reference: ``use_sum(model, sub)``). The paper (001)
evaluates "temporary models" of the sub-supernet with the op changed on the target edge; it defines its
gradient-matching model with the op *disabled* (``variant="disable"``: the edge keeps every op but
``op``) and does not say how the other edges are run; the sum over their enabled ops is the sub-supernet
itself, without sampling noise (``others="path"``: a sampled single path instead).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.split import proxies as _proxies
from lidsplit.split.criteria.base import Criterion, Measurement, ScoringSet
from lidsplit.split.criteria.base import _add_time, _check_others, _identical, _mode, _weights_digest
from lidsplit.split.criteria.registry import register_criterion
from lidsplit.supernet import SubSupernet

__all__ = ["ProxyCriterion"]


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
    degenerate_error = _proxies.DegenerateProxyError

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

    def _measure(self, model: nn.Module, scoring: ScoringSet, edge: int, ops: tuple[int, ...], r: int, x: Tensor,
                 y: Tensor, timings: dict[str, float]) -> Measurement:
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



_PROXY_ALIASES = {"linear_regions": ("lr",), "jacob_cov": ("jacobcov",)}
for _name in _proxies.PROXIES:
    register_criterion(_name, functools.partial(ProxyCriterion, _name), aliases=_PROXY_ALIASES.get(_name, ()))
