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
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.supernet import BatchNorm2d, Choice
from lidsplit.spaces.common import MBConv, Supernet, Zero

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


class MobileNetSupernet(Supernet):
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
    ):
        super().__init__()
        track = track_running_stats
        first_block_kernels = tuple(first_block_kernels)
        if not first_block_kernels:
            raise ValueError("lidsplit: mobilenet first_block_kernels must hold at least one kernel size")
        for k in (*kernels, *first_block_kernels):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"lidsplit: mobilenet kernel sizes must be odd, got {k}")
        self.first_conv = nn.Sequential(
            nn.Conv2d(in_channels, first_channels, 3, first_stride, 1, bias=False),
            BatchNorm2d(first_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        if len(first_block_kernels) == 1:
            first_op: nn.Module = MBConv(first_channels, first_block_channels, first_block_kernels[0], 1, 1, track)
        else:
            first_op = Choice("block0", [
                (f"{k}x{k}_MBConv1", MBConv(first_channels, first_block_channels, k, 1, 1, track)) for k in first_block_kernels
            ])
        self.first_block = MobileBlock(first_op, False)
        names = mb_op_names(kernels, expansions)
        blocks = []
        c = first_block_channels
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
        self.feature_mix = nn.Sequential(
            nn.Conv2d(c, feature_mix_channels, 1, bias=False),
            BatchNorm2d(feature_mix_channels, track_running_stats=track),
            nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(feature_mix_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.first_block(self.first_conv(x))
        for blk in self.blocks:
            x = blk(x)
        x = self.pool(self.feature_mix(x)).flatten(1)
        return self.classifier(x)

    def feature_layers(self) -> list[nn.Module]:
        """Every block output (fixed first block included), the feature-mix output, the logits."""
        return [self.first_block, *self.blocks, self.feature_mix, self.classifier]

    def shared_modules(self) -> list[nn.Module]:
        return [self.first_block, *self.blocks]


def mobilenet(**kw) -> MobileNetSupernet:
    """ProxylessNAS-style supernet; see :class:`MobileNetSupernet` for the arguments (small defaults)."""
    return MobileNetSupernet(**kw)
