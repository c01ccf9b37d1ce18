"""Dataset loaders: the digits shipped with lidsplit (default), CIFAR-10/100 from local files, synthetic data.

None of them downloads anything.

Splits and normalisation
------------------------
- ``digits()``: the 1797 8x8 grayscale images of ``sklearn.datasets.load_digits`` (shipped; pixel values
  0..16), split per class into train / val / test = 60 % / 20 % / 20 % (1078 / 359 / 360 images with
  the default seed 0) by ``stratified_split``.
- ``cifar10()`` / ``cifar100()``: the official test set is the test split; the official training set
  is split per class into train / val with ``val_fraction`` (default 0.5, the 25k / 25k split of
  NAS-Bench-201's ``cifar10-valid`` and of DARTS-style search).
- ``synthetic()``: seeded class-prototype images plus noise, 60 / 20 / 20.

Images are scaled to [0, 1], then standardised per channel with the mean and standard deviation of
the *train split* (recorded in ``DataSplits.meta``), so validation and test never leak into it.

Where the CIFAR files are found
-------------------------------
In this order (the first one given is used; a given location that does not hold the files is an
error, never silently skipped):

1. the ``path`` argument;
2. the environment variable ``LIDSPLIT_CIFAR10`` (``LIDSPLIT_CIFAR100`` for CIFAR-100);
3. the environment variable ``LIDSPLIT_DATA``: a root directory holding ``cifar-10-batches-py/``
   (``cifar-100-python/``).

``path`` and ``LIDSPLIT_CIFAR10`` may name the ``cifar-10-batches-py`` directory itself or its parent.
The files are the standard "python version" archives from https://www.cs.toronto.edu/~kriz/cifar.html,
extracted: ``cifar-10-batches-py/{data_batch_1..data_batch_5, test_batch}`` and
``cifar-100-python/{train, test}``. They are read with a restricted unpickler that only builds numpy
arrays and plain Python containers.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lidsplit.common.errors import DataNotFoundError
from lidsplit.common.seeds import derive_seed
from lidsplit.data.core import DataSplits, Dataset, channel_stats, normalise, stratified_split

__all__ = ["digits", "cifar10", "cifar100", "synthetic", "find_cifar", "DataNotFoundError"]

DIGITS_FRACTIONS = (0.6, 0.2, 0.2)


# ---- digits -------------------------------------------------------------------------------------


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits data set shipped with lidsplit: images ``(1797, 8, 8)`` float64 with pixel values 0..16
    and labels ``(1797,)`` int64, identical to ``sklearn.datasets.load_digits()``'s ``images`` / ``target``.

    The file ``lidsplit/data/digits.npz`` is scikit-learn's copy of the UCI "Optical Recognition of
    Handwritten Digits" test set (Alpaydin & Kaynak, CC BY 4.0), stored so that the command line's
    default data needs no scikit-learn.
    """
    with np.load(Path(__file__).with_name("digits.npz")) as f:
        return f["images"].astype(np.float64), f["target"].astype(np.int64)


def digits(seed: int = 0, fractions: Sequence[float] = DIGITS_FRACTIONS) -> DataSplits:
    """The 8x8 digits (:func:`load_digits_arrays`): 1 channel, 10 classes; stratified train/val/test ``fractions``."""
    images, target = load_digits_arrays()
    x = torch.from_numpy(images / 16.0).unsqueeze(1)
    y = torch.from_numpy(target)
    parts = stratified_split(y, fractions, seed)
    return _assemble("digits", x, y, 10, parts, meta={
        "source": "sklearn.datasets.load_digits", "seed": int(seed), "fractions": [float(f) for f in fractions],
        "scale": "pixel / 16",
    })


# ---- synthetic ----------------------------------------------------------------------------------


def synthetic(
    n: int = 256,
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | tuple[int, int] = 8,
    seed: int = 0,
    noise: float = 1.0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
) -> DataSplits:
    """``n`` seeded random images of shape ``(in_channels, H, W)`` with labels.

    Each class has a random prototype image; a sample is its class prototype plus Gaussian noise of
    standard deviation ``noise`` (so the task is learnable, harder as ``noise`` grows). Labels are
    balanced (``i % num_classes``, then shuffled). Split per class by ``fractions``.
    """
    h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
    g = torch.Generator().manual_seed(derive_seed("synthetic", int(seed)))
    protos = torch.randn(num_classes, in_channels, h, w, generator=g, dtype=torch.float64)
    y = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
    x = protos[y] + noise * torch.randn(n, in_channels, h, w, generator=g, dtype=torch.float64)
    parts = stratified_split(y, fractions, seed)
    return _assemble("synthetic", x, y, num_classes, parts, meta={
        "source": "synthetic", "seed": int(seed), "n": int(n), "noise": float(noise),
        "fractions": [float(f) for f in fractions],
    })


# ---- CIFAR --------------------------------------------------------------------------------------

_CIFAR = {
    "cifar10": {
        "dirname": "cifar-10-batches-py",
        "env": "LIDSPLIT_CIFAR10",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": {"fine": b"labels"},
        "num_classes": {"fine": 10},
        "archive": "cifar-10-python.tar.gz",
    },
    "cifar100": {
        "dirname": "cifar-100-python",
        "env": "LIDSPLIT_CIFAR100",
        "train": ["train"],
        "test": ["test"],
        "label_key": {"fine": b"fine_labels", "coarse": b"coarse_labels"},
        "num_classes": {"fine": 100, "coarse": 20},
        "archive": "cifar-100-python.tar.gz",
    },
}


def _cifar_dir_ok(d: Path, spec: dict[str, Any]) -> bool:
    return all((d / f).is_file() for f in spec["train"] + spec["test"])


