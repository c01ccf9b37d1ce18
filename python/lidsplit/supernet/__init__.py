"""Weight-sharing supernets: choice modules, search spaces, sub-supernets and forward modes.

The contract other code builds against (also in the README, "Bring your own supernet"): a supernet is any
``nn.Module`` holding :class:`Choice` modules (built directly, or made from another codebase's mixed ops by
:func:`adapt`); choices sharing a label are one edge, edges are ordered by first registration. Optional:
``feature_layers()`` (the modules the ``lid`` criterion profiles; else pass ``layers=``) and
``shared_modules()`` (GM-NAS's shared weights for ``gm``; else the whole model, with a
:class:`SharedModulesWarning`). See :class:`Choice`.
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
