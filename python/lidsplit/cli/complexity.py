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
from typing import Any

__all__ = ["add_parser", "run", "parse_space_spec", "PRESETS"]

#: CLI-only space presets: name -> (builder name, constructor arguments); filled lazily (torch imports).
PRESETS = ("proxylessnas-imagenet", "proxylessnas-paper")


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


def parse_space_spec(spec: str) -> tuple[str, str, dict[str, Any]]:
    """``(display name, builder name, kwargs)`` of ``NAME`` or ``NAME:JSON``."""
    from lidsplit.cli.main import CLIError

    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise CLIError(f"--space {spec!r}: missing the space name")
    kw: dict[str, Any] = {}
    if sep:
        try:
            kw = json.loads(rest)
        except json.JSONDecodeError as e:
            raise CLIError(f"--space {spec!r}: the part after ':' must be a JSON object of arguments ({e})") from None
        if not isinstance(kw, dict):
            raise CLIError(f"--space {spec!r}: the part after ':' must be a JSON object, got {type(kw).__name__}")
    key = name.lower()
    if key in PRESETS:
        from lidsplit.complexity import PAPER_PROXYLESSNAS_KW, PROXYLESSNAS_KW

        base = dict(PAPER_PROXYLESSNAS_KW if key == "proxylessnas-paper" else PROXYLESSNAS_KW)
        base.update(in_channels=1, num_classes=10)
        base.update(kw)
        return name, "mobilenet", base
    from lidsplit.spaces import _BUILDERS, SPACES

    if key.replace("-", "").replace("_", "") not in _BUILDERS:
        raise CLIError(f"--space {spec!r}: unknown space {name!r}; choose from {list(SPACES) + list(PRESETS)}")
    return name, key, kw


def _build(builder: str, kw: dict[str, Any], seed: int, device: str, spec: str):
    import torch

    from lidsplit.cli.main import CLIError
    from lidsplit.spaces import build

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = build(builder, **kw)
        except TypeError as e:
            raise CLIError(f"--space {spec!r}: bad constructor arguments ({e})") from None
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise CLIError(f"--device {device!r}: {e}") from None


def _tables(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    from lidsplit.cli.main import CLIError

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
    from lidsplit.cli.main import CLIError

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
    from lidsplit.cli.main import CLIError

    _check_counts(args)
    from lidsplit.complexity import (
        AccuracyTable,
        complexity_scores,
        report_json,
        spider_chart,
        tree_complexity,
    )
    from lidsplit.supernet import search_space

    specs = [parse_space_spec(s) for s in args.space]
    names: list[str] = []
    for display, _, _ in specs:
        n, k = display, 2
        while n in names:
            n, k = f"{display} #{k}", k + 1
        names.append(n)
    tree = None
    if args.tree:
        from lidsplit.split import SplitTree

        try:
            tree = SplitTree.load(args.tree)
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise CLIError(f"--tree {args.tree!r}: not a split tree JSON ({e!r})") from None
    table_paths = _tables(args, names if tree is None else ["tree"] if not names else names)
    common = dict(
        proxy=not args.no_proxy, samples=args.samples, repeats=args.repeats, seed=args.seed, scale=args.scale,
        degenerate=args.degenerate, data=args.data, batch_size=args.batch_size, device=args.device,
        arch_method=args.arch_diversity, arch_scalar=args.diversity_scalar, arch_samples=args.arch_samples,
    )
    scores = []
    if tree is not None:
        model = None
        if specs:
            display, builder, kw = specs[0]
            model = _build(builder, kw, args.seed, args.device, args.space[0])
            if search_space(model) != tree.space:
                raise CLIError(f"--tree {args.tree!r} was split from a different search space than --space "
                               f"{args.space[0]!r} ({tree.space!r} vs {search_space(model)!r})")
        table = None
        if table_paths:
            (path,) = table_paths.values()
            table = AccuracyTable.load(path, tree.space, loader=args.table_loader)
        scores = tree_complexity(tree, model, table=table, **common)
    else:
        for (display, builder, kw), name, spec in zip(specs, names, args.space):
            model = _build(builder, kw, args.seed, args.device, spec)
            table = None
            if name in table_paths:
                table = AccuracyTable.load(table_paths[name], search_space(model), loader=args.table_loader)
            scores.append(complexity_scores(model, name=name, table=table, **common))
    settings = {k: v for k, v in common.items()}
    settings.update(spaces=list(args.space), tree=args.tree, accuracy_tables=table_paths)
    report = report_json(scores, settings)
    if args.json == "-":
        json.dump(report, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.json:
        from pathlib import Path

        from lidsplit.common.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(report, indent=1) + "\n")
    if args.chart:
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
