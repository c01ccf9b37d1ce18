"""``lidsplit split``: split the built-in supernet into sub-supernets (NAS-LID, GM-NAS, zero-cost proxies,
few-shot NAS) and fine-tune them; the run directory's ``split/`` holds the tree and checkpoints, and
re-running the command resumes an interrupted split."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "split", "split a supernet into sub-supernets (stage 1)", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    tree = pipe.split()
    print(tree.render())
    print(f"\n{len(tree.leaves())} sub-supernets; split tree and checkpoints in {pipe.path('split').resolve()}")
    return 0
