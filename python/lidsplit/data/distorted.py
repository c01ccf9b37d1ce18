"""A harder, deterministic image task derived from scikit-learn's digits (no download, pure torch).

The raw digits test split (360 images) cannot rank architectures: standalone NB201 cells all land
between 97.8 % and 99.2 % there. ``hard_digits`` renders many seeded, distorted copies of every
digit instead:

1. Exact duplicate images of ``load_digits`` are dropped, then the remaining *source* images are split
   per class into train / val / test sources (``fractions``), so no source image (and no copy of one)
   is in two splits.
2. Each source image yields ``variants`` copies per split. A copy is sampled with ``grid_sample``
   (bilinear, zero background) through a random affine map (rotation, anisotropic scale, shear,
   translation) plus an elastic displacement field (a coarse Gaussian grid, bicubically upsampled),
   on an output canvas of ``image_size`` pixels that sees ``fov`` times the source's extent (so that
   shifted digits stay mostly in frame).
3. Photometric damage: random contrast and background level, an occluding rectangle (with
   probability ``occlusion``) and additive Gaussian pixel noise of a random level.

Every random draw of split ``s`` comes from a ``torch.Generator`` seeded with
``derive_seed("hard_digits", seed, s)``, in a fixed order, so the data are a pure function of the
arguments (bit-identical across runs on CPU). ``strength`` scales every geometric and noise magnitude
(0: clean, only resampled to ``image_size``).

Images are standardised with the mean / standard deviation of the train split (``DataSplits.meta``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import DataSplits, Dataset, channel_stats, normalise, stratified_split
from lidsplit.data.datasets import load_digits_arrays

__all__ = ["hard_digits", "distort_digits", "HARD_DIGITS_DEFAULTS"]

#: Magnitudes at ``strength=1`` (angles in degrees, lengths in units of the source's half-width).
#: Strong geometry, little pixel noise: the difficulty is meant to be learnable, so that it separates
#: architectures by what they can learn; irreducible noise caps every architecture at the same accuracy
#: (a first protocol with noise up to 0.35 put NB201 cells within 2 points of each other).
HARD_DIGITS_DEFAULTS: dict[str, float] = {
    "rotation_deg": 30.0,  # uniform in [-r, r]
    "scale_log": 0.2,  # per-axis scale exp(U(-s, s))
    "shear": 0.2,  # uniform in [-h, h]
    "shift": 0.25,  # uniform in [-t, t] per axis
    "elastic": 0.12,  # std of the coarse displacement grid
    "noise_max": 0.1,  # pixel-noise std uniform in [0, n] (image range [0, 1])
    "background_max": 0.1,  # background level uniform in [0, b]
    "contrast_min": 0.7,  # contrast uniform in [c, 1]
}


def _load_source() -> tuple[Tensor, Tensor]:
    """``load_digits`` images (N, 1, 8, 8) float32 in [0, 1] and labels, exact duplicates dropped."""
    images, target = load_digits_arrays()
    # exact duplicates would put the same picture in two splits; keep the first of each
    _, first = np.unique(images.reshape(len(images), -1), axis=0, return_index=True)
    keep = np.sort(first)
    x = torch.from_numpy(images[keep] / 16.0).float().unsqueeze(1)
    return x.contiguous(), torch.from_numpy(target[keep])


def _elastic_field(n: int, size: int, grid: int, std: float, g: Tensor | torch.Generator) -> Tensor:
    """(n, size, size, 2) smooth displacements: a (grid x grid) Gaussian field, bicubically upsampled."""
    coarse = torch.randn(n, 2, grid, grid, generator=g) * std
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).permute(0, 2, 3, 1)


def check_source(x: Tensor, who: str) -> None:
    """ValueError naming ``who`` unless ``x`` is a float (N, 1, H, W) CPU tensor (a batch of sources)."""
    if not isinstance(x, Tensor) or x.dim() != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(
            f"lidsplit: {who}: x must be a float (N, 1, H, W) tensor, got "
            f"{getattr(x, 'dtype', type(x))} {tuple(getattr(x, 'shape', ()))}"
        )
    if x.device.type != "cpu":
        raise ValueError(f"lidsplit: {who}: x must be on the CPU (seeded CPU generator), got {x.device}")


def merge_magnitudes(defaults: dict[str, float], magnitudes: dict[str, float] | None, who: str) -> dict[str, float]:
    """``defaults`` updated with ``magnitudes`` (as floats); a ValueError naming ``who`` for unknown keys."""
    m = dict(defaults)
    if magnitudes:
        unknown = sorted(set(magnitudes) - set(m))
        if unknown:
            raise ValueError(f"lidsplit: {who}: unknown magnitudes {unknown}; known {sorted(m)}")
        m.update({k: float(v) for k, v in magnitudes.items()})
    return m


def distort_digits(
    x: Tensor,
    generator: torch.Generator,
    *,
    image_size: int = 8,
    fov: float = 1.3,
    strength: float = 1.0,
    occlusion: float = 0.2,
    elastic_grid: int = 3,
    magnitudes: dict[str, float] | None = None,
) -> Tensor:
    """One random distorted copy of each image of ``x`` (N, 1, h, w), values in [0, 1].

    Returns (N, 1, image_size, image_size) float32 (not standardised; roughly in [-1, 2] after noise).
    The draws consume ``generator`` in a fixed order (affine, elastic, photometric, occlusion, noise).
    """
    check_source(x, "distort_digits")
    if image_size < 4 or fov <= 0 or strength < 0 or not 0.0 <= occlusion <= 1.0 or elastic_grid < 2:
        raise ValueError(
            f"lidsplit: distort_digits: need image_size >= 4, fov > 0, strength >= 0, occlusion in [0, 1], "
            f"elastic_grid >= 2 (got {image_size}, {fov}, {strength}, {occlusion}, {elastic_grid})"
        )
    m = merge_magnitudes(HARD_DIGITS_DEFAULTS, magnitudes, "distort_digits")
    n, g, s = x.shape[0], generator, float(strength)
    x = x.float()

    def u(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    # --- geometry: output pixel (normalised coords) -> source coords ---
    rot = u(-1, 1) * math.radians(m["rotation_deg"]) * s
    sx, sy = torch.exp(u(-1, 1) * m["scale_log"] * s), torch.exp(u(-1, 1) * m["scale_log"] * s)
    shear = u(-1, 1) * m["shear"] * s
    shift = u(-1, 1, 2) * m["shift"] * s
    cos, sin = torch.cos(rot), torch.sin(rot)
    # forward map source -> image: R(rot) @ [[sx, shear], [0, sy]]; sample with its inverse
    fwd = torch.stack([
        torch.stack([cos * sx, cos * shear - sin * sy], -1),
        torch.stack([sin * sx, sin * shear + cos * sy], -1),
    ], -2)
    inv = torch.linalg.inv(fwd) * fov  # the canvas sees `fov` times the source extent
    theta = torch.cat([inv, (-inv @ shift.unsqueeze(-1)) / fov], -1)  # (n, 2, 3)
    grid = F.affine_grid(theta, [n, 1, image_size, image_size], align_corners=False)
    grid = grid + _elastic_field(n, image_size, elastic_grid, m["elastic"] * s, g)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # --- photometric ---
    contrast = u(1.0 - (1.0 - m["contrast_min"]) * min(s, 1.0), 1.0).view(n, 1, 1, 1)
    background = u(0.0, m["background_max"] * s).view(n, 1, 1, 1)
    out = background + contrast * out * (1.0 - background)
    # occluder: an axis-aligned rectangle of a random grey level, side 1/4..1/2 of the canvas
    occ = torch.rand(n, generator=g) < occlusion * min(s, 1.0)
    side = (u(0.25, 0.5, 2) * image_size).round().clamp(min=1)
    corner = u(0.0, 1.0, 2) * (image_size - side)
    level = u(0.0, 1.0).view(n, 1, 1)
    rng = torch.arange(image_size, dtype=torch.float32)
    rows = (rng.view(1, -1) >= corner[:, :1].round()) & (rng.view(1, -1) < corner[:, :1].round() + side[:, :1])
    cols = (rng.view(1, -1) >= corner[:, 1:].round()) & (rng.view(1, -1) < corner[:, 1:].round() + side[:, 1:])
    mask = (rows.unsqueeze(2) & cols.unsqueeze(1)) & occ.view(n, 1, 1)
    out = torch.where(mask.unsqueeze(1), level.unsqueeze(1).expand_as(out), out)
    sigma = u(0.0, m["noise_max"] * s).view(n, 1, 1, 1)
    out = out + sigma * torch.randn(out.shape, generator=g)
    return out.contiguous()


def check_splits(name: str, fractions: Sequence[float], variants: Sequence[int]) -> tuple[list[float], list[int]]:
    """``fractions`` and ``variants`` as 3 floats and 3 ints >= 1, or a ValueError naming ``name``."""
    fr = [float(f) for f in fractions]
    var = [int(v) for v in variants]
    if len(fr) != 3 or len(var) != 3:
        raise ValueError(f"lidsplit: {name} needs 3 fractions and 3 variant counts, got {fr} and {var}")
    if any(v < 1 for v in var):
        raise ValueError(f"lidsplit: {name}: variants must be >= 1 per split, got {var}")
    return fr, var


def hard_digits(
    seed: int = 0,
    *,
    image_size: int = 8,
    fractions: Sequence[float] = (0.5, 0.15, 0.35),
    variants: Sequence[int] = (10, 4, 32),
    strength: float = 1.0,
    fov: float = 1.3,
    occlusion: float = 0.2,
    magnitudes: dict[str, float] | None = None,
) -> DataSplits:
    """Distorted digits: train / val / test from disjoint source images, ``variants`` copies each.

    Defaults (the task of the ``nb201_digits`` ground-truth table): 1,797 digits minus exact duplicates
    split 50 / 15 / 35 % into sources; 10 / 4 / 32 copies per source give 9,010 train, 1,068 val and
    20,128 test images of 1 x 8 x 8, 10 classes.
    ``seed`` fixes the source split and every distortion. See the module doc for the transforms;
    ``magnitudes`` overrides entries of :data:`HARD_DIGITS_DEFAULTS`.
    """
    fr, var = check_splits("hard_digits", fractions, variants)
    return copies_by_source(
        "hard_digits", seed, seed, fr, var,
        lambda x, g: distort_digits(x, g, image_size=image_size, fov=fov, strength=strength, occlusion=occlusion,
                                    magnitudes=magnitudes),
        {"image_size": int(image_size), "strength": float(strength), "fov": float(fov),
         "occlusion": float(occlusion), "magnitudes": {**HARD_DIGITS_DEFAULTS, **(magnitudes or {})}},
    )


def copies_by_source(
    name: str,
    seed: int,
    split_seed: int,
    fractions: list[float],
    variants: list[int],
    distort: Callable[[Tensor, torch.Generator], Tensor],
    params: dict[str, Any],
) -> DataSplits:
    """Split the digit sources per class into train / val / test (``fractions``), render ``variants[s]``
    copies of every source of split ``s`` with ``distort(x (n, 1, 8, 8) in [0, 1], generator) -> (n, C, H, W)``,
    and standardise every split with the train split's per-channel statistics.

    Copies are stored variant-major (image ``i`` of split ``s`` is a copy of its source ``i % n_sources``).
    ``split_seed`` seeds the source split; split ``s`` draws from a generator seeded with
    ``derive_seed(name, seed, s)``. ``params`` (the
    distortion's arguments) are recorded in ``meta`` next to the split.
    """
    src_x, src_y = _load_source()
    parts = stratified_split(src_y, fractions, split_seed)
    xs, ys = [], []
    for split, idx, k in zip(("train", "val", "test"), parts, variants):
        g = torch.Generator().manual_seed(derive_seed(name, int(seed), split))
        xi, yi = src_x[idx], src_y[idx]
        xs.append(torch.cat([distort(xi, g) for _ in range(k)]))
        ys.append(yi.repeat(k))
    mean, std = channel_stats(xs[0])
    mk = lambda x, y: Dataset(normalise(x, mean, std), y.contiguous(), 10, name)  # noqa: E731
    train, val, test = (mk(x, y) for x, y in zip(xs, ys))
    meta = {
        "source": "sklearn.datasets.load_digits (exact duplicates dropped)",
        "seed": int(seed),
        "fractions": fractions,
        "variants": variants,
        "source_sizes": [int(p.numel()) for p in parts],
        "source_index": [p.tolist() for p in parts],
        **params,
        "mean": mean,
        "std": std,
        "sizes": [len(train), len(val), len(test)],
    }
    return DataSplits(train, val, test, name=name, meta=meta)
