"""lidsplit: split weight-sharing supernets into sub-supernets for few-shot NAS."""

from lidsplit._cuda import cuda_info
from lidsplit import ops

__version__ = "0.1.0"

__all__ = ["cuda_info", "ops", "__version__"]
