"""The ground floor every other lidsplit package builds on; it imports no other lidsplit package.

- ``errors``: the one error hierarchy (``LidsplitError`` and its user-error subclasses).
- ``seeds``: ``derive_seed(*parts)``, the seed of every random stream.
- ``io``: atomic writes; ``read_json`` / ``load_checkpoint`` that name a damaged file.
- ``progress``: ``progress_bar``.
- ``batch``: ``model_device``, ``unpack_batch``, ``logits_of``.
- ``rundir``: the run-directory mechanism (path checks, the lock, headed state files, identities).
- ``executor``: where independent tasks run (``local`` / ``ray``) and their records (``tasks.jsonl``).
"""

from lidsplit.common import batch, errors, executor, io, progress, rundir, seeds
from lidsplit.common.batch import *  # noqa: F403
from lidsplit.common.errors import *  # noqa: F403
from lidsplit.common.executor import *  # noqa: F403
from lidsplit.common.io import *  # noqa: F403
from lidsplit.common.progress import *  # noqa: F403
from lidsplit.common.rundir import *  # noqa: F403
from lidsplit.common.seeds import *  # noqa: F403

__all__ = [*errors.__all__, *seeds.__all__, *io.__all__, *progress.__all__, *batch.__all__, *rundir.__all__,
           *executor.__all__]
