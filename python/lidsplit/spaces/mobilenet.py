"""MobileNet / ProxylessNAS layer space: per searchable block, an MBConv with kernel {3,5,7} x expansion
{3,6} (op names ``"{k}x{k}_MBConv{e}"``, ProxylessNAS's), plus ``zero`` (the block is skipped: output =
input) where stride is 1 and input and output widths match.

Network: first conv 3x3 (stride `first_stride`) BN ReLU6, a fixed MBConv1 3x3 block, the searchable
stages (out_channels, blocks, stride of the first block), a 1x1 feature-mix conv BN ReLU6, global average
pool, linear classifier. Blocks with a residual shortcut output ``choice(x) + x``. Edge labels are
``"block1"``, ``"block2"``, ... (block 0 is the fixed first block); each block is its own decision.

``first_block_kernels`` (default ``(3,)``: fixed, as ProxylessNAS's code) with more than one kernel makes
the first block searchable too: an edge ``"block0"`` with ops ``"{k}x{k}_MBConv1"`` (listed first).
With ProxylessNAS's ImageNet stages the space has 6^6 * 7^15 ~ 2.2e17 architectures; letting the first
block choose among kernels (3, 5, 7) gives 3 * 6^6 * 7^15 ~ 6.645e17, the size quoted by the
search-space complexity paper (see ``lidsplit.complexity.size``).

``entangled=True`` (TangleNAS's MobileNetV3 / OFA space, small): per block a kernel size and an expansion
ratio as two edges entangled in one set of weights, per stage a depth (number of blocks, 1..n). Edges:
``block{i}/kernel`` (ops ``3x3 5x5 7x7``: the block's :class:`EntangledMBConv`), ``block{i}/expand``
(ops ``e3 e6``), ``stage{s}/depth`` (ops ``d1 .. dn``). Hidden channels are prefixes of ``c_in * max(expand)``,
kernels centred in the largest. In a mixture the depthwise conv is the combi-superposition of kernel x
expansion (coefficients ``w_k * w_e``, BatchNorm-scaled as ``bn_scale``); the expand / project convs are
sliced to the widest active expansion. A stage's depth mixture is the weighted sum of the outputs after
each active number of blocks (one pass through the deepest). ``set_mixture(model, "explicit")`` runs
every (kernel, expansion) block separately and sums them: the weight-sharing computation of the same space.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.ops import masked_sum
from lidsplit.spaces.common import MBConv, Supernet, Zero
from lidsplit.spaces.registry import register_space
from lidsplit.supernet import BatchNorm2d, Choice
from lidsplit.supernet.entangled import (
    ArchDim,
    Entangled,
    Scaled,
    Sel,
    SuperConv2d,
    combos,
    grouped,
    resolve,
    weighted_sum,
)

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)


def mb_op_names(kernels: Sequence[int] = KERNELS, expansions: Sequence[int] = EXPANSIONS) -> tuple[str, ...]:
    return tuple(f"{k}x{k}_MBConv{e}" for k in kernels for e in expansions)


class MobileBlock(nn.Module):
    def __init__(self, op: nn.Module, residual: bool):
        super().__init__()
        self.op, self.residual = op, residual

    def forward(self, x: Tensor) -> Tensor:
        y = self.op(x)
        return y + x if self.residual else y


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
                return weighted_sum(outs, cmb.coeffs)
        return self._path(x, own, h)


class MobileNetSupernet(Supernet):
    """The MobileNet / ProxylessNAS supernet, weight-sharing (default) or ``entangled`` (module doc).

    Both: ``num_classes``, ``in_channels``, ``first_channels``, ``first_block_channels``, ``stages``
    (``(out_channels, blocks, stride)`` each), ``feature_mix_channels``, ``first_stride``, ``kernels``,
    ``expansions``, ``track_running_stats``. Weight-sharing only: ``allow_zero``, ``first_block_kernels``.
    Entangled only: ``search_depth`` (a depth edge per stage of more than one block), ``bn_scale``.
    """

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
        allow_zero: bool = True,
        track_running_stats: bool = True,
        first_block_kernels: Sequence[int] = (3,),
        entangled: bool = False,
        search_depth: bool = True,
        bn_scale: str = "after",
    ):
        super().__init__()
        track = track_running_stats
        first_block_kernels = tuple(first_block_kernels)
        if not first_block_kernels:
            raise ValueError("lidsplit: mobilenet first_block_kernels must hold at least one kernel size")
        if entangled and len(first_block_kernels) > 1:
            raise ValueError("lidsplit: mobilenet(entangled=True) has a fixed first block: first_block_kernels must "
                             f"hold one kernel size, got {first_block_kernels}")
        for k in (*kernels, *first_block_kernels):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"lidsplit: mobilenet kernel sizes must be odd, got {k}")
        self.entangled = bool(entangled)
        self.first_conv = nn.Sequential(
            nn.Conv2d(in_channels, first_channels, 3, first_stride, 1, bias=False),
            BatchNorm2d(first_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        if entangled:
            self.first_block: nn.Module = MBConv(first_channels, first_block_channels, first_block_kernels[0], 1, 1,
                                                 track)
            c = self._entangled_stages(first_block_channels, stages, kernels, expansions, search_depth, track,
                                       bn_scale)
        else:
            self.first_block = MobileBlock(self._first_op(first_channels, first_block_channels, first_block_kernels,
                                                          track), False)
            c = self._blocks(first_block_channels, stages, kernels, expansions, allow_zero, track)
        self.feature_mix = nn.Sequential(
            nn.Conv2d(c, feature_mix_channels, 1, bias=False),
            BatchNorm2d(feature_mix_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_mix_channels, num_classes)

    @staticmethod
    def _first_op(c_in: int, c_out: int, kernels: tuple[int, ...], track: bool) -> nn.Module:
        if len(kernels) == 1:
            return MBConv(c_in, c_out, kernels[0], 1, 1, track)
        return Choice("block0", [(f"{k}x{k}_MBConv1", MBConv(c_in, c_out, k, 1, 1, track)) for k in kernels])

    def _blocks(self, c: int, stages: Sequence[tuple[int, int, int]], kernels: Sequence[int],
                expansions: Sequence[int], allow_zero: bool, track: bool) -> int:
        """The weight-sharing body (``self.blocks``: one Choice per block); returns its output width."""
        names = mb_op_names(kernels, expansions)
        blocks = []
        idx = 1
        for c_out, n, stride in stages:
            for b in range(n):
                s = stride if b == 0 else 1
                ops = [(name, MBConv(c, c_out, k, s, e, track)) for name, (k, e) in zip(names, ((k, e) for k in kernels for e in expansions))]
                residual = s == 1 and c == c_out
                if residual and allow_zero:
                    ops.append(("zero", Zero(c_out, 1)))
                blocks.append(MobileBlock(Choice(f"block{idx}", ops), residual))
                c = c_out
                idx += 1
        if not blocks:
            raise ValueError("lidsplit: mobilenet needs at least one searchable block")
        self.blocks = nn.ModuleList(blocks)
        return c

    def _entangled_stages(self, c: int, stages: Sequence[tuple[int, int, int]], kernels: Sequence[int],
                          expansions: Sequence[int], search_depth: bool, track: bool, bn_scale: str) -> int:
        """The entangled body (``self.stages`` of :class:`EntangledMBConv`, ``self.depths``); returns its
        output width."""
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
        if idx == 1:
            raise ValueError("lidsplit: mobilenet needs at least one searchable block")
        return c

    def _stage(self, x: Tensor, s: int) -> Tensor:
        """Entangled stage ``s``: its blocks up to the selected depth (a depth mixture: the weighted sum of
        the outputs after each active depth, one pass through the deepest)."""
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

    def _body(self) -> list[nn.Module]:
        """The searchable blocks in forward order."""
        return [b for st in self.stages for b in st] if self.entangled else list(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        x = self.first_block(self.first_conv(x))
        if self.entangled:
            for s in range(len(self.stages)):
                x = self._stage(x, s)
        else:
            for blk in self.blocks:
                x = blk(x)
        x = self.pool(self.feature_mix(x)).flatten(1)
        return self.classifier(x)

    def feature_layers(self) -> list[nn.Module]:
        """Every block output (fixed first block included), the feature-mix output, the logits."""
        return [self.first_block, *self._body(), self.feature_mix, self.classifier]

    def shared_modules(self) -> list[nn.Module]:
        return [self.first_block, *self._body()]


@register_space("mobilenet", aliases=("proxyless", "proxylessnas"))
def mobilenet(**kw) -> MobileNetSupernet:
    """ProxylessNAS-style supernet; see :class:`MobileNetSupernet` for the arguments (small defaults;
    ``entangled=True``: TangleNAS's entangled kernels x expansions with stage depths)."""
    return MobileNetSupernet(**kw)
