"""Weight-entangled ops (TangleNAS): convolution, linear layer, attention, plus the helpers of the
transformer space (prefix LayerNorm, superposed embedding).

Every op holds the weights of its largest choice. On a single path it runs the choice's slice (kernel
sizes: centred slices, start ``(K - k) // 2``; widths: prefixes) and zero-pads its output to the largest
width, so the network keeps fixed tensor shapes. In a mixture it runs ONCE with the superposed weight
(:func:`lidsplit.ops.superpose`), cut to the bounding box of the active choices.

Coefficients are applied once per decision: a conv's output-channel and kernel choices weight its own
weight; its input channels are only sliced (the input already carries the previous layer's
coefficients). Likewise the transformer's number of heads and MLP ratio weight the layer that reads
the heads / hidden units (attention projection, second MLP layer), which makes those mixtures exactly
the weighted sum of the choices' outputs; the embedding width weights the layers writing the residual
stream.

BatchNorm after a superposed conv (``bn=True``): a BatchNorm normalises each output channel, so it
removes the total coefficient ``t[o]`` of the choices covering channel o (for channel choices: the
channel weights themselves; in NB201: the conv group's weight against the other ops). ``bn_scale``:

- ``"after"`` (default): the superposed weight is divided by ``t[o]`` (a normalised mixture of the
  choices) and the BatchNorm output multiplied by ``t[o]``: the architecture weights scale the output.
  On a single path (one-hot weights) this is the plain sliced conv + BN.
- ``"before"``: the authors' code: superposed weight, then BatchNorm; ``t`` is normalised away.

``set_mixture(model, "explicit")`` runs every combination separately on its slice of the shared
weights and sums the outputs (BatchNorm per choice): the weight-sharing computation of the same space.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.ops import masked_sum
from lidsplit.supernet import BatchNorm2d
from lidsplit.supernet.entangled.core import (
    ArchDim,
    BoxCache,
    Combos,
    DimArg,
    Entangled,
    Sel,
    centred,
    coefficient_profile,
    combos,
    dim_values,
    entangled_weight,
    grouped,
    pad_dim,
    prefix_batch_norm,
    resolve,
)

BN_SCALES = ("after", "before")


def weighted_sum(outs: list[Tensor], coeffs: Tensor) -> Tensor:
    """``sum_i coeffs[i] * outs[i]`` (one ``masked_sum`` call; ``coeffs`` ``(n,)``)."""
    if len(outs) == 1:
        return outs[0] * coeffs[0]
    outs = [o.contiguous() for o in outs]
    return masked_sum(outs, coeffs.to(outs[0].dtype))


def _reset_weight_bias(weight: Tensor, bias: Tensor | None) -> None:
    """The initialisation of ``nn.Conv2d`` / ``nn.Linear``: Kaiming-uniform weight, bias uniform in
    ``+-1/sqrt(fan_in)``."""
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    if bias is not None:
        fan_in = weight[0].numel()
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
        nn.init.uniform_(bias, -bound, bound)


def _split_groups(x: Tensor, g: int) -> tuple[Tensor, ...]:
    if x.shape[0] % g:
        raise ValueError(f"lidsplit: batch of {x.shape[0]} is not divisible into {g} equal groups")
    return x.chunk(g)


# ---- convolution -----------------------------------------------------------------------------------


class SuperConv2d(nn.Module):
    """The largest conv (+ optional BatchNorm) of an entangled conv op; computes any choice or mixture
    of (kernel size, output channels, input channels) given their :class:`Sel` s.

    Weight ``(out_channels, in_channels or 1 (depthwise), K, K)``. Choice (k, co, ci) uses the box
    ``[0, co) x [0, ci) x centred(k, K)^2``; kernel and output-channel choices carry coefficients
    (``coeff_kernel``, ``coeff_out``), input channels are only sliced. Depthwise: channels co = ci,
    ``groups = co``. Padding ``dilation * (k - 1) // 2`` (same output size for every odd k).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        depthwise: bool = False,
        bias: bool = False,
        bn: bool = False,
        bn_affine: bool = True,
        track_running_stats: bool = True,
        bn_scale: str = "after",
        coeff_kernel: bool = True,
        coeff_out: bool = True,
    ):
        super().__init__()
        if bn_scale not in BN_SCALES:
            raise ValueError(f"lidsplit: bn_scale must be one of {BN_SCALES}, got {bn_scale!r}")
        if depthwise and in_channels != out_channels:
            raise ValueError("lidsplit: a depthwise SuperConv2d needs in_channels == out_channels")
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.dilation, self.depthwise = stride, dilation, depthwise
        self.bn_scale, self.coeff_kernel, self.coeff_out = bn_scale, coeff_kernel, coeff_out
        self.weight = nn.Parameter(torch.empty(out_channels, 1 if depthwise else in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.bn = BatchNorm2d(out_channels, affine=bn_affine, track_running_stats=track_running_stats) if bn else None
        self.mixture_mode = "superpose"
        self._boxes = BoxCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_weight_bias(self.weight, self.bias)
        if self.bn is not None:
            self.bn.reset_parameters()

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"depthwise={self.depthwise}, bn_scale={self.bn_scale!r}")

    def _box(self, v: tuple) -> tuple:
        k, co, ci = v
        if (self.kernel_size - k) % 2 or not 0 < k <= self.kernel_size:
            raise ValueError(f"lidsplit: kernel {k} cannot be centred in {self.kernel_size} (sizes must differ by an even number)")
        kr = centred(k, self.kernel_size)
        return ((0, co), (0, 1) if self.depthwise else (0, ci), kr, kr)

    def _conv(self, x: Tensor, cmb: Combos, scale_after: bool) -> tuple[Tensor, Tensor | None]:
        """The convolution of one group: (output over the bounding channels, t or None)."""
        w, region = entangled_weight(self._boxes, "w", self.weight, cmb, self._box)
        co = region[0][1]
        ci = co if self.depthwise else region[1][1]
        k = region[2][1] - region[2][0]
        b = None
        if self.bias is not None:
            b, _ = entangled_weight(self._boxes, "b", self.bias, cmb, lambda v: ((0, v[1]),))
        t = None
        if cmb.coeffs is not None and self.bn is not None:
            t = coefficient_profile(self._boxes, "t", self.out_channels, cmb, lambda v: (0, v[1]), w)[:co]
            if scale_after:
                safe = torch.where(t != 0, t, torch.ones_like(t))
                w = w / safe.view(-1, 1, 1, 1)
                b = b / safe if b is not None else None
        xin = x if x.shape[1] == ci else x[:, :ci]
        y = F.conv2d(xin, w, b, self.stride, self.dilation * (k - 1) // 2, self.dilation, co if self.depthwise else 1)
        return y, t

    def run(self, x: Tensor, cmb: Combos) -> Tensor:
        """One group's forward (output over the bounding channels, not padded)."""
        if self.mixture_mode == "explicit" and cmb.coeffs is not None and len(cmb.values) > 1:
            co = max(v[1] for v in cmb.values)
            outs = [pad_dim(self.run(x, Combos((v,), None)), 1, co) for v in cmb.values]
            return weighted_sum(outs, cmb.coeffs)
        after = self.bn_scale == "after"
        y, t = self._conv(x, cmb, after)
        if self.bn is not None:
            y = prefix_batch_norm(self.bn, y)
            if t is not None and after:
                y = y * t.view(1, -1, 1, 1)
        return y

    def forward(self, x: Tensor, kernel: Sel, out: Sel, inp: Sel | None = None) -> Tensor:
        """(B, out_channels, H', W'): channels beyond the selected / bounding width are zero."""
        inp = Sel.fixed(self.in_channels) if inp is None else inp
        sels = [kernel, out, inp]
        coeff = [self.coeff_kernel, self.coeff_out, False]
        g = grouped(sels)
        if g == 1:
            return pad_dim(self.run(x, combos(sels, coeff)), 1, self.out_channels)
        if self.mixture_mode == "explicit":
            raise NotImplementedError("lidsplit: explicit mixtures are not supported in grouped mode")
        # grouped: each group's conv with its own weight, then one (group-aware) BatchNorm over the
        # union of the groups' channels, then each group's scale (or channel mask)
        xs = _split_groups(x, g)
        parts = [self._conv(xg, combos([s.row(i) for s in sels], coeff), self.bn_scale == "after")
                 for i, xg in enumerate(xs)]
        co = max(p[0].shape[1] for p in parts)
        y = torch.cat([pad_dim(p[0], 1, co) for p in parts])
        if self.bn is not None:
            y = prefix_batch_norm(self.bn, y)
            scales = []
            for (yg, t) in parts:
                s = torch.ones(yg.shape[1], dtype=y.dtype, device=y.device) if t is None or self.bn_scale == "before" else t
                scales.append(pad_dim(s, 0, co))
            y = (y.reshape(g, -1, *y.shape[1:]) * torch.stack(scales).view(g, 1, co, 1, 1)).reshape(y.shape)
        return pad_dim(y, 1, self.out_channels)


class EntangledConv2d(Entangled):
    """A weight-entangled conv whose own decision (edge `label`) is its kernel size: ops
    ``"{k}x{k}"`` (or `names`), kernels centred in the largest one.

    out_channels / in_channels: an int (fixed), or an :class:`ArchDim` (or ``Scaled``) of channel
    counts: output channels are a combi-superposition dimension with the kernel (prefix slices), input
    channels are sliced to the previous layer's choice. ``depthwise=True``: one channel dimension
    (``out_channels``), ``groups = channels``. ``conv``: the keyword arguments of :class:`SuperConv2d`
    (``stride``, ``dilation``, ``bias``, ``bn``, ``bn_affine``, ``track_running_stats``, ``bn_scale``,
    ``coeff_out``); ``bn=True`` adds a BatchNorm (``bn_scale``: see the module doc). Output:
    ``(B, max out channels, H', W')``, zero beyond the chosen width.
    """

    def __init__(self, label: str, in_channels: DimArg, out_channels: DimArg, kernel_sizes: Sequence[int], *,
                 names: Sequence[str] | None = None, depthwise: bool = False, **conv: Any):
        kernel_sizes = tuple(int(k) for k in kernel_sizes)
        super().__init__(label, kernel_sizes, names if names is not None else [f"{k}x{k}" for k in kernel_sizes])
        self.out_dim = out_channels
        self.in_dim = out_channels if depthwise else in_channels
        c_out = max(dim_values(out_channels))
        c_in = c_out if depthwise else max(dim_values(in_channels))
        self.conv = SuperConv2d(c_in, c_out, max(kernel_sizes), depthwise=depthwise, **conv)
        for k in kernel_sizes:
            self.conv._box((k, 1, 1))  # validates the centring

    def compute(self, own: Sel, x: Tensor) -> Tensor:
        return self.conv(x, own, resolve(self.out_dim, x), resolve(self.in_dim, x))


# ---- linear ----------------------------------------------------------------------------------------


def same_width(*values) -> int:
    """Width function: the last value (e.g. the embedding width of ``(ratio, embed)``)."""
    return int(values[-1])


def product_width(*values) -> int:
    """Width function: the rounded product of the values (e.g. hidden = ratio * embed)."""
    p = 1.0
    for v in values:
        p *= v
    return int(round(p))


class EntangledLinear(Entangled):
    """A weight-entangled linear layer: input and output widths are prefix slices chosen by its own
    decision (edge `label`, ``values``) and other dimensions ``dims`` (ArchDims).

    out_features / in_features: an int, or a function of the choice values ``(own, *dims)`` (e.g.
    :func:`product_width` for hidden = ratio * embed, :func:`same_width` for the embed width).
    coeffs: whether the decisions weight this layer's weight in a mixture (one bool, or one per
    dimension, own first); a dimension without coefficients only slices. Output: (..., max out),
    zero beyond the chosen width.
    """

    def __init__(
        self,
        label: str,
        values: Sequence,
        *,
        dims: Sequence[DimArg] = (),
        out_features: int | Callable[..., int],
        in_features: int | Callable[..., int],
        coeffs: bool | Sequence[bool] = True,
        bias: bool = True,
        names: Sequence[str] | None = None,
        prefix: str = "",
    ):
        super().__init__(label, values, names, prefix)
        self.dims = nn.ModuleList([d for d in dims if isinstance(d, nn.Module)])
        self._dim_args = [d if isinstance(d, int) else None for d in dims]
        self.out_fn = out_features if callable(out_features) else _Const(out_features)
        self.in_fn = in_features if callable(in_features) else _Const(in_features)
        n = 1 + len(dims)
        self.coeff = (bool(coeffs),) * n if isinstance(coeffs, bool) else tuple(bool(c) for c in coeffs)
        if len(self.coeff) != n:
            raise ValueError(f"lidsplit: EntangledLinear {label!r}: {len(self.coeff)} coeff flags for {n} dimensions")
        all_values = [self.values] + [dim_values(d) for d in dims]
        combos_all = list(itertools.product(*all_values))
        self.out_features = max(self.out_fn(*v) for v in combos_all)
        self.in_features = max(self.in_fn(*v) for v in combos_all)
        self.weight = nn.Parameter(torch.empty(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.empty(self.out_features)) if bias else None
        self.mixture_mode = "superpose"
        self._boxes = BoxCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _reset_weight_bias(self.weight, self.bias)

    def _sels(self, own: Sel, x: Tensor) -> list[Sel]:
        it = iter(self.dims)
        out = [own]
        for a in self._dim_args:
            out.append(Sel.fixed(a) if a is not None else resolve(next(it), x))
        return out

    def _box(self, v: tuple) -> tuple:
        return ((0, self.out_fn(*v)), (0, self.in_fn(*v)))

    def run(self, x: Tensor, cmb: Combos) -> Tensor:
        if self.mixture_mode == "explicit" and cmb.coeffs is not None and len(cmb.values) > 1:
            o = max(self.out_fn(*v) for v in cmb.values)
            outs = [pad_dim(self.run(x, Combos((v,), None)), -1, o) for v in cmb.values]
            return weighted_sum(outs, cmb.coeffs)
        w, region = entangled_weight(self._boxes, "w", self.weight, cmb, self._box)
        b = None
        if self.bias is not None:
            b, _ = entangled_weight(self._boxes, "b", self.bias, cmb, lambda v: ((0, self.out_fn(*v)),))
        i = region[1][1]
        return F.linear(x if x.shape[-1] == i else x[..., :i], w, b)

    def compute(self, own: Sel, x: Tensor, carrier: Tensor | None = None) -> Tensor:
        sels = self._sels(own, x if carrier is None else carrier)
        g = grouped(sels)
        if g == 1:
            return pad_dim(self.run(x, combos(sels, self.coeff)), -1, self.out_features)
        outs = [pad_dim(self.run(xg, combos([s.row(i) for s in sels], self.coeff)), -1, self.out_features)
                for i, xg in enumerate(_split_groups(x, g))]
        return torch.cat(outs)


class _Const:
    def __init__(self, v: int):
        self.v = int(v)

    def __call__(self, *values) -> int:
        return self.v


# ---- attention ---------------------------------------------------------------------------------------


class EntangledAttention(Entangled):
    """Weight-entangled causal self-attention: its own decision is the number of heads (prefix of the
    largest number of heads, fixed head size), `embed` the embedding width (prefix of the residual
    stream). q/k/v projections are sliced; the output projection carries the coefficients of both
    (combi-superposition over heads x embed): the mixture over heads is then exactly the weighted sum
    of the attention outputs with each number of heads. Input/output (B, T, max embed)."""

    def __init__(
        self,
        label: str,
        heads: Sequence[int],
        *,
        embed: DimArg,
        head_dim: int,
        causal: bool = True,
        bias: bool = True,
        names: Sequence[str] | None = None,
    ):
        heads = tuple(int(h) for h in heads)
        super().__init__(label, heads, names if names is not None else [f"h{h}" for h in heads])
        self.embed = embed
        self.embed_dim = max(dim_values(embed))
        self.head_dim, self.max_heads, self.causal = head_dim, max(heads), causal
        hd = self.max_heads * head_dim
        self.qkv_weight = nn.Parameter(torch.empty(3, hd, self.embed_dim))
        self.qkv_bias = nn.Parameter(torch.zeros(3, hd)) if bias else None
        self.proj_weight = nn.Parameter(torch.empty(self.embed_dim, hd))
        self.proj_bias = nn.Parameter(torch.zeros(self.embed_dim)) if bias else None
        self.mixture_mode = "superpose"
        self._boxes = BoxCache()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for w in (self.qkv_weight, self.proj_weight):
            bound = 1 / math.sqrt(w.shape[-1])
            nn.init.uniform_(w, -bound, bound)
        for b in (self.qkv_bias, self.proj_bias):
            if b is not None:
                nn.init.zeros_(b)

    def _attend(self, x: Tensor, h: int, e: int) -> Tensor:
        """(B, T, h * head_dim): the attention of the first h heads on the first e features."""
        hd = h * self.head_dim
        w = self.qkv_weight[:, :hd, :e].reshape(3 * hd, e)
        b = self.qkv_bias[:, :hd].reshape(-1) if self.qkv_bias is not None else None
        qkv = F.linear(x if x.shape[-1] == e else x[..., :e], w, b)
        B, T = x.shape[0], x.shape[1]
        q, k, v = qkv.view(B, T, 3, h, self.head_dim).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        return o.transpose(1, 2).reshape(B, T, hd)

    def run(self, x: Tensor, cmb: Combos) -> Tensor:
        if self.mixture_mode == "explicit" and cmb.coeffs is not None and len(cmb.values) > 1:
            e_max = max(v[1] for v in cmb.values)
            outs = [pad_dim(self.run(x, Combos((v,), None)), -1, e_max) for v in cmb.values]
            return weighted_sum(outs, cmb.coeffs)
        h = max(v[0] for v in cmb.values)
        e = max(v[1] for v in cmb.values)
        a = self._attend(x, h, e)
        w, region = entangled_weight(self._boxes, "p", self.proj_weight, cmb,
                                     lambda v: ((0, v[1]), (0, v[0] * self.head_dim)))
        b = None
        if self.proj_bias is not None:
            b, _ = entangled_weight(self._boxes, "pb", self.proj_bias, cmb, lambda v: ((0, v[1]),))
        return F.linear(a, w, b)

    def compute(self, own: Sel, x: Tensor) -> Tensor:
        sels = [own, resolve(self.embed, x)]
        g = grouped(sels)
        if g == 1:
            return pad_dim(self.run(x, combos(sels, (True, True))), -1, self.embed_dim)
        outs = [pad_dim(self.run(xg, combos([s.row(i) for s in sels], (True, True))), -1, self.embed_dim)
                for i, xg in enumerate(_split_groups(x, g))]
        return torch.cat(outs)


# ---- transformer helpers -----------------------------------------------------------------------------


class PrefixLayerNorm(nn.Module):
    """LayerNorm over the chosen embedding prefix (zero beyond it). A mixture over the width is the
    weighted sum of the LayerNorms of each active width (cheap: elementwise)."""

    def __init__(self, embed: DimArg, eps: float = 1e-5):
        super().__init__()
        self.embed = embed
        self.dim = max(dim_values(embed))
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(self.dim))
        self.bias = nn.Parameter(torch.zeros(self.dim))

    def _ln(self, x: Tensor, e: int) -> Tensor:
        return pad_dim(F.layer_norm(x[..., :e], (e,), self.weight[:e], self.bias[:e], self.eps), -1, self.dim)

    def _one(self, x: Tensor, s: Sel) -> Tensor:
        if s.index is not None:
            return self._ln(x, s.values[s.index])
        outs = [self._ln(x, s.values[j]).contiguous() for j in s.active]
        return weighted_sum(outs, s.weights[list(s.active)])

    def forward(self, x: Tensor) -> Tensor:
        s = resolve(self.embed, x)
        if s.groups is None:
            return self._one(x, s)
        return torch.cat([self._one(xg, s.row(i)) for i, xg in enumerate(_split_groups(x, s.num_groups))])


class SuperEmbedding(nn.Module):
    """An embedding table (num, max embed) whose columns are prefix-sliced by `embed` (superposed over
    the width choices in a mixture). Output (..., max embed), zero beyond the chosen width."""

    def __init__(self, num: int, embed: DimArg):
        super().__init__()
        self.embed = embed
        self.dim = max(dim_values(embed))
        self.weight = nn.Parameter(torch.randn(num, self.dim) * 0.02)
        self._boxes = BoxCache()

    def forward(self, idx: Tensor) -> Tensor:
        s = resolve(self.embed, self.weight)
        n = self.weight.shape[0]

        def one(i: Tensor, sel: Sel) -> Tensor:
            w, region = entangled_weight(self._boxes, "w", self.weight, combos([sel], (True,)), lambda v: ((0, n), (0, v[0])))
            return pad_dim(F.embedding(i, w), -1, self.dim)

        if s.groups is None:
            return one(idx, s)
        return torch.cat([one(ig, s.row(i)) for i, ig in enumerate(_split_groups(idx, s.num_groups))])


__all__ = [
    "ArchDim",
    "EntangledAttention",
    "EntangledConv2d",
    "EntangledLinear",
    "PrefixLayerNorm",
    "SuperConv2d",
    "SuperEmbedding",
    "product_width",
    "same_width",
    "weighted_sum",
]
