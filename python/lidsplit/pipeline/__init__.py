"""The few-shot NAS pipeline (split, train, search, evaluate, report) on a resumable run directory, and
its configuration schema. The ``lidsplit`` command line is a thin layer over :class:`Pipeline`."""

from lidsplit.pipeline.config import FIELDS, STAGES, Config, ConfigError, Field, defaults, load_file, validate
from lidsplit.pipeline.pipeline import Pipeline

__all__ = ["FIELDS", "STAGES", "Config", "ConfigError", "Field", "Pipeline", "defaults", "load_file", "validate"]
