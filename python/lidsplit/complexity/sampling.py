"""Which architectures the sampled scores are computed over.

* A (sub-)space with at most ``n`` architectures is enumerated (every architecture, index order).
* A larger one gets ``n`` *distinct* architectures drawn uniformly without replacement: small spaces by a
  seeded permutation of the sub-supernet's own indices, large ones by uniform draws
  (``SubSupernet.sample``) with duplicates redrawn (a uniformly random ``n``-subset either way).
* Each repeat ``r`` uses its own generator seeded with ``derive_seed("lidsplit.complexity", seed, r)``:
  the same ``seed`` gives the same architectures on every machine, and repeats are independent.
* With an accuracy table, the candidates are the table's architectures inside the sub-supernet (accuracy
  is known only there); they are enumerated or sampled the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lidsplit.common.seeds import derive_seed
from lidsplit.supernet import Arch, SubSupernet

__all__ = ["sample_archs", "sample_from", "repeat_generator", "local_index_to_arch", "Population"]

_PERMUTE_MAX = 1 << 20  # sub-supernets up to this size are sampled by a permutation of their indices


def repeat_generator(seed: int, repeat: int, what: str = "archs") -> torch.Generator:
    """The CPU generator of repeat ``repeat`` (independent of torch's global RNG)."""
    return torch.Generator().manual_seed(derive_seed("lidsplit.complexity", what, int(seed), int(repeat)))


def local_index_to_arch(sub: SubSupernet, index: int) -> Arch:
    """The ``index``-th architecture of ``sub`` in its own index order (``sub.archs()`` order)."""
    out = []
    for m in reversed(sub.masks):
        opts = sorted(m)
        index, r = divmod(index, len(opts))
        out.append(opts[r])
    return tuple(reversed(out))


def sample_archs(sub: SubSupernet, n: int, generator: torch.Generator) -> tuple[list[Arch], bool]:
    """``(archs, complete)``: every architecture of ``sub`` if it holds at most ``n`` (``complete`` True),
    else ``n`` distinct ones drawn uniformly without replacement (``complete`` False)."""
    if n < 1:
        raise ValueError(f"complexity: the number of sampled architectures must be >= 1, got {n}")
    size = sub.size
    if size <= n:
        return list(sub.archs()), True
    if size <= _PERMUTE_MAX:
        idx = torch.randperm(size, generator=generator)[:n].tolist()
        return [local_index_to_arch(sub, i) for i in idx], False
    seen: set[Arch] = set()
    out: list[Arch] = []
    while len(out) < n:
        a = sub.sample(generator)
        if a not in seen:
            seen.add(a)
            out.append(a)
    return out, False


def sample_from(candidates: Sequence[Arch], n: int, generator: torch.Generator) -> tuple[list[Arch], bool]:
    """``n`` distinct entries of ``candidates`` (uniform without replacement), or all of them (in the
    given order) if there are at most ``n``."""
    if n < 1:
        raise ValueError(f"complexity: the number of sampled architectures must be >= 1, got {n}")
    if len(candidates) <= n:
        return list(candidates), True
    idx = torch.randperm(len(candidates), generator=generator)[:n].tolist()
    return [candidates[i] for i in idx], False


class Population:
    """The architectures of each repeat: ``samples[r]`` (lists of archs) and how they were chosen.

    ``kind``: ``"all"`` (every architecture of the sub-supernet), ``"sampled"`` (uniform samples),
    ``"table"`` (every table architecture inside the sub-supernet), ``"table-sampled"``.
    A complete population is the same for every repeat, so it is kept once (``repeats`` = 1).
    """

    def __init__(self, sub: SubSupernet, n: int, repeats: int, seed: int, candidates: Sequence[Arch] | None = None):
        if repeats < 1:
            raise ValueError(f"complexity: repeats must be >= 1, got {repeats}")
        self.samples: list[list[Arch]] = []
        complete = False
        for r in range(repeats):
            g = repeat_generator(seed, r)
            if candidates is None:
                archs, complete = sample_archs(sub, n, g)
            else:
                archs, complete = sample_from(candidates, n, g)
            self.samples.append(archs)
            if complete:
                break
        self.complete = complete
        if candidates is None:
            self.kind = "all" if complete else "sampled"
        else:
            self.kind = "table" if complete else "table-sampled"
        self.requested = (int(n), int(repeats))

    @property
    def repeats(self) -> int:
        return len(self.samples)

    def distinct(self) -> list[Arch]:
        """Every architecture used by some repeat, once, in first-use order."""
        seen: dict[Arch, None] = {}
        for s in self.samples:
            for a in s:
                seen.setdefault(a, None)
        return list(seen)

    def __repr__(self) -> str:
        sizes = sorted({len(s) for s in self.samples})
        return f"Population({self.kind}, {self.repeats} x {sizes[0] if len(sizes) == 1 else sizes})"

