"""Building blocks shared by the built-in spaces (NB201 / DARTS / ProxylessNAS ops), and their base class."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lidsplit.supernet import BatchNorm2d, SearchSpace, search_space
from lidsplit.supernet.choice import zeros_like_output


class Supernet(nn.Module):
    """Base of the built-in supernets."""

    #: The tasks this space's architectures are designed for (the search-space complexity paper's
    #: "multi-task ability" counts the distinct entries). A language-model space would declare
    #: ``("language_modeling",)``; a multi-task backbone space several.
    tasks: tuple[str, ...] = ("classification",)

    @property
    def space(self) -> SearchSpace:
        return search_space(self)

    def feature_layers(self) -> list[nn.Module]:
        """Modules whose outputs characterise the network (in forward order), for ``record_outputs``."""
        raise NotImplementedError

    def shared_modules(self) -> list[nn.Module]:
        """Modules whose parameters count as "shared" for gradient matching (GM-NAS): the searchable body
        without stem and classifier head."""
        raise NotImplementedError


class Zero(nn.Module):
    """The ``none`` op: exact zeros of the output shape (channels, stride), no graph, no compute."""

    is_zero = True

    def __init__(self, c_out: int | None = None, stride: int = 1):
        super().__init__()
        self.c_out, self.stride = c_out, stride

    def forward(self, x: Tensor) -> Tensor:
        return zeros_like_output(x, self.c_out, self.stride)

    def extra_repr(self) -> str:
        return f"c_out={self.c_out}, stride={self.stride}"


class ReLUConvBN(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation=1, affine=True, track=True, bias=False):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, bias=bias),
            BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class FactorizedReduce(nn.Module):
    """Stride-2 reduction by two half-width 1x1 convs on offset grids (DARTS), odd sizes padded."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True, track: bool = True):
        super().__init__()
        if c_out % 2:
            raise ValueError(f"lidsplit: FactorizedReduce needs an even output width, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = BatchNorm2d(c_out, affine=affine, track_running_stats=track)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(x)
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class Pool(nn.Module):
    """avg/max 3x3 pooling (NB201: 1x1 ReLUConvBN first when widths differ; DARTS search: BN after)."""

    def __init__(self, kind: str, c_in: int, c_out: int, stride: int, affine=True, track=True, bn_after=False):
        super().__init__()
        self.pre = None if c_in == c_out else ReLUConvBN(c_in, c_out, 1, 1, 0, affine=affine, track=track)
        if kind == "avg":
            self.pool = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        elif kind == "max":
            self.pool = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            raise ValueError(f"lidsplit: unknown pooling {kind!r}")
        self.bn = BatchNorm2d(c_out, affine=False, track_running_stats=track) if bn_after else None

    def forward(self, x: Tensor) -> Tensor:
        if self.pre is not None:
            x = self.pre(x)
        x = self.pool(x)
        return self.bn(x) if self.bn is not None else x


class DilConv(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, dilation, affine=True, track=True):
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation, groups=c_in, bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            BatchNorm2d(c_out, affine=affine, track_running_stats=track),
        )


class SepConv(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding, affine=True, track=True):
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine, track),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine, track),
        )


class MBConv(nn.Module):
    """ProxylessNAS mobile inverted bottleneck: [1x1 expand-BN-ReLU6] kxk depthwise-BN-ReLU6 1x1-BN."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, track: bool = True):
        super().__init__()
        mid = c_in * expand
        self.expand = (
            None
            if expand == 1
            else nn.Sequential(nn.Conv2d(c_in, mid, 1, bias=False), BatchNorm2d(mid, track_running_stats=track), nn.ReLU6())
        )
        self.depthwise = nn.Sequential(
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False),
            BatchNorm2d(mid, track_running_stats=track),
            nn.ReLU6(),
        )
        self.project = nn.Sequential(nn.Conv2d(mid, c_out, 1, bias=False), BatchNorm2d(c_out, track_running_stats=track))

    def forward(self, x: Tensor) -> Tensor:
        if self.expand is not None:
            x = self.expand(x)
        return self.project(self.depthwise(x))
