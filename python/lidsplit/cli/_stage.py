"""What the pipeline subcommands (split, train, search, evaluate, report, run) share: the run directory,
``--config`` and one flag per config key (grouped by section), and building the :class:`Pipeline`.

Flags given on the command line override the ``--config`` file, which overrides the run directory's saved
config, which overrides the defaults (``lidsplit.pipeline.config``). Only flags actually given count, so a
re-run without flags resumes the run with its own settings.
"""

from __future__ import annotations

import argparse
from typing import Any

from lidsplit.pipeline import Pipeline
from lidsplit.pipeline.config import FIELDS, SECTIONS, Field, flag_of, load_file

_SECTION_HELP = {
    "run": "run", "data": "data", "space": "search space", "split": "split (stage 'split')",
    "train": "training hyper-parameters (all stages) and the 'train' stage", "search": "search (stage 'search')",
    "evaluate": "final choice and evaluation (stage 'evaluate')", "report": "report (stage 'report')",
}


def _parse(field: Field) -> Any:
    def parse(text: str) -> Any:
        if field.optional and text.lower() in ("none", "null"):
            return None
        try:
            return field.type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {field.type.__name__}"
                                             f"{' or none' if field.optional else ''}, got {text!r}") from None

    parse.__name__ = field.type.__name__  # argparse names the type in its error message
    return parse


def add_stage_parser(subparsers: argparse._SubParsersAction, name: str, help: str,
                     description: str | None) -> argparse.ArgumentParser:
    """Register the pipeline subcommand ``name`` with the run directory, ``--config`` and every key's flag."""
    p = subparsers.add_parser(name, help=help, description=description)
    add_pipeline_args(p)
    p.set_defaults(_locks_out=True)  # lidsplit.cli.main holds the run directory's lock for the whole command
    return p


def add_pipeline_args(p: argparse.ArgumentParser) -> None:
    """``--out``, ``--config`` and every config key's flag (``argparse.SUPPRESS`` default: absent unless given)."""
    p.add_argument("--out", required=True, help="run directory (created; an existing run there resumes; locked "
                                                "while a command runs)")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="config file (.toml, .yaml, .json) with the keys below as [section] key = value; "
                        "flags override it; the resolved config is saved as OUT/config.json")
    for section in SECTIONS:
        g = p.add_argument_group(_SECTION_HELP[section])
        for f in (f for f in FIELDS if f.section == section):
            dest = f"cfg.{f.name}"
            default = "none" if f.default is None else f.default
            text = f"{f.help} [{f.name}; default {default}]"
            if f.type is bool:
                g.add_argument(flag_of(f), dest=dest, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=text)
            else:
                g.add_argument(flag_of(f), dest=dest, type=_parse(f), default=argparse.SUPPRESS,
                               choices=f.choices, metavar=None if f.choices else f.type.__name__.upper(), help=text)


def flag_overrides(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The config keys given as flags: ``{section: {key: value}}``."""
    out: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if dest.startswith("cfg."):
            section, key = dest[4:].split(".", 1)
            out.setdefault(section, {})[key] = value
    return out


def pipeline(args: argparse.Namespace) -> Pipeline:
    """The :class:`~lidsplit.pipeline.Pipeline` of ``args.out`` with ``--config`` and the flags applied."""
    overrides = [load_file(args.config)] if args.config else []
    overrides.append(flag_overrides(args))
    return Pipeline(args.out, overrides)
