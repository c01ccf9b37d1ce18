"""``lidsplit train``: fine-tune every sub-supernet of a split run for ``--train-epochs`` more epochs
(resumable per leaf; the search then uses these weights)."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "train", "fine-tune the sub-supernets further (stage 2)", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    done = pipe.train()
    if done:
        print(f"{len(done)} sub-supernets fine-tuned; weights in {pipe.path('train').resolve()}")
    return 0
