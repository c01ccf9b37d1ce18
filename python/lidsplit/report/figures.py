"""The report's figures, one function each: ``Figure`` class and inputs in, a matplotlib figure out
(:mod:`lidsplit.report.plotting` guards matplotlib and writes the files). To add a figure: a function
here, a file name in ``lidsplit.report.PLOTS`` and a line in ``write_report``'s table."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lidsplit.report.plotting import leaf_colours, tight_under_suptitle
from lidsplit.report.summary import edge_scores, is_measured, restricted_masks
from lidsplit.search.driver import Record
from lidsplit.search.evaluator import Result
from lidsplit.search.strategies import rank_key
from lidsplit.split.tree import SplitNode, SplitTree


class Skip(Exception):
    """A plot whose input is missing (the message is the reason listed in ``summary["skipped"]``)."""


def _short(name: str) -> str:
    """Compact op names for legends (NB201: nor_conv_3x3 -> conv3x3, skip_connect -> skip, ...)."""
    return (name.replace("nor_conv_", "conv").replace("skip_connect", "skip").replace("avg_pool_", "avgpool")
            .replace("max_pool_", "maxpool").replace("sep_conv_", "sep").replace("dil_conv_", "dil"))


def _size(n: int) -> str:
    """An architecture count, exact up to a million (DARTS-sized spaces in scientific notation)."""
    return str(n) if n < 10**6 else f"{float(n):.3g}"


def _leaf_label(tree: SplitTree, leaf_id: int) -> str:
    node = tree.node(leaf_id)
    kept = ", ".join(f"{lab}={{{','.join(_short(o) for o in ops)}}}" for lab, ops in restricted_masks(tree, node).items())
    return f"[{leaf_id}] {_size(node.size)} archs" + (f": {kept}" if kept else "")


def _wrap_ops(ops: Sequence[str], width: int = 30) -> list[str]:
    """``{a,b,c}`` split over lines of at most about ``width`` characters."""
    lines, cur = [], ""
    for k, o in enumerate(ops):
        piece = o + ("," if k < len(ops) - 1 else "")
        if cur and len(cur) + len(piece) > width:
            lines.append(cur)
            cur = ""
        cur += piece
    lines.append(cur)
    lines[0] = "{" + lines[0]
    lines[-1] += "}"
    return lines


def tree_fig(Figure: Any, tree: SplitTree, picks: Mapping[str, Mapping[str, Any]] | None) -> Any:
    """The split tree, top down; each box: id, the ops kept on the edge its parent split, size; leaves
    filled with their colour in the other plots (and their best validation accuracy when searched)."""
    xs, depth = tree.layout()
    max_d = max(depth.values())
    labels: dict[int, list[str]] = {}
    for n in tree.nodes:
        if n.parent is None:
            lines = [f"[{n.id}] root"]
        else:
            p = tree.nodes[n.parent]
            e = tree.space.edges[p.edge]  # type: ignore[index]
            ops = [_short(e.ops[a]) for a in n.sub.enabled(p.edge)]  # type: ignore[arg-type]
            lines = [f"[{n.id}] {e.label}", *_wrap_ops(ops)]
        lines.append(f"{_size(n.size)} archs")
        if n.children:
            measured = any(is_measured(d) for d in edge_scores(n).values())
            sep = n.scores.get("separability") if measured else None
            lines.append(f"split {tree.space.edges[n.edge].label}"  # type: ignore[index]
                         + (f", D={_fmt(float(sep))}" if isinstance(sep, (int, float)) else ""))
        elif picks and str(n.id) in picks:
            lines.append(f"best val acc {picks[str(n.id)]['acc']:.4f}")
        labels[n.id] = lines
    chars = max(len(line) for lines in labels.values() for line in lines)
    nlines = max(len(lines) for lines in labels.values())
    nleaves = len(tree.leaf_ids())
    fig = Figure(figsize=(max(4.0, (0.075 * chars + 0.5) * nleaves), max(2.4, (0.22 * nlines + 0.7) * (max_d + 1))))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_axis_off()
    colours = leaf_colours(tree)
    for n in tree.nodes:
        for c in n.children:
            ax.plot([xs[n.id], xs[c]], [-depth[n.id], -depth[c]], color="0.55", lw=1.2, zorder=1)
    for n in tree.nodes:
        fc, ec = ("white", "0.3")
        if n.is_leaf:  # the leaf's colour, lightened but opaque (the edges end under the box)
            rgb = np.asarray(colours[n.id][:3])
            fc, ec = tuple(0.8 + 0.2 * rgb), tuple(rgb)
        ax.text(xs[n.id], -depth[n.id], "\n".join(labels[n.id]), ha="center", va="center", fontsize=8, zorder=2,
                bbox={"boxstyle": "round,pad=0.4", "fc": fc, "ec": ec, "lw": 1.6 if n.is_leaf else 1.0})
    ax.set_xlim(-0.6, nleaves - 0.4)
    ax.set_ylim(-max_d - 0.55, 0.55)
    crits = sorted({str(n.criterion) for n in tree.nodes if n.criterion})
    ax.set_title(f"Split tree ({', '.join(crits)}): {nleaves} leaves of a {_size(tree.space.size)}-arch space"
                 if crits else f"Split tree: {_size(tree.space.size)} archs, not split", fontsize=10)
    fig.tight_layout()
    return fig


def lid_profiles_fig(Figure: Any, tree: SplitTree, profiles: Mapping[str, Any] | None) -> Any:
    if profiles is None:
        raise Skip("no LID profiles given (lid_profiles=None; see leaf_lid_profiles)")
    leaves = sorted((int(k) for k in profiles["leaves"]), key=tree.leaf_ids().index)
    if not leaves:
        raise Skip("the LID profiles hold no leaf")
    layers = list(profiles["layers"])
    L = len(layers)
    colours = leaf_colours(tree)
    labels = {i: _leaf_label(tree, i) for i in leaves}
    chars = max(len(v) for v in labels.values())
    # the legend gets its own row under the plot (one line per leaf): long leaf labels never hide it
    leg_h = 0.2 * len(leaves) + 0.2
    fig = Figure(figsize=(max(6.0, 0.7 * L + 3.0, 0.066 * chars + 1.0), 4.6 + leg_h))
    gs = fig.add_gridspec(2, 1, height_ratios=[4.6, leg_h])
    ax = fig.add_subplot(gs[0, 0])
    xs = np.arange(1, L + 1)
    band = 0.18 if len(leaves) <= 4 else 0.1
    handles = []
    for lid in leaves:
        d, c = profiles["leaves"][str(lid)], colours[lid]
        for prof in d.get("profiles") or []:
            ax.plot(xs, prof, color=c, lw=0.7, alpha=0.35, zorder=1)
        mean, std = np.asarray(d["mean"], float), np.asarray(d["std"], float)
        ax.fill_between(xs, mean - std, mean + std, color=c, alpha=band, lw=0, zorder=2)
        handles.append(ax.plot(xs, mean, color=c, lw=2.2, marker="o", ms=4, zorder=3)[0])
    ax.set_xticks(xs)
    tilt = L > 6 or max(len(s) for s in layers) > 10
    ax.set_xticklabels(layers, rotation=30 if tilt else 0, ha="right" if tilt else "center", fontsize=8)
    ax.set_xlim(0.7, L + 0.3)
    ax.set_xlabel("feature layer (input -> output)")
    ax.set_ylabel("LID (MLE)")
    ax.grid(alpha=0.3)
    per, bn = profiles.get("archs_per_leaf"), profiles.get("bn")
    ax.set_title(f"Layer-wise LID of the leaves: mean ± std over {per or '?'} sampled archs per leaf "
                 f"(thin lines)\nk={profiles.get('k')}, {profiles.get('batch')} validation images"
                 + (f", BN {bn}" if bn else ""), fontsize=10)
    lax = fig.add_subplot(gs[1, 0])
    lax.set_axis_off()
    lax.legend(handles, [labels[i] for i in leaves], loc="upper center", fontsize=8, frameon=False, ncol=1)
    fig.tight_layout()
    return fig


_DAG_LABEL = re.compile(r"^(\d+)\s*<-\s*(\d+)$")


def _dag_edges(tree: SplitTree) -> dict[int, tuple[int, int]] | None:
    """Edge index -> (to, from) when every edge label of the space reads "i<-j" (one cell, e.g. NB201) and
    the cell is small enough to draw legibly; else None."""
    out = {}
    for i, e in enumerate(tree.space.edges):
        m = _DAG_LABEL.match(e.label)
        if m is None:
            return None
        out[i] = (int(m.group(1)), int(m.group(2)))
    return out if len(out) <= 10 else None


def _fmt(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e5 or v == 0 else f"{v:.2e}"


def _draw_dag(ax: Any, tree: SplitTree, node: SplitNode, dag: dict[int, tuple[int, int]],
              es: Mapping[int, Mapping[str, Any]]) -> None:
    """The cell as NAS-LID Fig. 4 draws it: nodes on a line, an arc per edge annotated with its
    separability; the chosen edge red; edges that are not candidates here (split above) dashed grey."""
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import FancyArrowPatch

    vals = {i: float(d.get("separability", math.nan)) for i, d in es.items()}
    finite = [v for v in vals.values() if math.isfinite(v)]
    pos_vals = [v for v in finite if v > 0]
    if pos_vals and len(pos_vals) == len(finite) and max(pos_vals) / min(pos_vals) > 100:
        norm: Any = LogNorm(min(pos_vals), max(pos_vals))
    else:
        norm = Normalize(min(finite, default=0.0), max(finite, default=1.0) if finite else 1.0)
    viridis = colormaps["viridis"]

    def cmap(v: float) -> Any:  # viridis without its pale yellow end, which vanishes on white
        return viridis(0.85 * v)

    cell_nodes = sorted({a for t in dag.values() for a in t})
    for j in cell_nodes:
        ax.scatter([j], [0], s=420, color="white", edgecolors="0.2", zorder=4)
        ax.text(j, 0, str(j), ha="center", va="center", fontsize=10, zorder=5)
    for i, (to, frm) in dag.items():
        span = to - frm
        # span-1 edges straight; even spans arc above the line, odd ones below, so labels do not collide
        rad = 0.0 if span == 1 else -0.6 if span % 2 == 0 else 0.45
        v = vals.get(i)
        chosen = i == node.edge
        if v is None:
            colour, lw, ls = "0.7", 1.0, "--"
        else:
            colour = "tab:red" if chosen else cmap(norm(v)) if math.isfinite(v) else "0.5"
            lw, ls = (3.0 if chosen else 2.0), "-"
        ax.add_patch(FancyArrowPatch((frm, 0), (to, 0), connectionstyle=f"arc3,rad={rad}", arrowstyle="-|>",
                                     mutation_scale=12, lw=lw, ls=ls, color=colour, shrinkA=11, shrinkB=11, zorder=2))
        # midpoint of the quadratic Bezier arc3 draws: half-way to its control point
        mx, my = (frm + to) / 2, -0.5 * rad * span
        text = ("split above" if v is None else _fmt(v))
        ax.text(mx, my - (0.2 if span == 1 else 0.0), f"{tree.space.edges[i].label}\n{text}", ha="center",
                va="center", fontsize=7, color="tab:red" if chosen else "0.1", zorder=6,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    lo, hi = min(cell_nodes), max(cell_nodes)
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ax.set_ylim(-0.25 * (hi - lo) - 0.4, 0.3 * (hi - lo) + 0.35)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title("cell DAG: separability per edge", fontsize=9)


def separability_fig(Figure: Any, tree: SplitTree, notes: list[str]) -> Any:
    split_nodes = [n for n in tree.nodes if n.children]
    if not split_nodes:
        raise Skip("the tree has no split node")
    rows = []
    for n in split_nodes:
        es = edge_scores(n)
        if not es or not any("separability" in d for d in es.values()):
            notes.append(f"node {n.id}: no per-edge separability recorded")
        elif not any(is_measured(d) for d in es.values()):
            notes.append(f"node {n.id} (criterion {n.criterion!r}): no measurement behind its similarities, "
                         "separability not shown")
        else:
            rows.append((n, es))
    if not rows:
        raise Skip("no split node has measured separabilities: " + "; ".join(notes))
    dag = _dag_edges(tree)
    ncand = max(len(es) for _, es in rows)
    bar_w = max(4.5, 0.55 * ncand + 1.5)
    dag_w = 4.2 if dag else 0.0
    fig = Figure(figsize=(bar_w + dag_w, 3.0 * len(rows) + 0.6))
    gs = fig.add_gridspec(len(rows), 2 if dag else 1, width_ratios=[bar_w, dag_w] if dag else None)
    space = tree.space
    for r, (node, es) in enumerate(rows):
        ax = fig.add_subplot(gs[r, 0])
        idx = list(es)
        vals = np.array([float(es[i].get("separability", math.nan)) for i in idx])
        finite = vals[np.isfinite(vals)]
        log = finite.size > 0 and (finite > 0).all() and finite.max() / finite.min() > 100
        colours = []
        for i in idx:
            d = es[i]
            if i == node.edge:
                colours.append("tab:red")
            elif not d.get("informative", True):
                colours.append("0.75")
            else:
                colours.append("tab:blue")
        xs = np.arange(len(idx))
        bars = ax.bar(xs, np.where(np.isfinite(vals), vals, 0.0), color=colours, edgecolor="0.2", lw=0.6)
        for i, b in zip(idx, bars):
            if not es[i].get("informative", True):
                b.set_hatch("//")
        for x, v in zip(xs, vals):
            ax.text(x, v if math.isfinite(v) and v > 0 else (1.0 if log else 0.0), _fmt(v), ha="center",
                    va="bottom", fontsize=7)
        if log:
            ax.set_yscale("log")
            ax.set_ylim(finite.min() / 3, finite.max() * 8)
        else:
            top = float(finite.max()) if finite.size else 1.0
            ax.set_ylim(0, top * 1.2 if top > 0 else 1.0)
        ax.set_xticks(xs)
        ax.set_xticklabels([space.edges[i].label for i in idx], rotation=30 if len(idx) > 8 else 0,
                           ha="right" if len(idx) > 8 else "center", fontsize=8)
        ax.set_ylabel("separability D" + (" (log)" if log else ""), fontsize=9)
        e = space.edges[node.edge]  # type: ignore[index]
        groups = " | ".join(",".join(_short(e.ops[i]) for i in g) for g in node.groups)  # type: ignore[union-attr]
        kinds = sorted({str(d.get("criterion", node.criterion)) for d in es.values()})
        random_note = " (random similarity)" if node.criterion == "random" else ""
        ax.set_title(f"node [{node.id}] ({_size(node.size)} archs, {', '.join(kinds)}{random_note}): split {e.label} "
                     f"into {{{groups}}}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
        if r == 0:
            from matplotlib.patches import Patch

            handles = [Patch(fc="tab:red", ec="0.2", label="chosen edge"), Patch(fc="tab:blue", ec="0.2",
                       label="candidate")]
            if any(not d.get("informative", True) for d in es.values()):
                handles.append(Patch(fc="0.75", ec="0.2", hatch="//", label="uninformative"))
            ax.legend(handles=handles, fontsize=7, loc="upper left", framealpha=0.8)
        if dag:
            _draw_dag(fig.add_subplot(gs[r, 1]), tree, node, dag, es)
    fig.suptitle("Separability of the candidate edges per split node (NAS-LID eq. 7; higher: easier to split)",
                 fontsize=10)
    tight_under_suptitle(fig)
    return fig


def op_lid_fig(Figure: Any, tree: SplitTree, layers: Sequence[str] | None) -> Any:
    rows = []
    for n in tree.nodes:
        if not n.children:
            continue
        d = edge_scores(n).get(n.edge)  # type: ignore[arg-type]
        lid = ((d or {}).get("measurements") or {}).get("lid")
        if lid is not None and np.asarray(lid, dtype=float).ndim == 2:
            rows.append((n, d, np.asarray(lid, dtype=float)))
    if not rows:
        crit = sorted({str(n.criterion) for n in tree.nodes if n.children}) or ["none"]
        raise Skip(f"no split node recorded per-op LID profiles (criterion {', '.join(crit)}; only 'lid' measures them)")
    ncols = min(3, len(rows))
    nrows = math.ceil(len(rows) / ncols)
    L = max(a.shape[1] for _, _, a in rows)
    fig = Figure(figsize=(max(4.8, 0.45 * L + 3.0) * ncols, 3.9 * nrows + 0.5))
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P", "X"]
    for r, (node, d, lid) in enumerate(rows):
        ax = fig.add_subplot(nrows, ncols, r + 1)
        ops = list(d.get("ops") or range(lid.shape[0]))
        names = list(d.get("op_names") or [str(o) for o in ops])
        xs = np.arange(1, lid.shape[1] + 1)
        for g, (grp, child) in enumerate(zip(node.groups, node.children)):  # type: ignore[arg-type]
            for m, op in enumerate(grp):
                if op not in ops:
                    continue
                row = ops.index(op)
                ax.plot(xs, lid[row], color=cmap(g % 10), ls=styles[m % 4], marker=markers[m % 7], ms=4, lw=1.6,
                        label=f"{_short(names[row])} -> [{child}]")
        ax.set_xticks(xs)
        if layers is not None and len(layers) == lid.shape[1]:
            ax.set_xticklabels(layers, rotation=30, ha="right", fontsize=7)
        else:
            ax.set_xlabel("feature layer", fontsize=8)
        ax.set_ylabel("LID (MLE)", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title="op -> child", title_fontsize=7, framealpha=0.8)
        nb = d.get("batches")
        ax.set_title(f"node [{node.id}]: edge {d.get('label')} ({nb} batch{'' if nb == 1 else 'es'})", fontsize=9)
    fig.suptitle("LID profiles of the chosen edge's one-op sub-supernets (colour: the group / child it went to)",
                 fontsize=10)
    tight_under_suptitle(fig)
    return fig


def search_fig(Figure: Any, tree: SplitTree, records: list[Record] | None,
                oracle: list[float | None] | None) -> Any:
    if records is None:
        raise Skip("no search given (search=None)")
    evals = [(r, None if oracle is None else oracle[k]) for k, r in enumerate(records) if not r.reused]
    if not evals:
        raise Skip("the search history holds no evaluation")
    colours = leaf_colours(tree)
    fig = Figure(figsize=(10.0, 5.2))
    gs = fig.add_gridspec(1, 2, width_ratios=[3.2, 1.0])
    ax = fig.add_subplot(gs[0, 0])
    xs = np.arange(1, len(evals) + 1)
    best, best_x, curve, curve_oracle = None, 0, [], []
    for x, (r, o) in zip(xs, evals):
        if best is None or rank_key(Result(r.acc, r.loss)) > rank_key(Result(best[0].acc, best[0].loss)):
            best, best_x = (r, o), int(x)
        curve.append(best[0].acc)
        curve_oracle.append(math.nan if best[1] is None else best[1])
    leaves_seen = []
    for leaf in [*tree.leaf_ids(), None]:
        sel = [(x, r.acc) for x, (r, _) in zip(xs, evals) if r.leaf == leaf]
        if not sel:
            continue
        leaves_seen.append(leaf)
        px, py = zip(*sel)
        ax.scatter(px, py, s=14, color=colours.get(leaf, "0.5") if leaf is not None else "0.5", alpha=0.75,
                   edgecolors="none", label=f"leaf [{leaf}]" if leaf is not None else "no leaf", zorder=2)
    others = [(x, r.acc) for x, (r, _) in zip(xs, evals) if r.leaf is not None and r.leaf not in tree.leaf_ids()]
    if others:
        px, py = zip(*others)
        ax.scatter(px, py, s=14, color="0.5", marker="x", label="leaf not in the tree", zorder=2)
    ax.step(xs, curve, where="post", color="black", lw=1.8, label="best so far (val acc)", zorder=3)
    if any(math.isfinite(v) for v in curve_oracle):
        ax.step(xs, curve_oracle, where="post", color="tab:purple", lw=1.3, ls="--",
                label="oracle acc of best so far (not used by the search)", zorder=3)
    if best is not None and math.isfinite(best[0].acc):
        ax.scatter([best_x], [best[0].acc], marker="*", s=180, color="gold", edgecolors="black", zorder=4,
                   label=f"best: {best[0].acc:.4f} (leaf [{best[0].leaf}])")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("validation accuracy (leaf weights)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, frameon=False)
    ax.set_title(f"Search progress: {len(evals)} evaluations", fontsize=10)
    # evaluations per leaf
    ax2 = fig.add_subplot(gs[0, 1])
    counts = [sum(r.leaf == leaf for r, _ in evals) for leaf in tree.leaf_ids()]
    ys = np.arange(len(counts))
    ax2.barh(ys, counts, color=[colours[i] for i in tree.leaf_ids()], edgecolor="0.2", lw=0.6)
    ax2.set_yticks(ys)
    ax2.set_yticklabels([f"[{i}] {_size(tree.node(i).size)}" for i in tree.leaf_ids()], fontsize=8)
    ax2.invert_yaxis()
    ax2.set_xlabel("evaluations")
    ax2.set_title("per leaf ([id] archs)", fontsize=9)
    ax2.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def timeline_fig(Figure: Any, tasks: Sequence[Mapping[str, Any]]) -> Any:
    """Tasks per worker over time (``lidsplit.common.executor`` records: ``task``, ``start``, ``end``,
    ``host``, ``pid``, optional ``gpus`` and ``stage``): one lane per worker process, one bar per task,
    coloured by what it was (the task name's first word, after its stage)."""
    if not tasks:
        raise Skip("the run has no task records (tasks.jsonl)")
    t0 = min(float(t["start"]) for t in tasks)
    lanes: dict[tuple[str, Any], int] = {}
    for t in sorted(tasks, key=lambda t: float(t["start"])):
        lanes.setdefault((str(t.get("host", "?")), t.get("pid")), len(lanes))
    kinds: dict[str, Any] = {}
    cmap = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]
    fig = Figure(figsize=(11.0, 1.6 + 0.45 * len(lanes)))
    ax = fig.add_subplot(1, 1, 1)
    for t in tasks:
        kind = " ".join(filter(None, [t.get("stage"), str(t["task"]).split(" ")[0]]))
        colour = kinds.setdefault(kind, cmap[len(kinds) % len(cmap)])
        y = lanes[(str(t.get("host", "?")), t.get("pid"))]
        start, width = float(t["start"]) - t0, max(float(t["end"]) - float(t["start"]), 1e-3)
        ax.barh(y, width, left=start, height=0.7, color=colour, edgecolor="0.2", lw=0.5)
    ax.set_yticks(range(len(lanes)))
    gpus = {(str(t.get("host", "?")), t.get("pid")): ",".join(t.get("gpus") or []) for t in tasks}
    ax.set_yticklabels([f"{h} pid {p}" + (f" gpu {gpus[(h, p)]}" if gpus[(h, p)] else "") for h, p in lanes],
                       fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the first task started")
    wall = max(float(t["end"]) for t in tasks) - t0
    busy = sum(float(t["end"]) - float(t["start"]) for t in tasks)
    ax.set_title(f"Tasks per worker: {len(tasks)} tasks on {len(lanes)} workers, {wall:.1f} s wall, "
                 f"{busy:.1f} s busy", fontsize=10)
    handles = [_patch(c, k) for k, c in kinds.items()]
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _patch(colour: Any, label: str) -> Any:
    """A legend entry: a filled square of ``colour``."""
    from matplotlib.patches import Patch

    return Patch(facecolor=colour, edgecolor="0.2", label=label)
