"""Real Nextflow runs of the test profile (one per family), shared by the integration
and Slurm tests."""

from __future__ import annotations

import concurrent.futures
import random
import socket
import subprocess
from pathlib import Path

import pytest


def free_port() -> int:
    """A free loopback port; MMS 1.1.11 rejects some high port numbers, so stay low."""
    for port in random.sample(range(20000, 30000), 200):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000-29999")


def nextflow(repo_root: Path, cwd: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["nextflow", "run", str(repo_root / "train_evaluate.nf"), "-ansi-log", "false", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.fixture(scope="session")
def nf_test_run(repo_root, tool_env, tmp_path_factory):
    """``nextflow run train_evaluate.nf -profile test`` on the bundled demo data."""
    cwd = tmp_path_factory.mktemp("nf")
    if not (repo_root / "data" / "wingbeat" / "labels.csv").is_file():
        pytest.fail("data/wingbeat is missing: run 'make data' (dvc pull) first")
    done = nextflow(repo_root, cwd, tool_env, "-profile", "test", "--outdir", str(cwd / "results"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd, done


@pytest.fixture(scope="session")
def detector_run(repo_root, tool_env, tmp_path_factory):
    """``-profile test --task detector``; its results/detector folder."""
    if not (repo_root / "data" / "detector" / "insects_sly" / "meta.json").is_file():
        pytest.fail("data/detector is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("nf-detector")
    done = nextflow(
        repo_root, cwd, tool_env, "-profile", "test", "--task", "detector", "--outdir", str(cwd / "results")
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results" / "detector"


@pytest.fixture(scope="session")
def fewshot_run(repo_root, tool_env, tmp_path_factory):
    """``-profile test --task fewshot``; its results/fewshot folder."""
    if not (repo_root / "data" / "fewshot" / "images").is_dir():
        pytest.fail("data/fewshot is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("nf-fewshot")
    done = nextflow(repo_root, cwd, tool_env, "-profile", "test", "--task", "fewshot", "--outdir", str(cwd / "results"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results" / "fewshot"


# The cross-validated few-shot run: 3 folds of classes; 40 classes (30 outside test, so
# folds of 10) and 6 epochs per training task keep its 4 trainings short.
FEWSHOT_CV_ARGS = ("--task", "fewshot", "--cv_folds", "3", "--fewshot_max_classes", "40", "--fewshot_epochs", "6")


@pytest.fixture(scope="session")
def fewshot_cv_run(repo_root, tool_env, tmp_path_factory):
    """``-profile test`` with ``FEWSHOT_CV_ARGS``; its results/fewshot folder."""
    if not (repo_root / "data" / "fewshot" / "images").is_dir():
        pytest.fail("data/fewshot is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("nf-fewshot-cv")
    done = nextflow(repo_root, cwd, tool_env, "-profile", "test", *FEWSHOT_CV_ARGS, "--outdir", str(cwd / "results"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results" / "fewshot"


# The cross-validated run: the hard wingbeat demo (few sessions per species), 3 folds.
CV_ARGS = (
    "--task", "wingbeat",
    "--wingbeat_group_by", "session",
    "--cv_folds", "3",
    "--wingbeat_models", "features,rocket,gru",
)  # fmt: skip


@pytest.fixture(scope="session")
def cv_run(repo_root, tool_env, tmp_path_factory):
    """``-profile test`` with ``CV_ARGS`` on data/wingbeat_hard; its results/wingbeat folder."""
    data = repo_root / "data" / "wingbeat_hard"
    if not (data / "labels.csv").is_file():
        pytest.fail("data/wingbeat_hard is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("nf-cv")
    args = ("-profile", "test", "--wingbeat_input", str(data), *CV_ARGS, "--outdir", str(cwd / "results"))
    done = nextflow(repo_root, cwd, tool_env, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results" / "wingbeat"


# The box-label exports a new user brings (tests/fixtures/exports.py), one Nextflow run each.
EXPORTS = ("yolo", "coco", "voc")


@pytest.fixture(scope="session")
def format_runs(repo_root, tool_env, tmp_path_factory):
    """``-profile test --task detector`` on a Roboflow YOLO, a Roboflow COCO and a Pascal VOC
    export exactly as written (``--detector_input`` only: the labels are found, the format
    detected; no species folder, so the generic stage only). The three runs go side by side.
    {format: (export, its results/detector folder, the run)}."""
    from tests.fixtures.exports import write_coco, write_roboflow_yolo, write_voc

    writers = {"yolo": write_roboflow_yolo, "coco": write_coco, "voc": write_voc}
    base = tmp_path_factory.mktemp("nf-formats")
    exports = {fmt: writers[fmt](base / f"{fmt}-data", seed=3) for fmt in EXPORTS}

    def run(fmt):
        cwd = base / f"{fmt}-run"
        cwd.mkdir()
        args = ["-profile", "test", "--task", "detector", "--outdir", str(cwd / "results")]
        return nextflow(repo_root, cwd, tool_env, *args, "--detector_input", str(exports[fmt].input_dir))

    with concurrent.futures.ThreadPoolExecutor(len(EXPORTS)) as pool:
        done = dict(zip(EXPORTS, pool.map(run, EXPORTS), strict=True))
    for fmt, result in done.items():
        assert result.returncode == 0, f"{fmt}: " + result.stdout[-3000:] + result.stderr[-3000:]
    return {fmt: (exports[fmt], base / f"{fmt}-run" / "results" / "detector", done[fmt]) for fmt in EXPORTS}
