"""``lidsplit complexity``: pre-search complexity scores of search spaces or split-tree leaves.

Examples::

    lidsplit complexity --space nb201 --space darts --space mobilenet --json scores.json --chart spaces.png
    lidsplit complexity --space 'nb201:{"C": 4}' --accuracy-table nb201_digits.csv --samples 200 --repeats 5
    lidsplit complexity --space nb201 --tree runs/x/tree.json --chart leaves.png
    lidsplit complexity --space proxylessnas-paper --no-proxy        # size 6.645e17, diversity

A space is ``NAME`` or ``NAME:JSON`` with JSON an object of constructor arguments
(``lidsplit.spaces.build(NAME, **JSON)``); names: nb201, darts, mobilenet (and their aliases), plus the
presets proxylessnas-imagenet (ProxylessNAS's ImageNet blocks, 6^6 * 7^15) and proxylessnas-paper (with a
searchable first block, 3 * 6^6 * 7^15 ~ 6.645e17, the complexity paper's count); the presets take
1-channel 10-class inputs so the digits batch fits (the size does not depend on it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lidsplit.common.errors import CLIError
from lidsplit.common.io import atomic_write_text
from lidsplit.common.rundir import writing
from lidsplit.complexity import report_json
from lidsplit.complexity.spaces import PRESETS, parse_space, score_spaces, score_tree, unique_names
from lidsplit.report.plotting import spider_chart

__all__ = ["add_parser", "run", "PRESETS"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "complexity",
        help="score search spaces (size, performance / architecture diversity, tasks) before searching",
        description="Pre-search complexity scores of search spaces or of the leaves of a split tree: exact "
                    "size, jacob_cov spread and PDS (with an accuracy table), architecture diversity, "
                    "multi-task ability. Writes JSON and a spider chart.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    p.add_argument("--space", action="append", default=[], metavar="SPEC",
                   help="a space to score: NAME or NAME:JSON-kwargs (repeatable)")
    p.add_argument("--tree", metavar="PATH", help="split tree JSON: score each leaf (with one --space: its supernet)")
    p.add_argument("--accuracy-table", action="append", default=[], metavar="[NAME=]PATH",
                   help="arch -> accuracy table (.json/.csv) for the PDS; NAME= picks the space when "
                        "several are given (repeatable)")
    p.add_argument("--table-loader", metavar="NAME", default=None,
                   help="accuracy table loader (json, csv, nb201, or one registered in Python); default: by suffix")
    p.add_argument("--samples", type=int, default=50, help="architectures per sample (default 50; the paper: 10000)")
    p.add_argument("--repeats", type=int, default=1, help="number of samples averaged (default 1; the paper: 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the supernet init, batch, samples (default 0)")
    p.add_argument("--scale", choices=("minmax", "robust", "none"), default="minmax",
                   help="common scale of jacob_cov and accuracy before their SDs are compared (default minmax)")
    p.add_argument("--degenerate", choices=("worst", "drop"), default="worst",
                   help="architectures without a jacob_cov score: lowest score of the sample, or dropped")
    p.add_argument("--data", default="digits", help="batch for jacob_cov: digits (default) or synthetic")
    p.add_argument("--batch-size", type=int, default=32, help="jacob_cov batch size (default 32)")
    p.add_argument("--device", default="cpu", help="torch device for jacob_cov (default cpu)")
    p.add_argument("--no-proxy", action="store_true", help="skip jacob_cov (size, architecture diversity, tasks only)")
    p.add_argument("--arch-diversity", choices=("exact", "sample"), default="exact",
                   help="architecture diversity: exact (default, any size) or over sampled architectures")
    p.add_argument("--arch-samples", type=int, default=1000, help="architectures sampled with --arch-diversity sample")
    p.add_argument("--diversity-scalar", choices=("trace", "mean"), default="trace",
                   help="trace of the covariance (default) or mean per-block-type variance")
    p.add_argument("--json", metavar="PATH", help="write the JSON report here ('-': stdout)")
    p.add_argument("--chart", metavar="PATH", help="write the spider chart here (PNG; needs matplotlib)")
    p.add_argument("--title", default=None, help="chart title")
    p.add_argument("--quiet", action="store_true", help="no summary lines on stdout")
    return p


def _tables(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.accuracy_table:
        head, sep, tail = item.partition("=")
        if sep and head in names:
            key, path = head, tail
        elif len(names) == 1:
            key, path = names[0], item
        else:
            raise CLIError(f"--accuracy-table {item!r}: with several spaces write NAME=PATH, NAME one of {names}")
        if key in out:
            raise CLIError(f"--accuracy-table: two tables for {key!r}")
        out[key] = path
    return out


def _check_counts(args: argparse.Namespace) -> None:
    if args.samples < 2:
        raise CLIError(f"--samples must be >= 2, got {args.samples}")
    if args.repeats < 1:
        raise CLIError(f"--repeats must be >= 1, got {args.repeats}")
    if args.batch_size < 2:
        raise CLIError(f"--batch-size must be >= 2, got {args.batch_size}")
    if args.arch_samples < 2:
        raise CLIError(f"--arch-samples must be >= 2, got {args.arch_samples}")
    if args.data not in ("digits", "synthetic"):
        raise CLIError(f"--data must be 'digits' or 'synthetic', got {args.data!r}")
    if not args.space and not args.tree:
        raise CLIError("give at least one --space, or a --tree")
    if args.tree and len(args.space) > 1:
        raise CLIError("--tree takes at most one --space (the tree's supernet)")


def run(args: argparse.Namespace) -> int:
    _check_counts(args)
    specs = [parse_space(s) for s in args.space]
    names = unique_names(specs)
    options = dict(
        proxy=not args.no_proxy, samples=args.samples, repeats=args.repeats, seed=args.seed, scale=args.scale,
        degenerate=args.degenerate, data=args.data, batch_size=args.batch_size, device=args.device,
        arch_method=args.arch_diversity, arch_scalar=args.diversity_scalar, arch_samples=args.arch_samples,
    )
    table_paths = _tables(args, names if not args.tree else names or ["tree"])
    if args.tree:
        table = next(iter(table_paths.values()), None)
        scores = score_tree(args.tree, specs[0] if specs else None, table=table, table_loader=args.table_loader,
                            **options)
    else:
        scores = score_spaces(specs, tables=table_paths, table_loader=args.table_loader, **options)
    settings = dict(options, spaces=list(args.space), tree=args.tree, accuracy_tables=table_paths)
    report = report_json(scores, settings)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.json:
        with writing(Path(args.json).parent, Path(args.json).name):
            atomic_write_text(Path(args.json), json.dumps(report, indent=1) + "\n")
    if args.chart:
        with writing(Path(args.chart).parent, Path(args.chart).name):
            spider_chart(scores, args.chart, title=args.title)
    if not args.quiet and args.json != "-":
        for s in scores:
            print(s.summary())
            if s.performance is not None and s.performance.note:
                print(f"  note: {s.performance.note}")
            if s.note:
                print(f"  note: {s.note}")
        if args.json:
            print(f"JSON: {args.json}")
        if args.chart:
            print(f"chart: {args.chart}")
    return 0
