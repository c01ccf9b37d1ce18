"""The one plotting place: the matplotlib guard, atomic image files, the colours shared by the report's
figures, and the drawings made outside the report: the split tree (``SplitTree.plot``) and the
complexity spider chart (paper Fig. 2). Drawing uses matplotlib's object API (``Figure`` +
``FigureCanvasAgg``), never pyplot's global state, so it is safe in threads and leaves no figure open.
Needs matplotlib (``pip install 'lidsplit[plot]'``)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lidsplit.common.io import atomic_write
from lidsplit.complexity.chart import AXES, axis_values

if TYPE_CHECKING:
    from lidsplit.complexity.scores import ComplexityScores
    from lidsplit.split.tree import SplitTree

__all__ = ["matplotlib_classes", "require_matplotlib", "save_figure", "leaf_colours", "tight_under_suptitle",
           "draw_split_tree", "spider_chart"]


def matplotlib_classes() -> tuple[Any, Any] | None:
    """``(Figure, FigureCanvasAgg)``, or None when matplotlib cannot be imported."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def require_matplotlib(what: str, without: str) -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; without matplotlib an ``ImportError`` saying ``what`` needs it and
    what works ``without`` it."""
    mpl = matplotlib_classes()
    if mpl is None:
        raise ImportError(f"{what} needs matplotlib: pip install 'lidsplit[plot]' (or pip install matplotlib); "
                          f"{without}")
    return mpl


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    """Write ``fig`` to ``path`` atomically (no half-written image), in the format of its suffix (png
    without one)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi), binary=True)
    return path


def leaf_colours(tree: SplitTree) -> dict[int, Any]:
    from matplotlib import colormaps  # the guard ran before any figure is made

    ids = tree.leaf_ids()
    cmap = colormaps["tab10" if len(ids) <= 10 else "tab20"]
    return {i: cmap(k % cmap.N) for k, i in enumerate(ids)}


def tight_under_suptitle(fig: Any) -> None:
    """tight_layout leaving 0.45 in at the top for the suptitle (it ignores suptitles otherwise)."""
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.45 / fig.get_figheight()))




def draw_split_tree(tree: SplitTree, path: str | os.PathLike[str], *, title: str | None = None,
                    dpi: int = 150) -> Path:
    """The split tree drawn to an image file (format from the suffix): each box shows the node id, its
    size and the ops kept on the edge its parent split (``SplitTree.plot``)."""
    Figure, _ = require_matplotlib("SplitTree.plot", "str(tree) gives a text rendering without it")
    xs, depth = tree.layout()
    max_d = max(depth.values())
    nleaves = len(tree.leaves())
    fig = Figure(figsize=(max(4.0, 2.2 * nleaves), max(2.5, 1.6 * (max_d + 1))))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    for n in tree.nodes:
        for c in n.children:
            ax.plot([xs[n.id], xs[c]], [-depth[n.id], -depth[c]], color="0.5", lw=1, zorder=1)
    for n in tree.nodes:
        if n.parent is None:
            label = f"[{n.id}] root\n{n.size} archs"
        else:
            p = tree.nodes[n.parent]
            e = tree.space.edges[p.edge]  # type: ignore[index]
            ops = ",".join(e.ops[a] for a in n.sub.enabled(p.edge))  # type: ignore[arg-type]
            label = f"[{n.id}] {e.label}\n{{{ops}}}\n{n.size} archs"
        ax.text(xs[n.id], -depth[n.id], label, ha="center", va="center", fontsize=7, zorder=2,
                bbox={"boxstyle": "round", "fc": "#e8f0fe" if n.is_leaf else "white", "ec": "0.3"})
    ax.set_xlim(-0.7, nleaves - 0.3)
    ax.set_ylim(-max_d - 0.6, 0.6)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi)


def spider_chart(scores: Sequence[ComplexityScores], path: str | os.PathLike[str], *, title: str | None = None,
                 dpi: int = 120) -> Path:
    """The complexity spider chart of ``scores`` (one polygon each; axes ``lidsplit.complexity.chart.AXES``,
    each divided by its largest value) drawn to ``path`` (format from the suffix, e.g. ``.png``)."""
    scores = list(scores)
    if not scores:
        raise ValueError("complexity: spider_chart needs at least one set of scores")
    Figure, _ = require_matplotlib("the complexity spider chart", "the JSON output works without it")
    raw = [axis_values(s) for s in scores]
    maxima: list[float | None] = []
    for k in range(len(AXES)):
        vals = [r[k] for r in raw if r[k] is not None]
        maxima.append(max(vals) if vals else None)
    norm = [[(r[k] / maxima[k]) if r[k] is not None and maxima[k] else 0.0 for k in range(len(AXES))] for r in raw]
    n = len(AXES)
    angles = [2 * math.pi * k / n for k in range(n)]
    fig = Figure(figsize=(7.2, 6.4))
    ax = fig.add_subplot(1, 1, 1, projection="polar")
    ax.set_theta_offset(math.pi / 2)
    ax.set_theta_direction(-1)
    ax.set_xticks(angles)
    ax.set_xticklabels([f"{a}\n(" + ("n/a" if m is None else f"max {m:.3g}") + ")" for a, m in zip(AXES, maxima)],
                       fontsize=8)
    ax.tick_params(axis="x", pad=14)
    ax.set_ylim(0, 1.0)
    ax.set_yticks([0.25, 0.5, 0.75, 1.0])
    ax.set_yticklabels(["", "0.5", "", "1"], fontsize=7)
    for s, v in zip(scores, norm):
        label = s.name
        if s.pds is not None:
            label += f" (PDS {s.pds:.3f})"
        xs, ys = angles + angles[:1], v + v[:1]
        ax.plot(xs, ys, lw=1.5, label=label)
        ax.fill(xs, ys, alpha=0.12)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=min(3, len(scores)), fontsize=8,
              frameon=False)
    if title:
        ax.set_title(title, pad=24)
    fig.tight_layout()
    return save_figure(fig, path, dpi)
