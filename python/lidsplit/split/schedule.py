"""Training protocols of a split run as named presets: how many epochs each stage of the tree trains,
whether the leaves restart, and how the learning rate runs across stages.

A preset is resolved for a base number of epochs ``E`` (the one-shot supernet's epochs, the papers'
"base method") and a tree shape (the policy's leaf counts per level, :meth:`SplitPolicy.simulate`) into a
:class:`SplitSchedule`, whose :meth:`~SplitSchedule.run_kwargs` are ``run_split``'s arguments::

    sched = preset("split-finetune", 20, rounds(2))
    tree = lidsplit.run_split(model, data, "lid", rounds(2), **sched.run_kwargs(), ...)

``D`` is the tree's depth (levels of splits), ``L`` its number of leaves.

============== ====================================================================================
preset         protocol
============== ====================================================================================
equal-budget   The total number of supernet-epochs over every trained node equals ``E`` (what one
               one-shot supernet of ``E`` epochs costs): leaves ``f = max(1, E // 2 // L)`` each,
               intermediate levels ``max(1, (E - L f) // 4 // n)`` each (``n`` nodes), the root the
               rest; every stage its own cosine (``lr_schedule="restart"``), fresh optimisers. The
               first version's benchmark setting.
split-finetune lidsplit's default: every path from the root to a leaf trains ``E`` epochs on ONE
               cosine (``lr_schedule="continued"``, optimiser carried to the children): the root
               ``E - f`` epochs, the deeper splits none (scored on the root's weights, as NAS-LID
               splits its trained supernet), each leaf the last ``f = max(1, E // 4)`` epochs of the
               same schedule. Same epochs per path as a one-shot supernet of ``E`` epochs.
nas-lid        NAS-LID as the paper states it: the supernet trained ``E`` epochs to the end of its own
               cosine ("to convergence", RSPS 300 epochs in the paper), all splits on those weights,
               each leaf "fine-tuned for several epochs" (``max(1, E // 4)``) on its own cosine.
nas-lid-code   The authors' NAS-LID code: as ``nas-lid``, but the final sub-supernets are re-initialised
               and trained from scratch (``restart=True``) for ``max(1, E // 2)`` epochs (their 10 of 20).
gm-nas         GM-NAS: a warm-up of ``max(1, E // 4)`` epochs before each split with the schedule and
               optimiser carried from parent to child (the authors' code), then every leaf
               re-initialised (``restart``) and trained for the base method's ``E`` epochs.
few-shot       Few-shot NAS: the one-shot supernet trained ``E`` epochs, its children inherit its
               weights and are trained ``max(1, E // 2)`` more epochs each on their own cosine.
============== ====================================================================================

To add a protocol: one function ``(E, shape) -> SplitSchedule`` registered in ``PRESETS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lidsplit.split.policy import SplitPolicy

__all__ = ["SplitSchedule", "preset", "PRESETS", "tree_shape"]


@dataclass(frozen=True)
class SplitSchedule:
    """A resolved training protocol. ``warmup_epochs[l]``: epochs of a node of level ``l`` before its
    split; ``finetune_epochs``: each leaf's; ``restart``: leaves re-initialised; ``lr_schedule`` /
    ``carry_optimizer``: see :func:`lidsplit.split.run.split`. ``shape``: nodes per level (root first,
    leaves last) the epochs were resolved for."""

    name: str
    base_epochs: int
    warmup_epochs: tuple[int, ...]
    finetune_epochs: int
    restart: bool = False
    lr_schedule: str = "restart"
    carry_optimizer: bool = False
    shape: tuple[int, ...] = field(default=(1,))

    def run_kwargs(self) -> dict[str, Any]:
        """The ``run_split`` keyword arguments of this protocol."""
        return {"warmup_epochs": list(self.warmup_epochs), "finetune_epochs": self.finetune_epochs,
                "restart": self.restart, "lr_schedule": self.lr_schedule, "carry_optimizer": self.carry_optimizer}

    @property
    def epochs_per_path(self) -> int:
        """Epochs that the weights of any leaf have been trained on the way from the initial weights
        (a restarted leaf: its own epochs only)."""
        if self.restart:
            return self.finetune_epochs
        return sum(self.warmup_epochs[:len(self.shape) - 1]) + self.finetune_epochs

    @property
    def total_epochs(self) -> int:
        """Supernet-epochs summed over every trained node (the compute, in units of one epoch)."""
        inner = sum(n * w for n, w in zip(self.shape[:-1], self.warmup_epochs))
        return inner + self.shape[-1] * self.finetune_epochs

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "base_epochs": self.base_epochs, **self.run_kwargs(),
                "shape": list(self.shape), "epochs_per_path": self.epochs_per_path,
                "total_epochs": self.total_epochs}


def tree_shape(policy: SplitPolicy, capacity: int | None = None) -> tuple[int, ...]:
    """Nodes per level of the tree ``policy`` builds (root's 1 first, leaves last)."""
    return tuple(policy.simulate(capacity))


def _equal_budget(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    leaves, inner = shape[-1], shape[1:-1]
    f = max(1, E // 2 // leaves)
    w = [max(1, (E - leaves * f) // 4 // n) for n in inner]
    root = E - leaves * f - sum(n * wi for n, wi in zip(inner, w))
    if root < 1:
        raise ValueError(f"epochs: {E} is too small for the equal-budget preset on a tree of {list(shape)} nodes "
                         f"per level (the leaves and inner nodes need {E - root} epochs, the root at least 1)")
    return SplitSchedule("equal-budget", E, (root, *w), f, shape=shape)


def _split_finetune(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    f = max(1, E // 4)
    if E - f < 1:
        raise ValueError(f"epochs: split-finetune needs at least 2, got {E}")
    return SplitSchedule("split-finetune", E, (E - f,) + (0,) * (len(shape) - 2), f, lr_schedule="continued",
                         carry_optimizer=True, shape=shape)


def _nas_lid(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    return SplitSchedule("nas-lid", E, (E,) + (0,) * (len(shape) - 2), max(1, E // 4), shape=shape)


def _nas_lid_code(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    return SplitSchedule("nas-lid-code", E, (E,) + (0,) * (len(shape) - 2), max(1, E // 2), restart=True,
                         shape=shape)


def _gm_nas(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    w = max(1, E // 4)
    return SplitSchedule("gm-nas", E, (w,) * (len(shape) - 1), E, restart=True, lr_schedule="continued",
                         carry_optimizer=True, shape=shape)


def _few_shot(E: int, shape: tuple[int, ...]) -> SplitSchedule:
    return SplitSchedule("few-shot", E, (E,) + (0,) * (len(shape) - 2), max(1, E // 2), shape=shape)


#: name -> resolver ``(E, shape) -> SplitSchedule`` (module docstring)
PRESETS: dict[str, Callable[[int, tuple[int, ...]], SplitSchedule]] = {
    "equal-budget": _equal_budget,
    "split-finetune": _split_finetune,
    "nas-lid": _nas_lid,
    "nas-lid-code": _nas_lid_code,
    "gm-nas": _gm_nas,
    "few-shot": _few_shot,
}


def preset(name: str, epochs: int, policy: SplitPolicy | Sequence[int], capacity: int | None = None) -> SplitSchedule:
    """Resolve preset ``name`` for ``epochs`` base epochs on the tree of ``policy`` (a ``SplitPolicy``, or
    the nodes per level directly, e.g. ``(1, 2, 4)``; ``capacity``: the root's largest branching factor,
    for :func:`tree_shape`)."""
    if name not in PRESETS:
        raise ValueError(f"preset: expected one of {sorted(PRESETS)}, got {name!r}")
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs: expected an int >= 1, got {epochs!r}")
    shape = tree_shape(policy, capacity) if isinstance(policy, SplitPolicy) else tuple(int(n) for n in policy)
    if len(shape) < 2 or shape[0] != 1:
        raise ValueError(f"policy: expected a tree of at least one split (nodes per level from the root's 1), "
                         f"got {list(shape)}")
    return PRESETS[name](epochs, shape)
