"""The config schema accepts only what the engine accepts: every field's minimum runs, one below is refused."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lidsplit.pipeline import Config, ConfigError, Pipeline
from lidsplit.pipeline.config import FIELDS
from lidsplit.search import STRATEGIES, make_strategy
from lidsplit.search.evaluator import Result
from lidsplit.spaces import NB201_SPACE

BOUNDED = [f for f in FIELDS if f.minimum is not None]


def _minimums() -> dict[str, dict[str, object]]:
    """Every bounded field at its minimum (the rules between keys hold at the minimums)."""
    raw: dict[str, dict[str, object]] = {}
    for f in BOUNDED:
        raw.setdefault(f.section, {})[f.key] = f.type(f.minimum)
    return raw


@pytest.mark.parametrize("field", BOUNDED, ids=lambda f: f.name)
def test_below_the_minimum_is_refused(field) -> None:  # type: ignore[no-untyped-def]
    below = field.minimum - 1 if field.type is int else math.nextafter(field.minimum, -math.inf)
    with pytest.raises(ConfigError, match=rf"{field.name} must be >= "):
        Config.from_dict({field.section: {field.key: below}})


def test_lid_k_1_is_refused() -> None:  # issue 18: it drew all-zero LID profiles
    with pytest.raises(ConfigError, match="report.lid_k must be >= 2"):
        Config.from_dict({"report": {"lid_k": 1}})
    with pytest.raises(ConfigError, match="report.lid_batch = 20 must exceed report.lid_k = 20"):
        Config.from_dict({"report": {"lid_k": 20, "lid_batch": 20}})


def test_whole_pipeline_runs_at_the_minimums(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    raw = _minimums()
    raw["run"] = {"progress": False}
    cfg = Config.from_dict(raw)
    assert cfg.report.lid_k == 2 and cfg.data.batch_size == 2 and cfg.search.population == 1
    pipe = Pipeline(tmp_path / "run", [raw], log=lambda _m: None)
    out = pipe.run()
    assert out["final"]["leaf"] in {n.id for n in pipe.tree.leaves()}
    summary = json.loads((tmp_path / "run" / "report" / "summary.json").read_text())
    means = [v for leaf in summary["lid_profiles"]["leaves"].values() for v in leaf["mean"]]
    assert means and all(math.isfinite(v) and v > 0 for v in means)  # not the all-zero profiles of k = 1


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_every_strategy_runs_at_the_minimums(name: str) -> None:
    params = {f.key: f.type(f.minimum) for f in BOUNDED if f.section == "search"}
    s = make_strategy(name, NB201_SPACE, seed=0, **params)
    told = 0
    while (a := s.ask()) is not None and told < 100:
        s.tell(a, Result(0.5))
        told += 1
    assert told >= 1 and s.finished
