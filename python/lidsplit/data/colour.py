"""A second deterministic image task from scikit-learn's digits: colour digits under projective warps.

``colour_digits`` is the task of the ``nb201_colour`` ground-truth table. It is built to be
independent of ``hard_digits`` (the ``nb201_digits`` table's task): its own split of the sources,
3-channel images, and a different distortion family:

1. Sources as in ``hard_digits`` (exact duplicates dropped, split per class by ``fractions``, so no
   source digit and no copy of one is in two splits), ``variants`` copies per source and split.
2. Geometry: a *projective* (perspective) warp, i.e. a random homography (rotation, isotropic scale,
   translation and two perspective terms that foreshorten the digit along a random direction), then a
   Gaussian blur of random width; no elastic field and no shear (``hard_digits``'s family).
3. Colour: the warped stroke mask ``m`` in [0, 1] mixes a foreground and a background colour drawn per
   image (``bg + m (fg - bg)``): the two colours are ``centre +- contrast / 2 * direction`` for a random
   unit direction in RGB, so the stroke always differs from the background by ``contrast`` in colour
   but not necessarily in any one channel; its luminance is never below the background's, and the
   midpoint ``centre`` stays within ``centre_spread`` of grey. (Pilots with both polarities and any
   midpoint left most NB201 cells at chance after the table's 4 epochs: the mean image then carries no
   shape, and cells without an early convolution cannot remove the per-image colour offset.)
   A linear illumination ramp of random direction and per-channel strength is added on top.
4. Damage: with probability ``stripes`` one or two full-length stripes (a row or a column) of a random
   colour, then salt-and-pepper noise (each pixel set to black or white in all channels with a random
   per-image rate up to ``salt_pepper``).

Every random draw of split ``s`` comes from a ``torch.Generator`` seeded with
``derive_seed("colour_digits", seed, s)``, in a fixed order, so the data are a pure function of the
arguments (bit-identical across runs on CPU). ``strength`` scales every geometric, blur, ramp and noise
magnitude (0: clean geometry, only the colours remain). Images are standardised per channel with the
train split's statistics (``DataSplits.meta``). Change the magnitudes in :data:`COLOUR_DIGITS_DEFAULTS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lidsplit.data.core import DataSplits, derive_seed
from lidsplit.data.distorted import check_source, check_splits, copies_by_source, merge_magnitudes

__all__ = ["colour_digits", "colour_distort", "COLOUR_DIGITS_DEFAULTS"]

#: Magnitudes at ``strength=1`` (angles in degrees, lengths in units of the canvas half-width,
#: colours in [0, 1]). ``stripes`` is a probability and is not scaled by ``strength`` beyond 1; the
#: colour entries are not scaled. Chosen by pilots (benchmarks/ground_truth/README.md): moving
#: difficulty from damage (stripes, salt-and-pepper) to geometry raised the seed-to-seed tau.
COLOUR_DIGITS_DEFAULTS: dict[str, float] = {
    "rotation_deg": 20.0,  # uniform in [-r, r]
    "scale_log": 0.1,  # isotropic scale exp(U(-s, s))
    "shift": 0.15,  # uniform in [-t, t] per axis
    "perspective": 0.2,  # the homography's bottom row (p, q), each uniform in [-p, p]
    "blur_max": 0.375,  # Gaussian blur sigma (pixels) uniform in [0, b]
    "contrast_min": 0.5,  # colour distance |fg - bg| uniform in [c, contrast_max]
    "contrast_max": 0.9,
    "centre_spread": 0.4,  # the colours' midpoint is grey +- spread / 2 per channel (of the room left)
    "ramp": 0.15,  # illumination ramp: per-channel slope uniform in [0, r] across the canvas
    "stripes": 0.1,  # probability of stripe occluders
    "salt_pepper": 0.01,  # per-image rate of salt-and-pepper pixels uniform in [0, sp]
}


#: ITU-R BT.601 luma weights of R, G, B.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def _homography_grid(n: int, size: int, fov: float, m: dict[str, float], s: float,
                     u: Callable[..., Tensor]) -> Tensor:
    """(n, size, size, 2) source coordinates (grid_sample's, in [-1, 1]) of every output pixel under a
    random homography; ``u(lo, hi, *shape)`` draws (n, *shape) uniforms from the copy's generator."""
    rot = u(-1, 1) * math.radians(m["rotation_deg"]) * s
    scale = torch.exp(u(-1, 1) * m["scale_log"] * s)
    shift = u(-1, 1, 2) * m["shift"] * s
    persp = u(-1, 1, 2) * m["perspective"] * s
    cos, sin = torch.cos(rot), torch.sin(rot)
    # output coords q (canvas, in [-1, 1]) -> source coords: undo the shift, the perspective row
    # (x' = x / (1 + p.x)), rotation and scale; `fov` widens what the canvas sees of the source.
    lin = torch.linspace(-1.0 + 1.0 / size, 1.0 - 1.0 / size, size)  # pixel centres (align_corners=False)
    qy, qx = torch.meshgrid(lin, lin, indexing="ij")
    q = torch.stack([qx, qy], -1).view(1, size * size, 2) * fov - shift.view(n, 1, 2)
    w = 1.0 - (q * persp.view(n, 1, 2)).sum(-1, keepdim=True)  # inverse of x / (1 + p.x) is x / (1 - p.x)
    q = q / w.clamp_min(0.2)
    rx = (cos.view(n, 1) * q[..., 0] + sin.view(n, 1) * q[..., 1]) / scale.view(n, 1)
    ry = (-sin.view(n, 1) * q[..., 0] + cos.view(n, 1) * q[..., 1]) / scale.view(n, 1)
    return torch.stack([rx, ry], -1).view(n, size, size, 2)


def _blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Separable 3-tap Gaussian blur of (n, 1, H, W) with a per-image ``sigma`` (n,) in pixels."""
    n = x.shape[0]
    k = torch.tensor([-1.0, 0.0, 1.0])
    w = torch.exp(-(k.view(1, 3) ** 2) / (2.0 * sigma.view(n, 1).clamp_min(1e-3) ** 2))
    w = w / w.sum(1, keepdim=True)  # (n, 3)
    y = x.view(1, n, *x.shape[2:])
    y = F.conv2d(F.pad(y, (1, 1, 0, 0), mode="replicate"), w.view(n, 1, 1, 3), groups=n)
    y = F.conv2d(F.pad(y, (0, 0, 1, 1), mode="replicate"), w.view(n, 1, 3, 1), groups=n)
    return y.view_as(x)


def colour_distort(
    x: Tensor,
    generator: torch.Generator,
    *,
    image_size: int = 8,
    fov: float = 1.25,
    strength: float = 1.0,
    magnitudes: dict[str, float] | None = None,
) -> Tensor:
    """One random colour copy of each digit of ``x`` (N, 1, h, w), values in [0, 1].

    Returns (N, 3, image_size, image_size) float32 in [0, 1] (not standardised). The draws consume
    ``generator`` in a fixed order (geometry, blur, colours, ramp, stripes, salt-and-pepper).
    """
    check_source(x, "colour_distort")
    if not 4 <= image_size <= 10 or fov <= 0 or strength < 0:
        raise ValueError(
            f"lidsplit: colour_distort: need image_size in 4..10, fov > 0, strength >= 0 "
            f"(got {image_size}, {fov}, {strength})"
        )
    m = merge_magnitudes(COLOUR_DIGITS_DEFAULTS, magnitudes, "colour_distort")
    if not (0.0 <= m["contrast_min"] <= m["contrast_max"] <= 1.0 and 0.0 <= m["stripes"] <= 1.0
            and 0.0 <= m["centre_spread"] <= 1.0):
        raise ValueError(
            f"lidsplit: colour_distort: need 0 <= contrast_min <= contrast_max <= 1, stripes and centre_spread "
            f"in [0, 1] (got {m['contrast_min']}, {m['contrast_max']}, {m['stripes']}, {m['centre_spread']})"
        )
    n, g, s, size = x.shape[0], generator, float(strength), int(image_size)

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    grid = _homography_grid(n, size, fov, m, s, u)
    mask = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = _blur(mask, u(0.0, m["blur_max"] * s)).clamp(0.0, 1.0)

    # colours: fg / bg = centre +- c/2 * v, with the centre drawn so that both stay inside the RGB cube
    v = torch.randn(n, 3, generator=g)
    v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-6)
    # the stroke is never darker than the background (luminance): with both polarities the mean image
    # carries no shape and the pilots' networks sat at chance for all 4 epochs (README, pilots p1-p3)
    v = torch.where((v @ _LUMA).view(n, 1) < 0, -v, v)
    c = u(m["contrast_min"], m["contrast_max"]).view(n, 1)
    half = 0.5 * c * v.abs()
    centre = 0.5 + u(-0.5, 0.5, 3) * m["centre_spread"] * (1.0 - 2.0 * half)
    fg, bg = centre + 0.5 * c * v, centre - 0.5 * c * v
    out = bg.view(n, 3, 1, 1) + mask * (fg - bg).view(n, 3, 1, 1)

    # illumination ramp along a random direction, its strength per channel
    ang = u(0.0, 2.0 * math.pi)
    lin = torch.linspace(-1.0, 1.0, size)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    ramp = torch.cos(ang).view(n, 1, 1) * xx + torch.sin(ang).view(n, 1, 1) * yy  # (n, H, W)
    out = out + 0.5 * u(0.0, m["ramp"] * s, 3).view(n, 3, 1, 1) * ramp.unsqueeze(1)

    # stripes: one or two full rows / columns of a random colour
    on = torch.rand(n, generator=g) < m["stripes"] * min(s, 1.0)
    two = torch.rand(n, generator=g) < 0.5
    colour = u(0.0, 1.0, 3).view(n, 3, 1, 1)
    rng = torch.arange(size)
    stripe = torch.zeros(n, size, size, dtype=torch.bool)
    for k in range(2):
        vertical = torch.rand(n, generator=g) < 0.5
        pos = torch.randint(0, size, (n,), generator=g)
        hit = rng.view(1, size) == pos.view(n, 1)  # (n, size)
        line = torch.where(vertical.view(n, 1, 1), hit.view(n, 1, size).expand(n, size, size),
                           hit.view(n, size, 1).expand(n, size, size))
        stripe |= line & (on & (two | (k == 0))).view(n, 1, 1)
    out = torch.where(stripe.unsqueeze(1), colour.expand_as(out), out)

    # salt and pepper: whole pixels to black or white
    rate = u(0.0, m["salt_pepper"] * s).view(n, 1, 1)
    hit = torch.rand(n, size, size, generator=g) < rate
    salt = (torch.rand(n, size, size, generator=g) < 0.5).float()
    out = torch.where(hit.unsqueeze(1), salt.unsqueeze(1).expand_as(out), out)
    return out.clamp(0.0, 1.0).contiguous()


def colour_digits(
    seed: int = 0,
    *,
    image_size: int = 8,
    fractions: Sequence[float] = (0.5, 0.15, 0.35),
    variants: Sequence[int] = (10, 4, 32),
    strength: float = 1.0,
    fov: float = 1.25,
    magnitudes: dict[str, float] | None = None,
) -> DataSplits:
    """Colour digits under projective warps: train / val / test from disjoint source digits.

    Defaults (the task of the ``nb201_colour`` ground-truth table): 1,797 digits minus exact duplicates
    split 50 / 15 / 35 % into sources; 10 / 4 / 32 copies per source give 9,010 train, 1,068 val and
    20,128 test images of 3 x 8 x 8, 10 classes, standardised per channel with train statistics.
    ``seed`` fixes the source split and every draw. See the module doc for the transforms;
    ``magnitudes`` overrides entries of :data:`COLOUR_DIGITS_DEFAULTS`.
    """
    fr, var = check_splits("colour_digits", fractions, variants)
    # its own source split: a seed of colour_digits and the same seed of hard_digits test different digits
    return copies_by_source(
        "colour_digits", seed, derive_seed("colour_digits.split", int(seed)), fr, var,
        lambda x, g: colour_distort(x, g, image_size=image_size, fov=fov, strength=strength, magnitudes=magnitudes),
        {"image_size": int(image_size), "strength": float(strength), "fov": float(fov),
         "magnitudes": {**COLOUR_DIGITS_DEFAULTS, **(magnitudes or {})}},
    )
