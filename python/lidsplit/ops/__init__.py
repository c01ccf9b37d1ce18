"""The public op API. Each op is also registered as ``torch.ops.lidsplit.<name>``."""

from lidsplit.ops import reference
from lidsplit.ops.gradient import gradient_cosine, gradient_gram
from lidsplit.ops.lid import knn, lid_mle, lid_profile
from lidsplit.ops.masked_sum import masked_sum
from lidsplit.ops.superpose import superpose, superpose_coeff_grad

__all__ = [
    "reference",
    "masked_sum",
    "gradient_cosine",
    "gradient_gram",
    "knn",
    "lid_mle",
    "lid_profile",
    "superpose",
    "superpose_coeff_grad",
]
