"""``lidsplit report``: draw the split tree, the sub-supernets' layer-wise LID profiles, the separability
of each edge at each split and the search progress (PNG files), with a JSON summary, into OUT/report."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "report", "write the run's report (stage 5)", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    summary = pipe.report()
    print(pipe.describe_report(summary))
    return 0
