"""lidsplit: split weight-sharing supernets into sub-supernets for few-shot NAS."""

import os
import sys

# OpenMP's wait policy is read once, when torch loads its OpenMP runtime. By default libgomp spins at
# every barrier before it sleeps; on cores shared with other jobs the spinning thread takes the core
# its partner needs, and the README's job trained 4-10x slower beside one busy process
# (benchmarks/bench_load.py). PASSIVE sleeps at once. Only when torch is not loaded yet and the user
# chose no policy (any OMP_WAIT_POLICY, e.g. ACTIVE, opts out).
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lidsplit._cuda import cuda_info
from lidsplit import ops
from lidsplit import split  # the subpackage (calling it is deprecated: use run_split)
from lidsplit.split.run import run_split

__version__ = "0.1.0"

__all__ = ["cuda_info", "ops", "split", "run_split", "__version__"]
