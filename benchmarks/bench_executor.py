"""Local vs Ray: the split stage of the README's main job, a bench_ranking sweep, and a scaling estimate.

Measures (``--out DIR`` keeps the run directories and writes ``DIR/bench_executor.json``):

1. ``split``: the split stage of ``lidsplit run`` with its defaults (NB201 C=8 on digits, NAS-LID, 2 rounds
   -> 4 leaves, warm-up 4 epochs per level, fine-tune 4) with ``--executor local`` and with ``--executor
   ray --workers 2``, 1 torch thread per task. Reports wall times (Ray: with and without starting the
   local cluster), their ratio, whether ``split/tree.json`` and the leaves' weights are byte-identical,
   and the critical path read from ``split/tasks.jsonl``: the levels run one after another (a node's
   children need its weights), so the wall time is at least the sum over levels of the level's longest
   task, and the root's warm-up + scoring is one task nobody can share.
2. ``ranking`` (``--ranking``): ``bench_ranking.py --quick --methods one-shot lid random --seeds 0 1``,
   local vs ray with 2 workers (6 independent (method, seed) runs).
3. ``simulate``: the wall time of larger splits on G = 1, 4, 8, 16 GPUs, from measured per-task times
   (module :func:`simulate`): per level, the level's tasks are list-scheduled (longest first) on G
   workers and the level ends with its longest worker (the executor's barrier: the next level's nodes
   need this level's splits); then the leaves' fine-tunes likewise. Task times come from this run's
   ``run.json`` timings (per-epoch training seconds of a node, scoring seconds per candidate edge) and,
   for DARTS, a measured epoch of the DARTS supernet on digits; one GPU is assumed to run a task as fast
   as one CPU thread ran it here (only the ratios matter for the speed-ups). Scenarios: a 16-leaf NB201
   split (4 rounds of 2-way splits) under the main job's custom schedule, NAS-LID's and GM-NAS's
   protocols (E = 8), and a 7-leaf DARTS split (one edge split into its 7 non-zero ops, Few-Shot NAS's
   protocol, E = 8).

The machine is shared (2 cores, other people's jobs): ``uptime``'s load average is recorded before and
after every timing; treat ratios measured at a load above 2 as rough.

Usage::

    python benchmarks/bench_executor.py --out /tmp/bench_executor [--ranking] [--skip-ray]
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from lidsplit.common.executor import read_task_records
from lidsplit.pipeline import Pipeline

REPO = Path(__file__).resolve().parents[1]


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def split_stage(out: Path, executor: str, workers: int) -> dict[str, Any]:
    """The main job's split stage in ``out`` with ``executor``; wall times and task records."""
    run = {"executor": executor, "workers": workers, "threads": 1, "progress": False}
    pipe = Pipeline(out, [{"run": run}], log=lambda _m: None)
    before = load()
    t0 = time.perf_counter()
    pipe.executor  # noqa: B018 - starts the local Ray cluster (timed apart)
    t1 = time.perf_counter()
    pipe.split()
    t2 = time.perf_counter()
    pipe.close()
    tasks = read_task_records(out / "split" / "tasks.jsonl")
    return {"executor": executor, "workers": workers, "start_s": t1 - t0, "split_s": t2 - t1, "total_s": t2 - t0,
            "load_before": before, "load_after": load(), **critical_path(tasks)}


