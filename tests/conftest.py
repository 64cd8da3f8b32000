"""Shared fixtures: the repository, a CLI runner and tiny wingbeat data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def tool_env() -> dict[str, str]:
    """The environment for subprocesses: this venv's tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("DVC_NO_ANALYTICS", "1")
    return env


@pytest.fixture(scope="session")
def run_cli(tool_env):
    """Run ``bin/insectml ARGS``; returns the CompletedProcess (text mode)."""

    def run(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(ROOT / "bin" / "insectml"), *map(str, args)],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=tool_env,
            timeout=600,
        )

    return run


@pytest.fixture(scope="session")
def tiny_wingbeat(tmp_path_factory) -> Path:
    """A small demo dataset (5 species × 14 recordings) made by the real generator."""
    from insectml.data.demo import write_wingbeat_demo

    return write_wingbeat_demo(tmp_path_factory.mktemp("data") / "wingbeat", per_class=14, seed=7)
