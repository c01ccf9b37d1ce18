"""Spider (radar) chart comparing the complexity of several spaces or split-tree leaves (paper, Fig. 2).

Four axes, each divided by its largest value among the compared items (so the largest reaches the rim;
an axis that is 0 everywhere stays at the centre; the maxima are printed under the axis names):

* size: ``log10(number of architectures)`` (sizes span many orders of magnitude);
* performance diversity: the SD of jacob_cov on the common scale (``sd_jacob_cov``), the pre-search
  estimate of the spread of performance (the PDS, when an accuracy table gave one, is in the legend;
  an item without it sits at 0 on this axis, and the axis reads "n/a" when no item has it);
* architecture diversity: the scalar of ``lidsplit.complexity.architecture``;
* multi-task ability: the number of tasks.

The chart itself is drawn by :func:`lidsplit.report.plotting.spider_chart` (needs matplotlib).
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
    """Draw ``scores`` (one polygon each) to ``path``: moved to :func:`lidsplit.report.plotting.spider_chart`
    (the one plotting place); this name is kept for one release."""
    from lidsplit.report.plotting import spider_chart as draw  # the plotting place sits above complexity

    return draw(scores, path, title=title, dpi=dpi)
