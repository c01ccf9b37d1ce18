"""How much the main job's training slows when the cores are shared, and what the OpenMP wait policy does.

Usage::

    python benchmarks/bench_load.py [--steps 150] [--hogs 1] [--repeat 3]

Each measurement runs in a fresh process (an OpenMP runtime reads its settings when it loads): the
README's supernet (NB201, C=8, N=1, the shipped digits, batch 64) trained by ``train_subsupernet`` for
``--steps`` single-path steps, timed after 20 warm-up steps. Settings: torch threads 1 / 2 (all cores
here) and ``OMP_WAIT_POLICY`` unset (libgomp spins at a barrier before it sleeps) / ``PASSIVE`` (it sleeps
at once). Each setting is measured alone and beside ``--hogs`` busy processes (pure Python loops, one
core each), in turns, so a change of the machine's load hits all settings alike. The slowdown is
loaded / alone; with ``h`` hogs on ``c`` cores a process that gets its fair share slows at most about
``(h + 1) / c`` for 2 threads (``max(1, (h + 1) / c)`` for 1 thread).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time, torch
import lidsplit
from lidsplit import spaces
from lidsplit.data import load
from lidsplit.supernet import SubSupernet, search_space
from lidsplit.train import train_subsupernet
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
data = load("digits")
model = spaces.build("nb201", num_classes=data.num_classes, in_channels=data.in_channels, C=8, N=1)
loaders = data.loaders(64, seed=0)
times = []
def on_step(ev):
    times.append(time.perf_counter())
    if len(times) >= steps + 20:
        raise StopIteration
try:
    train_subsupernet(model, SubSupernet.full(search_space(model)), loaders, 50, progress=False, on_step=on_step)
except StopIteration:
    pass
print(json.dumps({"steps_per_s": steps / (times[-1] - times[19])}))
"""


def _hog(stop: mp.Event) -> None:
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def measure(threads: int, policy: str, steps: int) -> float:
    """Steps/s of one fresh process; ``policy``: ``unset``, an ``OMP_WAIT_POLICY`` value, or ``spin=N``
    (``GOMP_SPINCOUNT``: libgomp spins N iterations, then sleeps)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    if policy.startswith("spin="):
        env["GOMP_SPINCOUNT"] = policy[5:]
    elif policy != "unset":
        env["OMP_WAIT_POLICY"] = policy
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["steps_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--hogs", type=int, default=1)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count() or 2])
    p.add_argument("--policies", nargs="+", default=["unset", "PASSIVE"],
                   help="unset (libgomp's default: spin, then sleep), an OMP_WAIT_POLICY value, or spin=N")
    args = p.parse_args()
    settings = [(t, pol) for t in args.threads for pol in args.policies]
    res: dict[tuple[int, str, bool], list[float]] = {}
    loads = []
    for _ in range(args.repeat):
        for loaded in (False, True):
            stop = mp.Event()
            hogs = [mp.Process(target=_hog, args=(stop,), daemon=True) for _ in range(args.hogs if loaded else 0)]
            for h in hogs:
                h.start()
            time.sleep(0.5 if hogs else 0)
            for t, pol in settings:
                loads.append(os.getloadavg()[0])
                res.setdefault((t, pol, loaded), []).append(measure(t, pol, args.steps))
            stop.set()
            for h in hogs:
                h.join()
    print(f"{os.cpu_count()} CPUs, {args.hogs} hog(s) when loaded; load average during the run "
          f"{min(loads):.1f}-{max(loads):.1f} (includes the hogs and this benchmark); medians of {args.repeat}")
    print(f"{'threads':>7} {'wait policy':<16}{'alone steps/s':>14}{'loaded steps/s':>15}{'slowdown':>10}")
    for t, pol in settings:
        a, b = statistics.median(res[(t, pol, False)]), statistics.median(res[(t, pol, True)])
        print(f"{t:>7} {pol:<16}{a:>14.1f}{b:>15.1f}{a / b:>10.2f}")


if __name__ == "__main__":
    main()
