"""``lidsplit evaluate``: choose the final architecture among the sub-supernets' picks (best validation
accuracy, lowest sub-supernet validation loss, or successive halving trained from scratch), measure it
with its sub-supernet's weights, and train it from scratch for its test accuracy (``--scratch-epochs``)."""

from __future__ import annotations

import argparse

from lidsplit.cli._stage import add_stage_parser, pipeline


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    return add_stage_parser(subparsers, "evaluate", "choose and evaluate the final architecture (stage 4)", __doc__)


def run(args: argparse.Namespace) -> int:
    pipe = pipeline(args)
    final = pipe.evaluate()
    print(pipe.describe_final(final))
    print(f"saved in {pipe.path('final').resolve()}")
    return 0
