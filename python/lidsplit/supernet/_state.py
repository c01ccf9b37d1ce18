"""Per-thread stack of active forward modes ("frames").

A frame maps ``id(module)`` of the modules it governs (Choice modules, group-aware BatchNorms) to what
they should do. Frames are pushed by the ``use_*`` context managers and removed in ``finally``; lookup walks
the stack from the innermost frame outwards, so an inner context on a sub-module overrides an outer one
for that sub-module only. Nothing is stored on the modules, and a frame is only visible in the thread that
entered it: two threads (or two runs) never see each other's modes.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

_local = threading.local()

# The groups (of a grouped forward) in which the op now running is enabled: tuple[bool, ...] or None
# (all groups). Set by Choice while it runs an op in grouped mode; read by group-aware BatchNorm to
# update running statistics only with the groups that would have run the op in separate calls.
ACTIVE_GROUPS: contextvars.ContextVar[tuple[bool, ...] | None] = contextvars.ContextVar(
    "lidsplit_active_groups", default=None
)


class Frame:
    __slots__ = ("plans", "bn_groups", "keep", "owner", "__weakref__")

    def __init__(self) -> None:
        self.plans: dict[int, Any] = {}  # id(Choice) -> plan
        self.bn_groups: dict[int, int] = {}  # id(BatchNorm) -> G
        self.keep: list[Any] = []  # the modules above, kept alive so their ids stay unique
        self.owner = threading.get_ident()


def stack() -> list[Frame]:
    s = getattr(_local, "stack", None)
    if s is None:
        s = _local.stack = []
    return s


def push(frame: Frame) -> None:
    stack().append(frame)


def pop(frame: Frame) -> None:
    s = stack()
    for i in range(len(s) - 1, -1, -1):
        if s[i] is frame:
            del s[i]
            return


def plan_for(module: object) -> Any:
    key = id(module)
    for f in reversed(stack()):
        p = f.plans.get(key)
        if p is not None:
            return p
    return None


def groups_for(module: object) -> int:
    key = id(module)
    for f in reversed(stack()):
        g = f.bn_groups.get(key)  # every frame registers its model's BatchNorms (G = 1 unless grouped)
        if g is not None:
            return g
    return 1
