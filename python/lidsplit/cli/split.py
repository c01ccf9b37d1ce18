"""``lidsplit split``: split a built-in supernet on a dataset into sub-supernets and save the split tree.

The run directory holds ``run.json`` (the run's arguments), ``tree.json`` (rewritten after each split)
and per-node checkpoints; re-running the same command resumes where an interrupted run stopped.
"""

from __future__ import annotations

import argparse

CRITERIA = ("lid", "gm", "gradnorm", "snip", "grasp", "synflow", "jacob_cov", "ntk", "linear_regions",
            "exhaustive", "random")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "split",
        help="split a supernet into sub-supernets (NAS-LID, GM-NAS, zero-cost proxies, few-shot NAS)",
        description=__doc__,
    )
    p.add_argument("--out", required=True, help="run directory (created; an existing run there resumes)")
    p.add_argument("--space", default="nb201", choices=("nb201", "darts", "mobilenet"), help="built-in space")
    p.add_argument("--channels", type=int, default=8, help="supernet width C (default 8)")
    p.add_argument("--cells", type=int, default=1, help="cells per stage N (default 1)")
    p.add_argument("--data", default="digits", help="digits (ships with lidsplit), cifar10 or cifar100")
    p.add_argument("--data-path", default=None, help="CIFAR directory (else LIDSPLIT_CIFAR10/100 or LIDSPLIT_DATA)")
    p.add_argument("--criterion", default="lid", choices=CRITERIA)
    p.add_argument("--rounds", type=int, default=2, help="rounds of 2-way splits (2^rounds leaves)")
    p.add_argument("--warmup-epochs", type=int, default=2, help="supernet training before each split")
    p.add_argument("--finetune-epochs", type=int, default=2, help="training of the leaves after the last split")
    p.add_argument("--restart", action="store_true", help="re-initialise the leaves before fine-tuning")
    p.add_argument("--batches", type=int, default=8, help="scoring batches R per edge")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    import lidsplit
    from lidsplit import data as ldata
    from lidsplit import spaces
    from lidsplit.cli.main import CLIError
    from lidsplit.split.run import SplitRunError

    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if args.data == "digits":
        splits = ldata.digits(seed=args.seed)
    elif args.data in ("cifar10", "cifar100"):
        splits = getattr(ldata, args.data)(args.data_path, seed=args.seed)
    else:
        raise ValueError(f"--data must be digits, cifar10 or cifar100, got {args.data!r}")
    kw = dict(num_classes=splits.num_classes, in_channels=splits.in_channels)
    if args.space == "nb201":
        kw.update(C=args.channels, N=args.cells)
    with torch.random.fork_rng():  # the same seed builds the same initial supernet, so a re-run resumes
        torch.manual_seed(args.seed)
        model = spaces.build(args.space, **kw)
    try:
        tree = lidsplit.run_split(
            model,
            splits,
            args.criterion,
            args.rounds,
            warmup_epochs=args.warmup_epochs,
            finetune_epochs=args.finetune_epochs,
            restart=args.restart,
            batch_size=args.batch_size,
            batches=args.batches,
            seed=args.seed,
            run_dir=args.out,
            progress=not args.no_progress,
        )
    except SplitRunError as e:
        raise CLIError(str(e)) from e
    print(tree.render())
    print(f"\n{len(tree.leaves())} sub-supernets; split tree and checkpoints in {Path(args.out).resolve()}")
    return 0
