"""cookiecutter-template/ with the real cookiecutter, git, DVC and Nextflow: a project is
generated per family with --no-input, the library from this checkout is installed into
its own environment (sharing this venv's third-party packages), its demo data is tracked
and pushed with DVC, and its own `make test` and `nextflow run train_evaluate.nf -profile
test` pass there. Bad names are refused by the pre-generation hook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_jenkinsfile import groovy_lint, make_targets, sh_steps

pytestmark = pytest.mark.integration

# Small data and budgets on top of each family's -profile test, so that three generated
# projects train in a few minutes on two cores.
DEMO_ARGS = {
    "wingbeat": "--wingbeat-per-class 40",
    "detector": "--detector-images 48",
    "fewshot": "--fewshot-body-plans 12",
}
NXF_ARGS = {
    "wingbeat": "--wingbeat_models features",
    "detector": "--detector_max_images 40",
    "fewshot": "--fewshot_epochs 5 --fewshot_episodes 50",
}


def cookiecutter(repo_root: Path, out: Path, env: dict, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["cookiecutter", "--no-input", str(repo_root / "cookiecutter-template"), "-o", str(out), *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def make(project: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(project), *args], capture_output=True, text=True, env=env, timeout=1500)


@pytest.fixture(scope="module", params=["wingbeat", "detector", "fewshot"])
def project(request, repo_root, tool_env, tmp_path_factory):
    """A generated project with its environment set up and its demo data pushed."""
    family = request.param
    out = tmp_path_factory.mktemp(f"generated-{family}")
    done = cookiecutter(
        repo_root,
        out,
        tool_env,
        f"project_name=Trap study {family}",
        f"family={family}",
        f"insectml_path={repo_root}",
        f"dvc_remote={out / 'dvc-storage'}",
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    root = out / f"trap_study_{family}"
    shared = Path(sys.executable).parent.parent
    for step in (["setup", f"SHARED_ENV={shared}"], ["demo-data", f"DEMO_ARGS={DEMO_ARGS[family]}"]):
        done = make(root, tool_env, *step)
        assert done.returncode == 0, f"make {step[0]}: " + done.stdout[-2000:] + done.stderr[-2000:]
    return family, root


def test_generated_project_layout(project):
    family, root = project
    for f in ("README.md", "Makefile", "Jenkinsfile", "pyproject.toml", "train_evaluate.nf", "nextflow.config"):
        assert (root / f).is_file(), f
    assert (root / "workflows" / f"{family}.nf").is_file()
    installed = json.loads((root / "modules.json").read_text())["components"]
    assert {"base", family, f"{family}/train", f"{family}/validate"} <= set(installed)
    assert all(e["version"] and len(e["checksum"]) == 64 for e in installed.values())
    other = {"wingbeat", "detector", "fewshot"} - {family}
    assert not any((root / "modules" / o).exists() for o in other)
    # its family's notebooks (the library's notebooks/<family>_*.py, installed with the workflow)
    assert sorted(p.name for p in (root / "notebooks").glob("*.py")) == [f"{family}_data.py", f"{family}_results.py"]
    log = subprocess.run(["git", "-C", str(root), "log", "--format=%s"], capture_output=True, text=True).stdout
    assert log.strip().splitlines() == ["New project from insectml's cookiecutter-template"]
    assert "remote = storage" in (root / ".dvc" / "config").read_text()
    assert "md5:" in (root / "data.dvc").read_text()  # make demo-data: dvc add + push
    assert any((root.parent / "dvc-storage").rglob("*")), "dvc push wrote nothing to the remote"


def test_generated_jenkinsfile_calls_only_make_targets_and_lints(project, repo_root):
    family, root = project
    targets = make_targets(root)
    for a, b in sh_steps(root):
        words = (a or b).split()
        assert words[0] == "make" and words[1] in targets, f"{root / 'Jenkinsfile'}: `{a or b}`"
    done = groovy_lint(repo_root, root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_generated_project_tests_and_pipeline(project, tool_env):
    family, root = project
    done = make(root, tool_env, "test")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert " passed" in done.stdout
    done = make(root, tool_env, "run", "PROFILE=test", f"NXF_ARGS={NXF_ARGS[family]}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    archives = list((root / "results" / family / "archive").glob("*.mar"))
    assert archives, f"no archive in {root / 'results' / family / 'archive'}"


def test_generated_project_sees_an_edited_module(project, tool_env):
    family, root = project
    module = root / "modules" / family / "train" / "main.nf"
    original = module.read_text()
    module.write_text(original + "// a local change\n")
    try:
        done = make(root, tool_env, "modules-check")
        assert done.returncode != 0 and f"{family}/train" in done.stdout and "edited" in done.stdout
    finally:
        module.write_text(original)


@pytest.mark.parametrize(
    ("setting", "message"),
    [("project_slug=Bad Name", "project_slug 'Bad Name'"), ("insectml_path=relative/path", "absolute path")],
)
def test_bad_names_are_refused(repo_root, tool_env, tmp_path, setting, message):
    done = cookiecutter(repo_root, tmp_path, tool_env, setting)
    assert done.returncode != 0
    assert message in done.stderr
    assert not any(tmp_path.iterdir()), "a refused project left files behind"
