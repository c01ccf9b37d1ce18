"""MobileNet / ProxylessNAS-style space with entangled kernels and expansion ratios (TangleNAS's
MobileNetV3 / OFA space, small): per block a kernel size ({3, 5, 7}) and an expansion ratio ({3, 6} by
default), per stage a depth (number of blocks, 1..n).

Edges: ``block{i}/kernel`` (ops ``3x3 5x5 7x7``: the block's :class:`EntangledMBConv`),
``block{i}/expand`` (ops ``e3 e6``), ``stage{s}/depth`` (ops ``d1 .. dn``). A block is an inverted
bottleneck 1x1 expand -> BN -> ReLU6 -> kxk depthwise -> BN -> ReLU6 -> 1x1 project -> BN (+ input when
stride 1 and widths match). Hidden channels are prefixes of ``c_in * max(expand)``, kernels centred in
the largest. In a mixture the depthwise conv is the combi-superposition of kernel x expansion
(coefficients ``w_k * w_e``, BatchNorm-scaled as ``bn_scale``); the expand / project convs are sliced
to the widest active expansion. A stage's depth mixture is the weighted sum of the outputs after each
active number of blocks (one pass through the deepest).

``set_mixture(model, "explicit")`` runs every (kernel, expansion) block separately and sums them: the
weight-sharing computation of the same space.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.ops import masked_sum
from lidsplit.spaces.common import MBConv, Supernet
from lidsplit.supernet import BatchNorm2d
from lidsplit.tangle.core import ArchDim, Entangled, Scaled, Sel, combos, grouped, resolve
from lidsplit.tangle.modules import SuperConv2d, _weighted_sum

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)


class EntangledMBConv(Entangled):
    """Inverted bottleneck whose own decision is the depthwise kernel size; `expand` (an ArchDim of
    ratios) the hidden width ``c_in * e``. Output (B, c_out, H', W') (no residual: the block adds it)."""

    def __init__(self, label: str, c_in: int, c_out: int, kernels: Sequence[int], expand: ArchDim, stride: int = 1,
                 track: bool = True, bn_scale: str = "after"):
        kernels = tuple(int(k) for k in kernels)
        super().__init__(label, kernels, [f"{k}x{k}" for k in kernels])
        self.expand = expand
        self.hidden = Scaled(expand, factor=c_in)
        mid = c_in * max(expand.values)
        self.c_in, self.c_out, self.mid = c_in, c_out, mid
        self.expand_conv = SuperConv2d(c_in, mid, 1, bn=True, track_running_stats=track, coeff_out=False)
        self.depthwise = SuperConv2d(mid, mid, max(kernels), stride=stride, depthwise=True, bn=True,
                                     track_running_stats=track, bn_scale=bn_scale)
        self.project = SuperConv2d(mid, c_out, 1, bn=True, track_running_stats=track)
        self.act = nn.ReLU6()
        self.mixture_mode = "superpose"

    def _path(self, x: Tensor, k: Sel, h: Sel) -> Tensor:
        one, out = Sel.fixed(1), Sel.fixed(self.c_out)
        y = self.act(self.expand_conv(x, one, h, Sel.fixed(self.c_in)))
        y = self.act(self.depthwise(y, k, h, h))
        return self.project(y, one, out, h)

    def compute(self, own: Sel, x: Tensor) -> Tensor:
        h = resolve(self.hidden, x)
        if self.mixture_mode == "explicit" and grouped([own, h]) == 1:
            cmb = combos([own, h], (True, True))
            if cmb.coeffs is not None and len(cmb.values) > 1:
                ks, hs = list(own.values), list(h.values)
                outs = [self._path(x, Sel.one(ks.index(k), ks), Sel.one(hs.index(m), hs)) for k, m in cmb.values]
                return _weighted_sum(outs, cmb.coeffs)
        return self._path(x, own, h)


class EntangledMobileNet(Supernet):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        first_channels: int = 8,
        first_block_channels: int = 8,
        stages: Sequence[tuple[int, int, int]] = ((8, 2, 1), (16, 2, 2), (24, 2, 2)),
        feature_mix_channels: int = 32,
        first_stride: int = 1,
        kernels: Sequence[int] = KERNELS,
        expansions: Sequence[int] = EXPANSIONS,
        search_depth: bool = True,
        track_running_stats: bool = True,
        bn_scale: str = "after",
    ):
        super().__init__()
        track = track_running_stats
        self.first_conv = nn.Sequential(
            nn.Conv2d(in_channels, first_channels, 3, first_stride, 1, bias=False),
            BatchNorm2d(first_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        self.first_block = MBConv(first_channels, first_block_channels, 3, 1, 1, track)
        c = first_block_channels
        idx = 1
        self.stages = nn.ModuleList()
        self.depths = nn.ModuleList()
        self.residual: list[list[bool]] = []
        for s, (c_out, n, stride) in enumerate(stages, start=1):
            blocks, res = nn.ModuleList(), []
            for b in range(n):
                st = stride if b == 0 else 1
                e = ArchDim(f"block{idx}/expand", expansions, prefix="e")
                blocks.append(EntangledMBConv(f"block{idx}/kernel", c, c_out, kernels, e, st, track, bn_scale))
                res.append(st == 1 and c == c_out)
                c = c_out
                idx += 1
            self.stages.append(blocks)
            self.residual.append(res)
            if search_depth and n > 1:
                self.depths.append(ArchDim(f"stage{s}/depth", range(1, n + 1), prefix="d"))
            else:
                self.depths.append(nn.Identity())
        self.feature_mix = nn.Sequential(
            nn.Conv2d(c, feature_mix_channels, 1, bias=False),
            BatchNorm2d(feature_mix_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_mix_channels, num_classes)

    def _stage(self, x: Tensor, s: int) -> Tensor:
        blocks, res, depth = self.stages[s], self.residual[s], self.depths[s]

        def run(x: Tensor, upto: int, keep: Sequence[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
            kept = {}
            for b in range(upto):
                y = blocks[b](x)
                x = y + x if res[b] else y
                if b + 1 in keep:
                    kept[b + 1] = x
            return x, kept

        if isinstance(depth, nn.Identity):
            return run(x, len(blocks))[0]
        sel = depth(x)
        if sel.index is not None:
            return run(x, sel.values[sel.index])[0]
        depths = sorted({sel.values[j] for j in sel.active})
        _, kept = run(x, depths[-1], depths)
        outs = [kept[sel.values[j]].contiguous() for j in sel.active]
        w = sel.weights[..., list(sel.active)]
        return masked_sum(outs, w.to(outs[0].dtype))

    def forward(self, x: Tensor) -> Tensor:
        x = self.first_block(self.first_conv(x))
        for s in range(len(self.stages)):
            x = self._stage(x, s)
        return self.classifier(self.pool(self.feature_mix(x)).flatten(1))

    def feature_layers(self) -> list[nn.Module]:
        return [self.first_block, *[b for st in self.stages for b in st], self.feature_mix, self.classifier]

    def shared_modules(self) -> list[nn.Module]:
        return [self.first_block, *self.stages]


def mobilenet_entangled(**kw) -> EntangledMobileNet:
    """Entangled MobileNet supernet (see :class:`EntangledMobileNet`; small defaults as
    :func:`lidsplit.spaces.mobilenet`)."""
    return EntangledMobileNet(**kw)
