"""The leaves' layer-wise LID profiles (NAS-LID Fig. 1): the measurement behind ``lid_profiles.png``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lidsplit.common.batch import model_device
from lidsplit.common.progress import progress_bar
from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import DataLoaders, DataSplits, Dataset, TensorLoader
from lidsplit.ops.lid import ESTIMATORS
from lidsplit.split.criteria import feature_outputs
from lidsplit.split.criteria import lid_profiles as _lid_profiles
from lidsplit.split.tree import SplitTree
from lidsplit.supernet import SubSupernet, record_outputs, search_space, use_path
from lidsplit.train.evaluate import preserved_state, recalibrate_bn

__all__ = ["leaf_lid_profiles"]


def _check_int(name: str, v: Any, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name}: expected an int >= {lo}, got {v!r}")
    return v


def _fixed_batch(ds: Dataset | tuple[Tensor, Tensor], batch_size: int, seed: int) -> Tensor:
    """The images of the profiled batch: all samples when there are at most ``batch_size``, else a subset
    drawn by a generator seeded from ``seed`` (the same for every leaf and every call)."""
    x = ds.x if isinstance(ds, Dataset) else ds[0]
    n = int(x.shape[0])
    if n <= batch_size:
        return x
    g = torch.Generator().manual_seed(derive_seed("lidsplit.report.batch", seed))
    idx = torch.randperm(n, generator=g)[:batch_size]
    return x[idx.to(x.device)]


def _profile_data(data: Any, batch_size: int, seed: int) -> tuple[Tensor, Any]:
    """``(x, calibration loader)`` of :func:`leaf_lid_profiles` (its docstring says which)."""
    if isinstance(data, DataSplits):
        calib = TensorLoader(data.train, batch_size, shuffle=True, seed=derive_seed("lidsplit.report.calib", seed))
        return _fixed_batch(data.val, batch_size, seed), calib
    if isinstance(data, DataLoaders):
        return _fixed_batch(data.val.dataset, batch_size, seed), data.train
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.dim() < 2 or not x.is_floating_point():
            raise ValueError(f"data: x must be a floating-point tensor (N, ...) with at least 2 dimensions, got "
                             f"{x.dtype} {tuple(x.shape)}")
        if y.dim() != 1 or y.shape[0] != x.shape[0]:
            raise ValueError(f"data: y must be a 1-D tensor of {x.shape[0]} labels (one per image), got "
                             f"{y.dtype} {tuple(y.shape)} on {y.device}")
        calib = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, int(x.shape[0]), batch_size)]
        return _fixed_batch((x, y), batch_size, seed), calib
    raise TypeError(f"data: expected a DataSplits, a DataLoaders or an (x, y) tensor pair, got {type(data).__name__}")


def _leaf_archs(sub: SubSupernet, count: int, seed: int, leaf: int) -> list[tuple[int, ...]]:
    """``count`` distinct architectures of ``sub`` drawn uniformly (seeded per leaf), in draw order; every
    architecture (index order) when ``sub`` holds at most ``count``."""
    if sub.size <= count:
        return list(sub.archs())
    g = torch.Generator().manual_seed(derive_seed("lidsplit.report.archs", seed, leaf))
    out: list[tuple[int, ...]] = []
    while len(out) < count:  # terminates: sub holds more than `count` archs
        a = sub.sample(g)
        if a not in out:
            out.append(a)
    return out


def _layer_names(model: nn.Module, layers: Sequence[nn.Module]) -> list[str]:
    names = {id(m): n for n, m in model.named_modules()}
    return [names.get(id(m), f"layer{i}") or type(m).__name__ for i, m in enumerate(layers)]


def _leaf_model(tree: SplitTree, load_leaf: Callable[[int], nn.Module],
                leaf: int) -> tuple[nn.Module, list[nn.Module], list[str]]:
    """``load_leaf(leaf)``, checked against ``tree``, with its feature layers and their names."""
    model = load_leaf(leaf)
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_leaf({leaf}) returned a {type(model).__name__}, expected an nn.Module")
    if search_space(model) != tree.space:
        raise ValueError(f"load_leaf({leaf}): the model's search space differs from the tree's "
                         f"({search_space(model).num_edges} vs {tree.space.num_edges} edges, or other ops)")
    feature_layers = getattr(model, "feature_layers", None)
    if not callable(feature_layers):
        raise TypeError(f"load_leaf({leaf}): {type(model).__name__} has no feature_layers()")
    layers = list(feature_layers())
    if not layers:
        raise ValueError(f"load_leaf({leaf}): feature_layers() is empty")
    return model, layers, _layer_names(model, layers)


def leaf_lid_profiles(
    tree: SplitTree,
    load_leaf: Callable[[int], nn.Module],
    data: Any,
    *,
    archs_per_leaf: int = 4,
    batch_size: int = 256,
    k: int = 20,
    seed: int = 0,
    progress: bool = True,
    recalibrate: bool = True,
    calib_batches: int = 10,
    estimator: str = "mle",
) -> dict[str, Any]:
    """Layer-wise LID profile of each leaf of ``tree`` (NAS-LID Fig. 1, one curve per leaf).

    For every leaf (tree order) ``load_leaf(leaf_id)`` gives the supernet with the leaf's weights (called
    once per leaf); ``archs_per_leaf`` distinct architectures are drawn uniformly inside the leaf (seeded
    from ``seed`` and the leaf id; all of them when the leaf holds fewer). Each runs as a single path on
    one fixed batch ``x`` of ``n`` images, the same for every leaf, and the outputs of
    ``model.feature_layers()`` (L layers) are recorded; their mean LID (``k`` neighbours, ``estimator``;
    :func:`lidsplit.split.criteria.lid_profiles`, so a layer whose outputs are all equal, e.g. a cell
    reached only through ``none`` ops, gets LID 0 and is counted in ``degenerate``) gives the
    architecture's profile ``(L,)``; the leaf's ``mean`` / ``std`` (population) are over its archs.

    Model state: as :func:`lidsplit.train.evaluate_arch` (what the search scores with), BatchNorm
    statistics are recalibrated for each architecture on ``calib_batches`` training batches
    (``recalibrate=False``: the leaf's stored running statistics) and the forward runs in eval mode.
    The model's state is restored afterwards.

    data: where ``x`` and the calibration batches come from:

    - ``DataSplits``: ``x`` = ``batch_size`` images of ``val`` (a seeded subset; all of ``val`` when it
      is smaller); calibration: ``train`` in batches of ``batch_size``, shuffled with a seed from ``seed``.
    - ``DataLoaders``: ``x`` from ``val.dataset`` as above; calibration: the ``train`` loader as given
      (the first ``calib_batches`` batches of its epoch 0, as ``evaluate_arch``).
    - an ``(x, y)`` tensor pair ``(N, ...)``, ``(N,)``: ``x`` = ``batch_size`` of its images as above;
      calibration: the pair itself in batches of ``batch_size`` (no other data is known).

    Returns JSON values::

        {"layers": [L feature-layer names], "k": k, "batch": n, "estimator": ..., "seed": seed,
         "bn": "recalibrated" | "running", "archs_per_leaf": ...,
         "leaves": {"<leaf id>": {"archs": [[op index per edge], ...], "arch_names": [[op names], ...],
                                  "profiles": [[L floats] per arch], "mean": [L floats], "std": [L floats],
                                  "degenerate": number of layer outputs given LID 0}}}
    """
    if not isinstance(tree, SplitTree):
        raise TypeError(f"tree: expected a SplitTree, got {type(tree).__name__}")
    if not callable(load_leaf):
        raise TypeError(f"load_leaf: expected a callable leaf id -> nn.Module, got {type(load_leaf).__name__}")
    _check_int("archs_per_leaf", archs_per_leaf, 1)
    _check_int("batch_size", batch_size, 2)
    _check_int("k", k, 2)  # the MLE of LID needs two neighbours (lid_mle refuses k < 2)
    _check_int("calib_batches", calib_batches, 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int, got {seed!r}")
    if estimator not in ESTIMATORS:  # checked here: lid_profiles reads a refused matrix as degenerate (LID 0)
        raise ValueError(f"estimator: expected one of {list(ESTIMATORS)}, got {estimator!r}")
    x_cpu, calib = _profile_data(data, batch_size, seed)
    n = int(x_cpu.shape[0])
    if n <= k:
        raise ValueError(f"leaf_lid_profiles: the profiled batch holds {n} images (batch_size={batch_size}, "
                         f"validation data of {n if n < batch_size else 'more'} samples) but LID with k={k} "
                         f"neighbours needs more than {k}: lower k or give more validation data")

    leaves = tree.leaves()
    plans = [(leaf, _leaf_archs(leaf.sub, archs_per_leaf, seed, leaf.id)) for leaf in leaves]
    bar = progress_bar(None, enabled=progress, desc="leaf LID", total=sum(len(a) for _, a in plans))
    names: list[str] | None = None
    out: dict[str, Any] = {}
    try:
        for leaf, archs in plans:
            model, layers, these = _leaf_model(tree, load_leaf, leaf.id)
            if names is None:
                names = these
            elif these != names:
                raise ValueError(f"load_leaf({leaf.id}): feature layers {these} differ from the first leaf's {names}")
            x = x_cpu.to(model_device(model))
            profs, bad = [], 0
            for arch in archs:
                with preserved_state(model):
                    if recalibrate:
                        recalibrate_bn(model, arch, calib, calib_batches)
                    model.eval()
                    with torch.no_grad(), use_path(model, arch), record_outputs(layers) as rec:
                        model(x)
                    feats = feature_outputs(rec, len(layers), "leaf_lid_profiles")
                p, nb = _lid_profiles([feats], k, estimator)
                del feats
                profs.append(p[0])
                bad += nb
                bar.update(1)
            a = np.stack(profs)
            out[str(leaf.id)] = {
                "archs": [list(t) for t in archs],
                "arch_names": [list(tree.space.names(t)) for t in archs],
                "profiles": a.tolist(),
                "mean": a.mean(0).tolist(),
                "std": a.std(0).tolist(),
                "degenerate": int(bad),
            }
    finally:
        bar.close()
    return {"layers": names, "k": k, "batch": n, "estimator": estimator, "seed": seed,
            "bn": "recalibrated" if recalibrate else "running", "archs_per_leaf": archs_per_leaf, "leaves": out}
