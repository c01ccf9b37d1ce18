"""``lidsplit run``: the whole pipeline (split, train, search, evaluate, report) in one run directory.
Every stage resumes or skips what is done, so re-running the same command finishes an interrupted run.
Ends by printing the split tree, the chosen architecture, its accuracy and where the report is."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "run", "run every stage: split, train, search, evaluate, report", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    out = pipe.run()
    print("\nSplit tree:")
    print(pipe.tree.render())
    print()
    print(pipe.describe_final(out["final"]))
    print(pipe.describe_report(out["report"]))
    return 0
