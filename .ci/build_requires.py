"""Print pyproject.toml's ``[build-system] requires``, one per line: what a build without isolation
(``--no-build-isolation``) needs installed first. CMake and Ninja come from the system (or pip)."""

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # .ci/run installs it first on Python < 3.11
    import tomli as tomllib

pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
print("\n".join(tomllib.loads(pyproject.read_text())["build-system"]["requires"]))
