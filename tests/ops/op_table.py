"""The one dtype / tolerance table of the op tests (every op, every device; pytorch_scatter style).

A test file takes its op's row: ``from op_table import DTYPES, TOL`` then ``DTYPES["masked_sum"]``.
To test a new op, add its row here; devices come from the ``dev`` fixture (tests/ops/conftest.py).
"""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, settings

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]

# The dtypes each op accepts. knn / lid compute float32 distances: float64 is refused, not narrowed.
DTYPES: dict[str, list[torch.dtype]] = {
    "masked_sum": FLOATS,
    "gradient": FLOATS,
    "superpose": FLOATS,
    "lid": [torch.float32, torch.float16, torch.bfloat16],
}

# Relative rounding of one result stored in the dtype (accumulation is wider): the bound the
# reference comparisons scale.
TOL: dict[torch.dtype, float] = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-12}

# Hypothesis tests that take the function-scoped dev / panels fixtures.
FIXTURE_OK = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
