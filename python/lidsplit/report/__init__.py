"""The run report: the split tree drawn, the leaves' layer-wise LID profiles, the separability of every
candidate edge, the search progress; PNG files and a JSON summary.

Two functions (the command line calls them; usable from Python as well):

- :func:`leaf_lid_profiles` measures, for each leaf of a split tree, the layer-wise LID profile (NAS-LID
  Fig. 1: mean LID of every feature layer's output, ``lidsplit.ops.lid_profile``) of a few architectures
  sampled inside the leaf, with the leaf's weights, on one fixed validation batch shared by all leaves.
- :func:`write_report` writes into a directory::

      tree.png             the split tree: per node the ops kept, size, the split edge and its separability;
                           leaves coloured as in the other plots, with their best validation accuracy
      lid_profiles.png     one curve per leaf over the feature layers, shaded +- std over its archs, the
                           archs themselves as thin lines (NAS-LID Fig. 1)
      separability.png     per split node, the separability (NAS-LID eq. 7) of every candidate edge, the
                           chosen edge highlighted; for a cell space whose edge labels read "i<-j" (NB201)
                           also the cell DAG with each edge annotated (NAS-LID Fig. 4)
      op_lid_profiles.png  per split node, the LID profiles of the chosen edge's one-op sub-supernets,
                           coloured by the group (child) they went to (only when the criterion measured
                           LID profiles, i.e. ``lid``)
      search_progress.png  every evaluation of the search (validation accuracy, coloured by leaf) and the
                           best so far; evaluations per leaf
      timeline.png         tasks per worker over time (only when ``tasks`` is given: the run directory's
                           ``tasks.jsonl`` records, ``lidsplit.common.executor``)
      summary.json         the numbers behind the plots (module doc of write_report)

Plots need matplotlib (``pip install 'lidsplit[plot]'``); without it only ``summary.json`` is written and
``summary["skipped"]`` says why. Drawing uses matplotlib's object API (``Figure`` + ``FigureCanvasAgg``),
never pyplot's global state, so it is safe in threads and leaves no figure open. Every file is written
atomically (temp file, fsync, ``os.replace``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lidsplit.common.io import atomic_write_text
from lidsplit.report import figures
from lidsplit.report.figures import Skip
from lidsplit.report.plotting import matplotlib_classes, save_figure
from lidsplit.report.profiles import leaf_lid_profiles
from lidsplit.report.summary import check_profiles, search_records, search_summary, tree_summary
from lidsplit.search.driver import SearchResult
from lidsplit.split.tree import SplitTree, to_jsonable

__all__ = ["leaf_lid_profiles", "write_report", "PLOTS", "NO_MATPLOTLIB", "TIMELINE"]

FORMAT = "lidsplit.report"
VERSION = 1

#: The PNG files :func:`write_report` can write, in the order it writes them.
PLOTS = ("tree.png", "lid_profiles.png", "separability.png", "op_lid_profiles.png", "search_progress.png")
#: The timeline of the run's tasks: drawn when write_report is given task records (not one of PLOTS).
TIMELINE = "timeline.png"
#: The reason given in ``summary["skipped"]`` for every plot when matplotlib cannot be imported.
NO_MATPLOTLIB = "matplotlib not installed: pip install 'lidsplit[plot]'"


def write_report(
    out_dir: str | os.PathLike[str],
    tree: SplitTree,
    *,
    lid_profiles: Mapping[str, Any] | None = None,
    search: SearchResult | Mapping[str, Any] | str | os.PathLike[str] | None = None,
    final: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    dpi: int = 120,
    plots: Sequence[str] | None = None,
    tasks: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Write the report of a run into ``out_dir`` (created): the PNG files of the module doc and
    ``summary.json``; returns the summary.

    lid_profiles: the result of :func:`leaf_lid_profiles` (its leaves must be leaves of ``tree``).
    search: a ``SearchResult``, a loaded search-history dict or the history's JSON path
        (``lidsplit.search.driver`` format).
    final: the chosen architecture, e.g. ``{"arch": [...], "leaf": 3, "val_acc": .., "test_acc": ..,
        "selection": "val_acc"}`` (JSON values; ``arch_names`` added from ``arch`` when missing).
    config: the run's resolved configuration (JSON values).
    dpi: resolution of the PNG files.
    plots: which of :data:`PLOTS` to draw (default all); the others are listed as not requested.
    tasks: task records (``lidsplit.common.executor.read_task_records``, each with an optional ``stage``):
        drawn as :data:`TIMELINE` and summed up in ``summary["tasks"]`` (count, workers, wall and busy
        seconds); None or empty: neither.

    Each plot whose input is missing is skipped and listed in ``summary["skipped"]`` (file name ->
    reason); without matplotlib no PNG is written and every plot is listed with :data:`NO_MATPLOTLIB`.
    Summary keys: ``format``, ``version``, ``tree`` (space, node and leaf counts, criterion, ``leaves``:
    id / size / depth / path / masks and restricted masks in op names / weights; ``splits``: node, edge
    label, criterion, rule, children, groups in op names, the chosen edge's separability and every
    candidate's; the text rendering), ``search`` (records, evaluations, best, best
    per leaf, evaluations per leaf; None without a search), ``final``, ``lid_profiles``, ``config``,
    ``files`` (written, relative to ``out_dir``, ``summary.json`` last), ``skipped``, ``notes``.
    """
    if not isinstance(tree, SplitTree):
        raise TypeError(f"tree: expected a SplitTree, got {type(tree).__name__}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1200:
        raise ValueError(f"dpi: expected an int in [10, 1200], got {dpi!r}")
    if isinstance(out_dir, (str, os.PathLike)):
        out = Path(out_dir)
    else:
        raise TypeError(f"out_dir: expected a path, got {type(out_dir).__name__}")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"out_dir: {out} exists and is not a directory")
    wanted = PLOTS if plots is None else tuple(plots) if not isinstance(plots, str) else (plots,)
    unknown = [p for p in wanted if p not in PLOTS]
    if unknown:
        raise ValueError(f"plots: unknown {unknown}; expected names among {list(PLOTS)}")
    for name, v in (("final", final), ("config", config)):
        if v is not None and not isinstance(v, Mapping):
            raise TypeError(f"{name}: expected a mapping (JSON object) or None, got {type(v).__name__}")
    profiles = None if lid_profiles is None else check_profiles(lid_profiles, tree)
    records, oracle, finished = (None, None, False) if search is None else search_records(search)
    fin = None
    if final is not None:
        fin = to_jsonable(dict(final))
        if "arch" in fin and "arch_names" not in fin:
            fin["arch_names"] = list(tree.space.names(tree.space.validate_arch(fin["arch"])))
    try:
        cfg = None if config is None else to_jsonable(dict(config))
    except TypeError as e:
        raise TypeError(f"config: {e}") from None

    summary: dict[str, Any] = {
        "format": FORMAT, "version": VERSION,
        "tree": tree_summary(tree),
        "search": None if records is None else search_summary(tree, records, oracle, finished),
        "final": fin, "lid_profiles": profiles, "config": cfg,
        "files": [], "skipped": {}, "notes": [],
    }
    if tasks:
        t0, t1 = min(float(t["start"]) for t in tasks), max(float(t["end"]) for t in tasks)
        summary["tasks"] = {"count": len(tasks), "workers": len({(t.get("host"), t.get("pid")) for t in tasks}),
                            "wall_s": t1 - t0, "busy_s": sum(float(t["end"]) - float(t["start"]) for t in tasks)}
    out.mkdir(parents=True, exist_ok=True)
    mpl = matplotlib_classes()
    if mpl is None:
        for name in PLOTS + ((TIMELINE,) if tasks else ()):
            summary["skipped"][name] = NO_MATPLOTLIB
    else:
        Figure, Canvas = mpl
        layers = None if profiles is None else profiles["layers"]
        sep_notes: list[str] = []
        picks = None if summary["search"] is None else summary["search"]["best_per_leaf"]
        makers: dict[str, Callable[[], Any]] = {
            "tree.png": lambda: figures.tree_fig(Figure, tree, picks),
            "lid_profiles.png": lambda: figures.lid_profiles_fig(Figure, tree, profiles),
            "separability.png": lambda: figures.separability_fig(Figure, tree, sep_notes),
            "op_lid_profiles.png": lambda: figures.op_lid_fig(Figure, tree, layers),
            "search_progress.png": lambda: figures.search_fig(Figure, tree, records, oracle),
        }
        for name in PLOTS:
            if name not in wanted:
                summary["skipped"][name] = "not requested (plots=...)"
                continue
            try:
                save_figure(makers[name](), out / name, dpi)
            except Skip as s:
                summary["skipped"][name] = str(s)
                continue
            summary["files"].append(name)
        if tasks:
            save_figure(figures.timeline_fig(Figure, tasks), out / TIMELINE, dpi)
            summary["files"].append(TIMELINE)
        summary["notes"] += [f"separability.png: {n}" for n in sep_notes if "separability.png" not in summary["skipped"]]
    summary["files"].append("summary.json")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary
