"""The toy conv-macro space of TangleNAS (its Appendix C): four conv layers, each choosing its kernel
size in {3, 5, 7} and its number of channels (layer 1: {8, 16, 32}, 2: {16, 32, 64}, 3: {32, 64, 128},
4: {64, 128, 256}); 3^8 = 6561 architectures.

Network: four [entangled conv -> BatchNorm -> ReLU] layers, 2x2 max pooling after layers 2 and 4,
global average pooling, linear classifier (reading the widest layer 4, zero beyond the chosen width).
Edges, in order: ``conv1/kernel`` (ops ``3x3 5x5 7x7``), ``conv1/channels`` (ops ``c8 c16 c32``),
``conv2/kernel``, ``conv2/channels``, ... Each conv is a combi-superposition of its kernel and output
channels (coefficients ``w_kernel[i] * w_channels[j]``); its input channels follow the previous layer.

``width_mult`` scales every channel count (tests use small widths); ``entangled=False`` is not offered:
``set_mixture(model, "explicit")`` gives the weight-sharing computation of the same space.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lidsplit.spaces.common import Supernet
from lidsplit.supernet.entangled import ArchDim, EntangledConv2d

TOY_CHANNELS: tuple[tuple[int, ...], ...] = ((8, 16, 32), (16, 32, 64), (32, 64, 128), (64, 128, 256))
TOY_KERNELS: tuple[int, ...] = (3, 5, 7)


class ToyMacro(Supernet):
    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 3,
        channels: Sequence[Sequence[int]] = TOY_CHANNELS,
        kernels: Sequence[int] = TOY_KERNELS,
        width_mult: float = 1.0,
        pool_after: Sequence[int] = (1, 3),
        bn_scale: str = "after",
        track_running_stats: bool = True,
    ):
        super().__init__()
        chans = [tuple(max(1, int(round(c * width_mult))) for c in layer) for layer in channels]
        layers = []
        prev: int | ArchDim = in_channels
        for i, cs in enumerate(chans):
            dim = ArchDim(f"conv{i + 1}/channels", cs, prefix="c")
            layers.append(EntangledConv2d(f"conv{i + 1}/kernel", prev, dim, kernels, bn=True, bn_scale=bn_scale,
                                          track_running_stats=track_running_stats))
            prev = dim
        self.layers = nn.ModuleList(layers)
        self.pool_after = tuple(pool_after)
        self.act = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(max(chans[-1]), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = self.act(layer(x))
            if i in self.pool_after:
                x = self.pool(x)
        return self.classifier(self.gap(x).flatten(1))

    def feature_layers(self) -> list[nn.Module]:
        return list(self.layers)

    def shared_modules(self) -> list[nn.Module]:
        return list(self.layers)


def toy_macro(**kw) -> ToyMacro:
    """TangleNAS toy conv-macro supernet (see :class:`ToyMacro` for the arguments)."""
    return ToyMacro(**kw)