def find_cifar(name: str, path: str | os.PathLike[str] | None = None) -> Path:
    """The directory holding the ``name`` ('cifar10' or 'cifar100') batch files (see module doc)."""
    spec = _CIFAR[name]
    files = ", ".join(spec["train"] + spec["test"])
    help_text = (
        f"{name} needs the python-pickle batches of {spec['archive']} "
        f"(https://www.cs.toronto.edu/~kriz/cifar.html), extracted, i.e. the directory "
        f"'{spec['dirname']}/' holding {files}. lidsplit never downloads. Provide it either "
        f"(a) as the path argument (the '{spec['dirname']}' directory or its parent), or "
        f"(b) through the environment: {spec['env']}=<that directory>, or LIDSPLIT_DATA=<root> with "
        f"<root>/{spec['dirname']}/."
    )

    def resolve(p: Path, origin: str) -> Path:
        for cand in (p, p / spec["dirname"]):
            if _cifar_dir_ok(cand, spec):
                return cand
        missing = [f for f in spec["train"] + spec["test"] if not (p / f).is_file()]
        raise DataNotFoundError(
            f"{origin} = '{p}' does not hold the {name} files (missing there: {', '.join(missing)}; "
            f"also not found in '{p / spec['dirname']}'). {help_text}"
        )

    if path is not None:
        return resolve(Path(path).expanduser(), "path argument")
    env = os.environ.get(spec["env"])
    if env:
        return resolve(Path(env).expanduser(), f"${spec['env']}")
    root = os.environ.get("LIDSPLIT_DATA")
    if root:
        d = Path(root).expanduser() / spec["dirname"]
        if _cifar_dir_ok(d, spec):
            return d
        raise DataNotFoundError(f"$LIDSPLIT_DATA = '{root}' has no complete '{spec['dirname']}/' "
                                f"directory. {help_text}")
    raise DataNotFoundError(f"No location given for {name}. {help_text}")


class _SafeUnpickler(pickle.Unpickler):
    """Builds only numpy arrays/dtypes and plain containers (what the CIFAR batches hold)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")
        if module.startswith("numpy.core") or module.startswith("numpy._core"):
            mod = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
            return getattr(mod.multiarray, name)
        return getattr(np, name)


def _read_batch(file: Path) -> dict[bytes, Any]:
    with open(file, "rb") as f:
        d = _SafeUnpickler(f, encoding="bytes").load()
    if not isinstance(d, dict) or b"data" not in d:
        raise ValueError(f"{file} is not a CIFAR python batch (no b'data' entry)")
    return d


def _load_cifar_arrays(d: Path, files: list[str], label_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        b = _read_batch(d / f)
        if label_key not in b:
            raise ValueError(f"{d / f} has no {label_key!r} entry (keys: {sorted(b)})")
        data = np.asarray(b[b"data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(f"{d / f}: b'data' must be (N, 3072) uint8, got {data.shape}")
        labels = np.asarray(b[label_key], dtype=np.int64)
        if labels.shape != (data.shape[0],):
            raise ValueError(f"{d / f}: {data.shape[0]} images but {labels.shape} labels")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar(name: str, path: Any, val_fraction: float, seed: int, label: str) -> DataSplits:
    spec = _CIFAR[name]
    if label not in spec["label_key"]:
        raise ValueError(f"{name}: label must be one of {sorted(spec['label_key'])}, got {label!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    d = find_cifar(name, path)
    key = spec["label_key"][label]
    xtr, ytr = _load_cifar_arrays(d, spec["train"], key)
    xte, yte = _load_cifar_arrays(d, spec["test"], key)
    x = torch.from_numpy(np.concatenate([xtr, xte])).double() / 255.0
    y = torch.from_numpy(np.concatenate([ytr, yte]))
    n_tr = xtr.shape[0]
    tr, va = stratified_split(y[:n_tr], (1.0 - val_fraction, val_fraction), seed)
    te = torch.arange(n_tr, n_tr + xte.shape[0])
    return _assemble(name, x, y, spec["num_classes"][label], [tr, va, te], meta={
        "source": str(d), "seed": int(seed), "val_fraction": float(val_fraction), "label": label,
        "scale": "pixel / 255",
    })


def cifar10(path: str | os.PathLike[str] | None = None, *, val_fraction: float = 0.5, seed: int = 0) -> DataSplits:
    """CIFAR-10 from local python batches (see the module doc for where they are looked for)."""
    return _cifar("cifar10", path, val_fraction, seed, "fine")


def cifar100(
    path: str | os.PathLike[str] | None = None, *, val_fraction: float = 0.5, seed: int = 0, label: str = "fine"
) -> DataSplits:
    """CIFAR-100 from local python batches; ``label='fine'`` (100 classes) or ``'coarse'`` (20)."""
    return _cifar("cifar100", path, val_fraction, seed, label)


# ---- common -------------------------------------------------------------------------------------


def _assemble(name: str, x: torch.Tensor, y: torch.Tensor, num_classes: int, parts: list[torch.Tensor],
              meta: dict[str, Any]) -> DataSplits:
    tr, va, te = parts
    mean, std = channel_stats(x[tr])
    xn = normalise(x, mean, std)
    y = y.to(torch.int64)
    mk = lambda idx: Dataset(xn[idx].contiguous(), y[idx].contiguous(), num_classes, name)  # noqa: E731
    meta = dict(meta, mean=mean, std=std, sizes=[int(tr.numel()), int(va.numel()), int(te.numel())])
    return DataSplits(mk(tr), mk(va), mk(te), name=name, meta=meta)
