"""{{ cookiecutter.project_name }}: the project's own checks. They run the real Nextflow and
the insectml CLI from the project's environment (`make test`)."""

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*cmd: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


def nextflow(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return run("nextflow", "run", str(ROOT / "train_evaluate.nf"), "-ansi-log", "false", *args, cwd=tmp_path)


def test_library_components_are_unchanged():
    """workflows/, modules/ and conf/ are what `insectml modules install` recorded."""
    done = run("insectml", "modules", "check", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    names = {row["name"] for row in json.loads(done.stdout)}
    assert {"base", "{{ cookiecutter.family }}"} <= names


def test_help_lists_the_family_params(tmp_path):
    done = nextflow(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "--{{ cookiecutter.family }}_input" in done.stdout


def test_a_bad_param_is_one_line_and_exit_2(tmp_path):
    done = nextflow(tmp_path, "--seed", "many")
    assert done.returncode == 2
    assert "--seed" in done.stderr or "--seed" in done.stdout


def test_pipeline_wiring_with_stubs(tmp_path):
    """-stub-run: every process of the workflow wired, in seconds, on the project's data."""
    if not (ROOT / "data" / "{{ cookiecutter.family }}").is_dir():
        pytest.fail("data/{{ cookiecutter.family }} is missing: run 'make data' (or 'make demo-data') first")
    done = nextflow(tmp_path, "-profile", "test", "-stub-run", "--outdir", str(tmp_path / "results"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "{{ cookiecutter.family.upper() }}_VALIDATE" in done.stdout
