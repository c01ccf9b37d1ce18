"""``python -m lidsplit ...``: the same as the ``lidsplit`` console script."""

from lidsplit.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
