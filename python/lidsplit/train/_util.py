"""Deprecated location of the progress / device / batch helpers: use :mod:`lidsplit.common`
(``progress_bar`` in ``common.progress``; ``model_device``, ``unpack_batch``, ``logits_of`` in
``common.batch``). Kept for one release."""

from lidsplit.common.batch import logits_of, model_device, unpack_batch
from lidsplit.common.progress import progress_bar

__all__ = ["progress_bar", "model_device", "unpack_batch", "logits_of"]
