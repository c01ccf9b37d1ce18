"""The ``lidsplit`` command line: ``lidsplit <subcommand> ...`` (see :mod:`lidsplit.cli.main`)."""

from lidsplit.cli.main import CLIError, build_parser, main

__all__ = ["CLIError", "build_parser", "main"]
