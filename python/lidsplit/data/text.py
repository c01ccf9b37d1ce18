"""Character-level text that ships with Python (no downloads), as LM training data.

:func:`stdlib_text` concatenates the Zen of Python (``this``, rot13-decoded) and the source of a few
pure-Python standard-library modules read with :mod:`inspect`. :class:`CharCorpus` maps characters to
ids and cuts a train / validation split by position; :class:`LMBatches` draws seeded random windows.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib
import inspect
import io
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

DEFAULT_MODULES: tuple[str, ...] = ("this", "textwrap", "heapq", "bisect", "colorsys", "fnmatch", "shlex")


def stdlib_text(modules: Sequence[str] = DEFAULT_MODULES, max_chars: int | None = None) -> str:
    """Text from the standard library: ``this`` gives the Zen of Python, any other name its source."""
    parts = []
    for name in modules:
        if name == "this":
            with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the Zen
                this = importlib.import_module("this")
            parts.append(codecs.decode(this.s, "rot13"))
        else:
            parts.append(inspect.getsource(importlib.import_module(name)))
    text = "\n".join(parts)
    return text[:max_chars] if max_chars is not None else text


class CharCorpus:
    """Characters -> ids (sorted vocabulary), split by position: the first ``1 - val_fraction`` of the
    text for training, the rest for validation."""

    def __init__(self, text: str, val_fraction: float = 0.1):
        if not text:
            raise ValueError("lidsplit: empty text")
        self.vocab = sorted(set(text))
        self.stoi = {ch: i for i, ch in enumerate(self.vocab)}
        ids = torch.tensor([self.stoi[ch] for ch in text], dtype=torch.int64)
        cut = int(len(ids) * (1 - val_fraction))
        self.train, self.val = ids[:cut], ids[cut:]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        return "".join(self.vocab[int(i)] for i in ids)


class LMBatches:
    """Seeded random windows ``(x, y)`` of ``block`` tokens (y = x shifted by one): ``len(self)``
    batches per epoch; epoch e's windows are a function of (seed, e) only."""

    def __init__(self, ids: Tensor, block: int, batch_size: int, batches: int = 50, seed: int = 0, device=None):
        if len(ids) <= block + 1:
            raise ValueError(f"lidsplit: {len(ids)} tokens are too few for windows of {block}")
        self.ids, self.block, self.batch_size, self.batches, self.seed = ids, block, batch_size, batches, seed
        self.device = device
        self.epoch = 0

    def __len__(self) -> int:
        return self.batches

    def iter_epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(hash((self.seed, int(epoch))) & 0x7FFFFFFF)
        offs = torch.arange(self.block + 1)
        for b in range(self.batches):
            starts = torch.randint(0, len(self.ids) - self.block - 1, (self.batch_size,), generator=g)
            if b < start:
                continue
            win = self.ids[starts[:, None] + offs]
            x, y = win[:, :-1], win[:, 1:]
            if self.device is not None:
                x, y = x.to(self.device), y.to(self.device)
            yield x, y

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        e = self.epoch
        self.epoch += 1
        return self.iter_epoch(e)
