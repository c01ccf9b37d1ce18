"""``lidsplit`` command line entry point.

Subcommands are modules of this package, listed in :data:`SUBCOMMANDS`. Each module defines

* ``add_parser(subparsers) -> argparse.ArgumentParser``: register itself (``subparsers.add_parser(...)``)
  and its arguments; keep heavy imports (torch, lidsplit internals) out of it so ``--help`` stays fast;
* ``run(args: argparse.Namespace) -> int``: do the work, return the exit status.

To add a subcommand: write ``lidsplit/cli/<name>.py`` with those two functions and append ``"<name>"`` to
:data:`SUBCOMMANDS`.

Exit status: 0 success; 2 bad usage: argparse errors, and every user error, reported as one
``lidsplit <cmd>: error: ...`` line on stderr; 130 on Ctrl-C. The rule for user errors is one: a
:class:`~lidsplit.common.errors.LidsplitError` exits with its ``code`` (2 unless set). The engine's
argument checks raise ``ValueError`` (Python's convention for a bad argument), and a missing file or
optional package raises ``FileNotFoundError`` / ``ImportError``; those are reported the same way. Other
exceptions propagate with their traceback (bugs).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from lidsplit.common.errors import CLIError, LidsplitError
from lidsplit.common.rundir import locked_run_dir

__all__ = ["SUBCOMMANDS", "CLIError", "build_parser", "main"]

#: Subcommand modules, in help order (``lidsplit.cli.<name>``).
SUBCOMMANDS: list[str] = ["run", "split", "train", "search", "evaluate", "report", "complexity"]


def build_parser() -> argparse.ArgumentParser:
    from lidsplit import __version__

    parser = argparse.ArgumentParser(
        prog="lidsplit",
        description="Few-shot NAS tools: split weight-sharing supernets into sub-supernets, and judge "
                    "search spaces before searching them.",
    )
    parser.add_argument("--version", action="version", version=f"lidsplit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        mod = importlib.import_module(f"lidsplit.cli.{name}")
        p = mod.add_parser(sub)
        p.set_defaults(_run=mod.run, _command=name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``lidsplit`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as e:  # --help / --version (0) or a usage error (2, message already printed)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    cmd = getattr(args, "_command", "?")
    try:
        if getattr(args, "_locks_out", False) and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
            # every torchrun rank would run the whole command on one directory: it starts its own ranks
            raise CLIError(f"started as one of {os.environ['WORLD_SIZE']} torchrun processes; run the command "
                           "once and give --nproc N for data-parallel training (torchrun is for your own scripts "
                           "calling lidsplit.train with parallel=init_data_parallel())")
        if getattr(args, "_locks_out", False):  # a pipeline command: its run directory is locked while it runs
            text = "lidsplit " + " ".join(argv if argv is not None else sys.argv[1:])
            with locked_run_dir(args.out, text):
                return int(args._run(args) or 0)
        return int(args._run(args) or 0)
    except LidsplitError as e:
        print(f"lidsplit {cmd}: error: {e}", file=sys.stderr)
        return e.code
    except (ValueError, FileNotFoundError, ImportError) as e:
        print(f"lidsplit {cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lidsplit {cmd}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
