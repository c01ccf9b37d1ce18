"""What every pipeline stage is: a small unit with the stages it needs, a test for "done" and the work."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # the pipeline imports the stages
    from lidsplit.pipeline.pipeline import Pipeline


class Stage(ABC):
    """One stage of the pipeline on its run directory.

    ``needs``: stages whose complete results this one reads. ``has_results()``: something is written
    (from then on the config keys of this stage and the earlier ones are locked). ``done()``: complete,
    ``result()`` reads the result back without writing anything (so a finished run on read-only storage
    can still be printed). ``run()`` does or resumes the work; the pipeline calls it after checking
    ``needs``, that the directory is writable, and saving the config.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe

    @property
    def dir(self) -> Path:
        return self.pipe.path(self.name)

    def has_results(self) -> bool:
        return False

    def done(self) -> bool:
        return False

    def result(self) -> Any:
        raise NotImplementedError(f"the {self.name} stage keeps no result to read back")

    @abstractmethod
    def run(self) -> Any:
        """Do (or resume) the stage's work; returns its result."""
