"""Weights are staged task inputs, not strings in ext.args: a relative ``--wingbeat_weights``
file works from the task folders, ``-resume`` reruns the training when the file's content
changes (and only the training that reads it), and an imported NAME is found in the launch
folder's ``weights/``. Real Nextflow, ``-profile test`` cut down: the gru net only, one split,
12 recordings per species, one epoch, one chunk."""

import csv
import json
from pathlib import Path

import pytest
import torch

from .conftest import nextflow

pytestmark = pytest.mark.integration

ARGS = (
    "-profile", "test", "--task", "wingbeat", "--wingbeat_models", "gru", "--cv_folds", "0",
    "--wingbeat_max_per_class", "12", "--wingbeat_epochs", "1", "--chunk_size", "1000",
)  # fmt: skip
NAME = "gru-init"


def gru_state(seed: int) -> dict:
    """The gru net's own tensors for the demo (5 species, 64 mel bands), seeded."""
    from insectml.wingbeat.nets import create_net

    torch.manual_seed(seed)
    return create_net("gru", 5, 64).state_dict()


def run(repo_root, cwd, env, *args: str) -> list[dict]:
    """One run from ``cwd``; the rows of the trace it wrote."""
    info = cwd / "results" / "pipeline_info"
    before = set(info.glob("execution_trace_*.txt"))
    done = nextflow(repo_root, cwd, env, *ARGS, "--outdir", str(cwd / "results"), *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (trace,) = set(info.glob("execution_trace_*.txt")) - before
    return list(csv.DictReader(trace.open(), delimiter="\t"))


def status(rows: list[dict]) -> dict[str, str]:
    """{process:tag → status}, e.g. ``WINGBEAT_TRAIN:wingbeat:gru``."""
    return {f"{r['process'].split(':')[-1]}:{r['tag']}": r["status"] for r in rows}


def train_log(rows: list[dict], model: str) -> str:
    (row,) = [r for r in rows if r["process"].endswith("WINGBEAT_TRAIN") and r["tag"] == f"wingbeat:{model}"]
    return (Path(row["workdir"]) / ".command.log").read_text()


@pytest.fixture(scope="module")
def runs(repo_root, tool_env, tmp_path_factory):
    """A run from ./w.pt; -resume after w.pt is overwritten with other tensors of the same
    shapes; -resume from the NAME of a weights folder in ./weights. {step: trace rows}."""
    if not (repo_root / "data" / "wingbeat" / "labels.csv").is_file():
        pytest.fail("data/wingbeat is missing: run 'make data' (dvc pull) first")
    from safetensors.torch import save_file

    cwd = tmp_path_factory.mktemp("nf-resume-inputs")
    torch.save(gru_state(0), cwd / "w.pt")
    first = run(repo_root, cwd, tool_env, "--wingbeat_weights", "w.pt")
    torch.save(gru_state(1), cwd / "w.pt")
    changed = run(repo_root, cwd, tool_env, "--wingbeat_weights", "w.pt", "-resume")
    folder = cwd / "weights" / NAME
    folder.mkdir(parents=True)
    save_file(gru_state(2), str(folder / "weights.safetensors"))
    (folder / "manifest.json").write_text(json.dumps({"name": NAME}))
    named = run(repo_root, cwd, tool_env, "--wingbeat_weights", NAME, "-resume")
    return {"first": first, "changed": changed, "named": named}


def test_a_relative_weights_file_reaches_the_training(runs):
    n = len(gru_state(0))
    assert f"gru: loaded {n} of {n} tensors from init_weights/w.pt" in train_log(runs["first"], "gru")


def test_changed_weights_rerun_the_nets_training_only(runs):
    after = status(runs["changed"])
    assert after["WINGBEAT_TRAIN:wingbeat:gru"] == "COMPLETED"
    assert after["WINGBEAT_TRAIN:wingbeat:baseline"] == after["WINGBEAT_FEATURES_GATHER:wingbeat"] == "CACHED"


def test_weights_by_name_are_found_in_the_launch_folder(runs):
    assert f"init_weights/{NAME}/weights.safetensors" in train_log(runs["named"], "gru")
