"""Weight-sharing supernets: choice modules, search spaces, sub-supernets and forward modes.

See ``.dev/SUPERNET_CONTRACT.md`` for the contract other packages build against.
"""

from lidsplit.supernet.adapt import adapt
from lidsplit.supernet.batchnorm import BatchNorm1d, BatchNorm2d, BatchNorm3d, convert_batchnorm, is_group_aware
from lidsplit.supernet.choice import (
    Choice,
    Mixture,
    SharedModulesWarning,
    choices,
    edge_parameters,
    materialize,
    search_space,
    shared_parameters,
    zeros_like_output,
)
from lidsplit.supernet.hooks import record_outputs
from lidsplit.supernet.modes import SampledPath, use_grouped, use_path, use_sampled_path, use_sum, use_weighted
from lidsplit.supernet.space import Arch, Edge, SearchSpace, SubSupernet

__all__ = [
    "Arch",
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "Choice",
    "Edge",
    "Mixture",
    "SampledPath",
    "SearchSpace",
    "SharedModulesWarning",
    "SubSupernet",
    "adapt",
    "choices",
    "convert_batchnorm",
    "edge_parameters",
    "is_group_aware",
    "materialize",
    "record_outputs",
    "search_space",
    "shared_parameters",
    "use_grouped",
    "use_path",
    "use_sampled_path",
    "use_sum",
    "use_weighted",
    "zeros_like_output",
]
