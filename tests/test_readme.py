"""The README's set-up commands are the ones CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="not run from a source checkout")
def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    test_cmd = next(b for b in blocks if "pytest" in b).strip()
    ci = (ROOT / ".ci" / "run").read_text()
    install = re.search(r'pip install -c constraints\.txt "\.\[test\]"', test_cmd)
    assert install, test_cmd
    assert install.group(0) in ci
    assert "python -m pytest -q" in test_cmd and "python -m pytest -q" in ci
    main_cmd = next(b for b in blocks if "lidsplit run" in b)
    assert "constraints.txt" in main_cmd


@pytest.mark.skipif(not (ROOT / "README.md").exists(), reason="not run from a source checkout")
def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    from lidsplit.pipeline import load_file

    block = re.search(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "the README shows a config file"
    (tmp_path / "run.toml").write_text(block.group(1))
    cfg = load_file(tmp_path / "run.toml")
    assert cfg["split"]["criterion"] == "gm" and cfg["search"]["strategy"] == "aging"
