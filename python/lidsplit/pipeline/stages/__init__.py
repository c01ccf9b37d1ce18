"""The pipeline's stages, one small unit each (:class:`~lidsplit.pipeline.stages.base.Stage`): split,
train, search, evaluate, report. To add a stage: subclass ``Stage`` in a module here, add it to
:data:`STAGE_TYPES` (in order) and to ``lidsplit.pipeline.config.STAGES``."""

from lidsplit.pipeline.stages.base import Stage
from lidsplit.pipeline.stages.evaluate import EvaluateStage
from lidsplit.pipeline.stages.report import ReportStage
from lidsplit.pipeline.stages.search import SearchStage
from lidsplit.pipeline.stages.split import SplitStage
from lidsplit.pipeline.stages.train import TrainStage

#: The stages in pipeline order.
STAGE_TYPES: tuple[type[Stage], ...] = (SplitStage, TrainStage, SearchStage, EvaluateStage, ReportStage)

__all__ = ["Stage", "SplitStage", "TrainStage", "SearchStage", "EvaluateStage", "ReportStage", "STAGE_TYPES"]
