"""lidsplit: split weight-sharing supernets into sub-supernets for few-shot NAS."""

from lidsplit._cuda import cuda_info
from lidsplit import ops
from lidsplit import split  # the subpackage (calling it is deprecated: use run_split)
from lidsplit.split.run import run_split

__version__ = "0.1.0"

__all__ = ["cuda_info", "ops", "split", "run_split", "__version__"]
