"""Zero-cost proxies as split criteria (``gradnorm``, ``snip``, ``grasp``, ``synflow``, ``jacob_cov``,
``ntk``, ``linear_regions``, ``fisher``; the measurements are :mod:`lidsplit.split.proxies`): a scalar
``m_i`` per one-op sub-supernet; ``S_ij = -|m_i - m_j|`` after normalising against the whole
sub-supernet, ``(m_i - m_ref) / |m_ref|`` (gradnorm: not normalised), as the zero-cost-proxy paper.

The model a proxy sees (``others``). Default ``"path"``: per batch ``r`` the other edges run path ``r`` of
the ScoringSet (one op each, drawn inside the sub-supernet, common to all edges and criteria), the
target edge runs op i alone (the reference: every enabled op of the target edge); averaging over the
``R`` batches averages over ``R`` paths, as ``lid`` and ``gm`` do. ``"sum"``: the sub-supernet itself,
every other edge the sum of its enabled ops (``use_sum(model, sub.restrict(edge, [op]))``; the
reference ``use_sum(model, sub)``): the "temporary models" of the paper (001), without sampling noise,
and what the ZC-split code evaluates. It was the default before; it is kept as an explicit option, but it
is slow on large spaces: each of the n + 1 evaluations per edge is a forward and backward of the whole
supernet (every op of every edge: 7 computed ops per DARTS edge), and on CPU the backward of DARTS's
depthwise / dilated convolutions costs 4-30x their forward. On the DARTS space (28 edges) ``"sum"``
made snip and synflow 17x and 8x as slow as ``lid``; ``"path"`` costs about one single-path forward and
backward per variant (``benchmarks/bench_proxies.md``). ``"weighted"``: a DARTS mixture with
``arch_weights``. The paper defines its gradient-matching model with the op *disabled*
(``variant="disable"``: the edge keeps every op but ``op``).

Definitions (``convention``). ``"original"`` (default): the definitions of the papers that introduced
the proxies, matching zero-cost-nas and TE-NAS to 1e-6, run in :func:`characterisation_mode` (BatchNorm
with batch statistics, as those codes' train-mode networks). ``"zc-split-code"``: those of the ZC-split
paper's released code (brain-bzh/metric_driven_few_shot_nas), which differ (2% to 20000% on NB201):
gradnorm is one global norm of the gradient of ``sum(logits)``; jacob_cov and ntk work on the
per-channel rows of that weight gradient (``(C, P)``, ``C`` the network's width: option ``rows``) instead
of per-sample Jacobians; synflow keeps the BatchNorms (``bn=True``); and every module runs in eval mode
(BatchNorm with running statistics). snip, grasp and linear_regions keep their definition (in eval
mode); fisher, absent from that code, keeps Turner et al.'s. That code also evaluates whole
sub-supernets (``others="sum"`` here) and, over several batches, pools them into one matrix where this
criterion averages per-batch similarities. See :mod:`lidsplit.split.proxies` for the formulas.
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
    ``others``: ``path`` (default: the other edges on the batch's sampled path) | ``sum`` (the whole
    sub-supernet: the default before, slow on large spaces) | ``weighted``; ``variant``: ``"enable"``
    (the edge runs op i alone) or ``"disable"`` (every enabled op but i); ``normalise``: against the
    whole sub-supernet (default: every proxy but gradnorm, as the paper); ``convention``: ``original``
    (default) or ``zc-split-code`` (:data:`lidsplit.split.proxies.CONVENTIONS`); ``options``: keyword
    arguments of the proxy (``linear_regions`` counts ``nn.ReLU`` and ``nn.ReLU6`` outputs unless
    ``activations`` is given; ``rows`` of the zc-split-code gradnorm / jacob_cov / ntk).
    Default 1 batch of 64 (zero-cost; more batches average over more paths); edges chosen at random
    (the paper) and unbalanced min-cut."""

    rule = "random"
    balanced = False
    default_batches = 1
    default_batch_size = 64
    degenerate_error = _proxies.DegenerateProxyError

    def __init__(
        self, proxy: str, *, others: str = "path", variant: str = "enable", normalise: bool | None = None,
        loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy, arch_weights: Any = None,
        options: Mapping[str, Any] | None = None, skip_uninformative: bool = True, convention: str = "original",
    ) -> None:
        if proxy not in _proxies.PROXIES:
            raise ValueError(f"proxy: unknown {proxy!r}; expected one of {sorted(_proxies.PROXIES)}")
        if variant not in ("enable", "disable"):
            raise ValueError(f"variant: expected 'enable' or 'disable', got {variant!r}")
        if convention not in _proxies.CONVENTIONS:
            raise ValueError(f"convention: expected one of {list(_proxies.CONVENTIONS)}, got {convention!r}")
        self.name = proxy
        self.others = _check_others(others, arch_weights)
        self.variant = variant
        self.convention = convention
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
                "skip_uninformative": self.skip_uninformative,
                # only when set: the identity of runs saved before the option existed stays the same
                **({"convention": self.convention} if self.convention != "original" else {})}

    def _value(self, model: nn.Module, sub: SubSupernet, x: Tensor, y: Tensor) -> float:
        with _mode(model, sub, "sum" if self.others == "path" else self.others, self.arch_weights):
            return _proxies.compute_proxy(self.name, model, x, y, self.loss_fn, convention=self.convention,
                                          **self.options)

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
