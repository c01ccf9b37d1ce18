"""Spider (radar) chart comparing the complexity of several spaces or split-tree leaves (paper, Fig. 2).

Four axes, each divided by its largest value among the compared items (so the largest reaches the rim;
an axis that is 0 everywhere stays at the centre; the maxima are printed under the axis names):

* size: ``log10(number of architectures)`` (sizes span many orders of magnitude);
* performance diversity: the SD of jacob_cov on the common scale (``sd_jacob_cov``), the pre-search
  estimate of the spread of performance (the PDS, when an accuracy table gave one, is in the legend;
  an item without it sits at 0 on this axis, and the axis reads "n/a" when no item has it);
* architecture diversity: the scalar of ``lidsplit.complexity.architecture``;
* multi-task ability: the number of tasks.

Needs matplotlib (``pip install 'lidsplit[plot]'``); uses the Agg canvas, no display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

from lidsplit.complexity.scores import ComplexityScores

__all__ = ["spider_chart", "AXES", "axis_values"]

AXES: tuple[str, ...] = ("size (log10)", "performance diversity", "architecture diversity", "multi-task")


def axis_values(s: ComplexityScores) -> list[float | None]:
    """The raw values of one item on the four axes (None: performance diversity not computed)."""
    perf = s.performance.sd_jacob_cov if s.performance is not None else None
    return [
        s.log10_size,
        perf if perf is not None and math.isfinite(perf) else None,
        float(s.architecture.value),
        float(s.multi_task),
    ]


def spider_chart(scores: Sequence[ComplexityScores], path: str | os.PathLike[str], *, title: str | None = None,
                 dpi: int = 120) -> Path:
    """Draw ``scores`` (one polygon each) to ``path`` (format from the suffix, e.g. ``.png``)."""
    scores = list(scores)
    if not scores:
        raise ValueError("complexity: spider_chart needs at least one set of scores")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("the complexity spider chart needs matplotlib: pip install 'lidsplit[plot]' "
                          "(or pip install matplotlib); the JSON output works without it") from e
    raw = [axis_values(s) for s in scores]
    maxima: list[float | None] = []
    for k in range(len(AXES)):
        vals = [r[k] for r in raw if r[k] is not None]
        maxima.append(max(vals) if vals else None)
    norm = [[(r[k] / maxima[k]) if r[k] is not None and maxima[k] else 0.0 for k in range(len(AXES))] for r in raw]
    n = len(AXES)
    angles = [2 * math.pi * k / n for k in range(n)]
    fig = Figure(figsize=(7.2, 6.4))
    FigureCanvasAgg(fig)
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
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    return path
