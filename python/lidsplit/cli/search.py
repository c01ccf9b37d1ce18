"""``lidsplit search``: search the split tree (evolution, aging evolution or random search), scoring each
architecture with the weights of the sub-supernet that contains it on the validation split. The history is
written as it goes; re-running resumes it."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "search", "search architectures over the sub-supernets (stage 3)", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    res = pipe.search()
    print(f"{res.evaluations} architectures evaluated; picks per sub-supernet:")
    for leaf, rec in res.picks().items():
        print(f"  leaf {leaf}: val acc {rec.acc:.4f}  {pipe.describe_arch(rec.arch)}")
    print(f"history in {(pipe.path('search') / 'history.json').resolve()}")
    return 0