def critical_path(tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Serial sum of the tasks, and the lower bound of any schedule: per level the longest task."""
    levels: dict[str, float] = {}
    for t in tasks:
        name = t["task"]
        level = name.split("(level ")[1].rstrip(")") if "(level " in name else "leaves"
        levels[level] = max(levels.get(level, 0.0), t["end"] - t["start"])
    return {"tasks": [{"task": t["task"], "seconds": t["end"] - t["start"], "pid": t["pid"]} for t in tasks],
            "serial_s": sum(t["end"] - t["start"] for t in tasks), "critical_path_s": sum(levels.values()),
            "level_max_s": levels}


def identical(a: Path, b: Path) -> bool:
    files = ["split/tree.json"] + [str(p.relative_to(a)) for p in sorted(a.glob("split/nodes/*/final.pt"))]
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


# ---- the scaling estimate ------------------------------------------------------------------------


def makespan(durations: list[float], workers: int) -> float:
    """Longest-first list scheduling of ``durations`` on ``workers``: when the last one ends."""
    free = [0.0] * workers
    for d in sorted(durations, reverse=True):
        i = min(range(workers), key=free.__getitem__)
        free[i] += d
    return max(free, default=0.0)


def simulate(levels: list[list[float]], leaves: list[float], gpus: int) -> float:
    """Wall time of a split whose level ``l`` has node tasks ``levels[l]`` and whose leaves' fine-tunes
    take ``leaves``, on ``gpus`` workers (levels are barriers)."""
    return sum(makespan(lv, gpus) for lv in levels) + makespan(leaves, gpus)


def nb201_scenario(epoch_s: float, score_edge_s: float, warmup: list[int], finetune: int,
                   rounds: int = 4) -> tuple[list[list[float]], list[float]]:
    """Task times of ``rounds`` levels of 2-way NB201 splits (6 edges; a node at level l scores its 6 - l
    unsplit edges) with ``warmup[l]`` epochs per level and ``finetune`` epochs per leaf."""
    levels = [[warmup[min(lv, len(warmup) - 1)] * epoch_s + (6 - lv) * score_edge_s] * 2**lv for lv in range(rounds)]
    return levels, [finetune * epoch_s] * 2**rounds


def darts_epoch_seconds(threads: int = 1) -> float:
    """One training epoch of the DARTS supernet (8 cells, C=16) on digits, uniform single-path, here."""
    from lidsplit import spaces
    from lidsplit.data import digits
    from lidsplit.supernet import SubSupernet, search_space
    from lidsplit.train import train_subsupernet

    torch.set_num_threads(threads)
    data = digits()
    torch.manual_seed(0)
    model = spaces.build("darts", num_classes=data.num_classes, in_channels=data.in_channels)
    t0 = time.perf_counter()
    train_subsupernet(model, SubSupernet.full(search_space(model)), data.loaders(64, seed=0), 1, seed=0,
                      progress=False)
    return time.perf_counter() - t0


def scaling(local: dict[str, Any], run_json: dict[str, Any], darts_epoch_s: float | None) -> dict[str, Any]:
    timings = run_json["timings"]
    warm = [v["warmup"] / 4 for v in timings.values() if "warmup" in v]  # the main job: 4 warm-up epochs a level
    fine = [v["finetune"] / 4 for v in timings.values() if "finetune" in v]  # ... and 4 fine-tune epochs
    per_edge = [s for v in timings.values() for s in v.get("per_edge", {}).values()]
    epoch_s = (sum(warm) + sum(fine)) / (len(warm) + len(fine))
    edge_s = sum(per_edge) / len(per_edge)
    scenarios = {
        "nb201 16 leaves, main job schedule (warm-up 4 a level, fine-tune 4)": nb201_scenario(epoch_s, edge_s, [4], 4),
        "nb201 16 leaves, nas-lid E=8 (root 8, fine-tune 2)": nb201_scenario(epoch_s, edge_s, [8, 0], 2),
        "nb201 16 leaves, gm-nas E=8 (2 a level, fine-tune 8)": nb201_scenario(epoch_s, edge_s, [2], 8),
    }
    if darts_epoch_s is not None:  # few-shot E=8: the root 8 epochs, no scoring (exhaustive), 7 leaves x 4
        scenarios["darts 7 leaves, few-shot E=8 (root 8, fine-tune 4)"] = ([[8 * darts_epoch_s]], [4 * darts_epoch_s] * 7)
    out: dict[str, Any] = {"nb201_epoch_s": epoch_s, "nb201_score_edge_s": edge_s, "darts_epoch_s": darts_epoch_s,
                           "scenarios": {}}
    for name, (levels, leaves) in scenarios.items():
        walls = {g: simulate(levels, leaves, g) for g in (1, 4, 8, 16)}
        root = levels[0][0]
        bound = sum(max(lv) for lv in levels) + max(leaves)
        out["scenarios"][name] = {
            "wall_s": walls, "speedup": {g: walls[1] / w for g, w in walls.items()},
            "root_task_s": root, "bound_s": bound, "root_share_of_bound": root / bound,
            "max_speedup": walls[1] / bound,
        }
    return out


def ranking(out: Path, executor: str) -> dict[str, Any]:
    cmd = [sys.executable, str(REPO / "benchmarks" / "bench_ranking.py"), "--quick", "--methods", "one-shot", "lid",
           "random", "--seeds", "0", "1", "--no-progress", "--threads", "1", "--work-dir", str(out / executor),
           "--executor", executor, "--workers", "2"]
    before = load()
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"executor": executor, "wall_s": time.perf_counter() - t0, "load_before": before, "load_after": load()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="directory for the runs and bench_executor.json")
    p.add_argument("--ranking", action="store_true", help="also time a bench_ranking --quick sweep")
    p.add_argument("--ranking-only", action="store_true", help="only the bench_ranking sweep (bench_ranking.json)")
    p.add_argument("--skip-ray", action="store_true", help="local only (and the simulation)")
    p.add_argument("--no-darts", action="store_true", help="leave the DARTS epoch (and scenario) out")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.ranking_only:
        rk: dict[str, Any] = {ex: ranking(args.out / "ranking", ex) for ex in ("local", "ray")}
        rk["ratio"] = rk["ray"]["wall_s"] / rk["local"]["wall_s"]
        (args.out / "bench_ranking.json").write_text(json.dumps(rk, indent=1) + "\n")
        print(f"bench_ranking --quick sweep: local {rk['local']['wall_s']:.0f} s (load {rk['local']['load_before']}), "
              f"ray x2 {rk['ray']['wall_s']:.0f} s (load {rk['ray']['load_before']}); ratio {rk['ratio']:.2f}")
        return 0
    res: dict[str, Any] = {"cpus": os.cpu_count(), "note": "shared 2-core machine: see the load averages"}
    res["local"] = split_stage(args.out / "local", "local", 1)
    print(f"split local: {res['local']['split_s']:.1f} s (load {res['local']['load_before']})", flush=True)
    if not args.skip_ray:
        res["ray"] = split_stage(args.out / "ray", "ray", 2)
        r = res["ray"]
        res["ratio_ray_over_local"] = r["split_s"] / res["local"]["split_s"]
        res["ratio_with_start"] = r["total_s"] / res["local"]["split_s"]
        res["identical"] = identical(args.out / "local", args.out / "ray")
        print(f"split ray x2: {r['split_s']:.1f} s + {r['start_s']:.1f} s start (load {r['load_before']}); "
              f"ratio {res['ratio_ray_over_local']:.2f}; identical {res['identical']}", flush=True)
    run_json = json.loads((args.out / "local" / "split" / "run.json").read_text())
    darts = None if args.no_darts else darts_epoch_seconds()
    res["scaling"] = scaling(res["local"], run_json, darts)
    if args.ranking:
        res["ranking"] = {ex: ranking(args.out / "ranking", ex) for ex in ("local", "ray")}
        res["ranking"]["ratio"] = res["ranking"]["ray"]["wall_s"] / res["ranking"]["local"]["wall_s"]
    (args.out / "bench_executor.json").write_text(json.dumps(res, indent=1) + "\n")
    for name, sc in res["scaling"]["scenarios"].items():
        walls = ", ".join(f"{g}: {w:.0f} s" for g, w in sc["wall_s"].items())
        print(f"{name}: {walls}; bound {sc['bound_s']:.0f} s (root task {sc['root_task_s']:.0f} s = "
              f"{100 * sc['root_share_of_bound']:.0f} %), max speed-up {sc['max_speedup']:.1f}x")
    if "ranking" in res:
        print(f"bench_ranking --quick sweep: local {res['ranking']['local']['wall_s']:.0f} s, ray x2 "
              f"{res['ranking']['ray']['wall_s']:.0f} s (ratio {res['ranking']['ratio']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
