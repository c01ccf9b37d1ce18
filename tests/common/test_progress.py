"""Progress bars: a total on every bar, plain lines (no carriage returns) when stderr is not a terminal."""

from __future__ import annotations

import io

import pytest

from lidsplit.common import progress
from lidsplit.common.progress import progress_bar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_redirected_stderr_gets_plain_lines_with_totals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress, "LINE_INTERVAL", 0.0)  # a line on every step
    out = io.StringIO()
    bar = progress_bar(range(3), desc="epochs", file=out)
    bar.set_postfix(loss=0.5, refresh=False)
    assert list(bar) == [0, 1, 2]
    bar.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["epochs: 1/3", "epochs: 2/3", "epochs: 3/3", "epochs: 3/3"]
    assert "loss=0.5" in lines[0]
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_short_bar_is_silent_and_total_given_or_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    bar = progress_bar(None, desc="search", total=5, initial=2, file=out)
    bar.update(1)
    bar.close()
    assert out.getvalue() == ""  # shorter than LINE_INTERVAL: nothing
    assert progress_bar([1, 2], file=out).total == 2  # len() when no total is given


def test_terminal_gets_tqdm_and_off_gets_nothing() -> None:
    tqdm = pytest.importorskip("tqdm")
    bar = progress_bar(range(4), desc="x", file=Terminal())
    assert isinstance(bar, tqdm.tqdm) and bar.total == 4
    bar.close()
    out = io.StringIO()
    assert list(progress_bar(range(2), enabled=False, file=out)) == [0, 1] and out.getvalue() == ""
