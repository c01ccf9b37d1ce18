"""Shared test configuration: a fast, deterministic hypothesis profile and the device table."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, settings

from lidsplit.data import DataSplits, synthetic

settings.register_profile(
    "lidsplit",
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("lidsplit")

# One test table, run on every device present (pytorch_scatter style).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(autouse=True)
def _keep_torch_threads():  # type: ignore[no-untyped-def]
    """A test that runs a pipeline stage sets torch's threads (``run.threads``, default 1); the next tests
    keep the machine's, so the kernels' threaded paths stay tested."""
    n = torch.get_num_threads()
    yield
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def data() -> DataSplits:
    """Tiny synthetic images: 4 classes, 1 x 8 x 8, 48 train / 16 val / 16 test (a test module may
    define its own ``data``)."""
    return synthetic(80, num_classes=4, in_channels=1, image_size=8, seed=0, noise=0.5)


@pytest.fixture(scope="module")
def one_thread():  # type: ignore[no-untyped-def]
    """Tiny models run fastest on one torch thread (and do not stall when the machine is busy)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
