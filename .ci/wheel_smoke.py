"""Run by .ci/wheels.sh inside a fresh venv where only the repaired wheel (and its dependencies) is
installed, from a folder outside the checkout: the compiled ops load from site-packages and agree with
the pure-torch reference. ``--cuda-compiled``: the wheel must hold the CUDA kernels (they load without a
GPU or driver: static CUDA runtime). Exits non-zero on any failure."""

from __future__ import annotations

import os
import sys

import torch

import lidsplit
from lidsplit import ops
from lidsplit.ops import reference


def main() -> None:
    where = os.path.dirname(lidsplit.__file__)
    if "site-packages" not in where:
        sys.exit(f"wheel smoke: lidsplit imported from {where}, not from the installed wheel")
    print("lidsplit from", where)
    info = lidsplit.cuda_info()
    print("cuda_info:", info)
    if "--cuda-compiled" in sys.argv[1:] and not info["compiled"]:
        sys.exit("wheel smoke: the CUDA wheel was built without its CUDA kernels")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 12, generator=g)
    torch.testing.assert_close(ops.lid_mle(x, k=8), reference.lid_mle(x, k=8), rtol=1e-4, atol=1e-5)
    feats = [[torch.randn(32, 6, generator=g), torch.randn(32, 9, generator=g)] for _ in range(2)]
    torch.testing.assert_close(ops.lid_profile(feats, k=5), reference.lid_profile(feats, k=5), rtol=1e-4, atol=1e-5)
    xs = [torch.randn(4, 3, 5, 5, generator=g, requires_grad=True) for _ in range(3)]
    w = torch.tensor([0.5, 0.0, 2.0], requires_grad=True)
    out = ops.masked_sum(xs, w)
    torch.testing.assert_close(out, reference.masked_sum([t.detach() for t in xs], w.detach()))
    out.sum().backward()
    torch.testing.assert_close(xs[2].grad, torch.full_like(xs[2], 2.0))
    grads = [[torch.randn(7, generator=g), torch.randn(3, 2, generator=g)] for _ in range(3)]
    torch.testing.assert_close(ops.gradient_cosine(grads), reference.gradient_cosine(grads), rtol=1e-5, atol=1e-6)
    # the extension NEEDS libgomp.so.1 (not vendored): torch's copy, already loaded, serves it
    gomp = sorted({line.split()[-1] for line in open("/proc/self/maps") if "libgomp" in line})
    if len(gomp) != 1:
        sys.exit(f"wheel smoke: expected one OpenMP runtime in the process, found {gomp}")
    print("wheel smoke: ops agree with the reference; OpenMP runtime:", gomp[0])


if __name__ == "__main__":
    main()
