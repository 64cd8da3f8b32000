"""One active-learning round with real Nextflow, the Supervisely SDK and a real release:
``--al_round`` trains the wingbeat family and writes the labelling project of its packaged
model over a pool of 30 new recordings; the project reads back with the SDK; it is labelled
here (the oracle is the demo's truth) and comes back as ``--wingbeat_extra_labels``; the
next run trains on the labelled rows (train split, with provenance), and dataset.json, the
model's lineage and its model card record the round. One model (features) per run keeps
it small."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import nextflow

pytestmark = pytest.mark.integration

ARGS = ("-profile", "test", "--task", "wingbeat", "--wingbeat_models", "features")
BUDGET = 8


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)


def run(repo_root: Path, cwd: Path, env: dict, *args: str) -> Path:
    """A run from ``cwd`` into ``cwd/results``; returns results/wingbeat."""
    done = nextflow(repo_root, cwd, env, *ARGS, "--outdir", str(cwd / "results"), *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results" / "wingbeat"


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """30 demo recordings the data does not hold (another seed), flat in one folder, and
    each file's species (the oracle)."""
    from insectml.data.demo import write_wingbeat_demo

    base = tmp_path_factory.mktemp("al-pool")
    demo = write_wingbeat_demo(base / "demo", per_class=6, seed=77)
    folder, truth = base / "pool", {}
    folder.mkdir()
    with (demo / "labels.csv").open() as fh:
        for row in csv.DictReader(fh):
            shutil.copyfile(demo / row["path"], folder / Path(row["path"]).name)
            truth[Path(row["path"]).name] = row["species"]
    return folder, truth


@pytest.fixture(scope="module")
def selected(repo_root, tool_env, pool, tmp_path_factory) -> Path:
    """``--al_round``: its results/wingbeat/active/round_1."""
    if not (repo_root / "data" / "wingbeat" / "labels.csv").is_file():
        pytest.fail("data/wingbeat is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("al-round")
    results = run(repo_root, cwd, tool_env, "--al_round", "--al_pool", str(pool[0]), "--al_budget", str(BUDGET))
    return results / "active" / "round_1"


@pytest.fixture(scope="module")
def export(selected, pool, tmp_path_factory) -> Path:
    """The project as the labellers return it: every item given its true species (the tag
    'class') and its 'unreviewed' tag removed."""
    out = shutil.copytree(selected, tmp_path_factory.mktemp("al-export") / "export")
    for item in json.loads((out / "selection.json").read_text())["items"]:
        path = out / "round_1" / "ann" / f"{item['name']}.json"
        ann = json.loads(path.read_text())
        ann["tags"] = [t for t in ann["tags"] if t["name"] not in ("unreviewed", "class")]
        ann["tags"].append({"name": "class", "value": pool[1][Path(item["source"]).name]})
        path.write_text(json.dumps(ann))
    return out


@pytest.fixture(scope="module")
def merged(repo_root, tool_env, export, tmp_path_factory) -> Path:
    """The next run with ``--wingbeat_extra_labels``: its results/wingbeat."""
    cwd = tmp_path_factory.mktemp("al-merged")
    return run(repo_root, cwd, tool_env, "--wingbeat_extra_labels", str(export))


def test_the_round_writes_a_project_the_sdk_reads(selected):
    from insectml.detector.supervisely_io import _import_supervisely

    sly = _import_supervisely()
    project = sly.Project(str(selected), sly.OpenMode.READ)
    (dataset,) = [d for d in project.datasets if d.name == "round_1"]
    selection = json.loads((selected / "selection.json").read_text())
    assert sorted(dataset) == sorted(i["name"] for i in selection["items"]) and len(selection["items"]) == BUDGET
    assert (selection["round"], selection["strategy"], selection["model"]["family"]) == (1, "hybrid", "wingbeat")


def test_the_labelled_rows_are_trained_on_with_their_provenance(merged, export, pool):
    rows = [json.loads(line) for line in (merged / "data" / "manifest.jsonl").read_text().splitlines()]
    labelled = [r for r in rows if "provenance" in r]
    sources = {
        i["sha256"]: Path(i["source"]).name for i in json.loads((export / "selection.json").read_text())["items"]
    }
    assert [(r["split"], r["label"]) for r in labelled] == [
        ("train", pool[1][sources[r["provenance"]["sha256"]]]) for r in labelled
    ]
    assert len(labelled) == BUDGET and {
        (r["provenance"]["al_round"], r["provenance"]["al_strategy"]) for r in labelled
    } == {(1, "hybrid")}


def test_dataset_json_and_the_models_lineage_record_the_round(merged, export):
    rounds = [{"round": 1, "strategy": "hybrid", "n_rows": BUDGET, "export": str(export.resolve())}]
    dataset = json.loads((merged / "data" / "dataset.json").read_text())
    lineage = json.loads((merged / "models" / "features" / "lineage.json").read_text())
    assert dataset["active_learning"] == rounds and lineage["data"]["active_learning"] == rounds


def test_the_model_card_records_the_round(merged, run_cli, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.org")
    git(repo, "config", "user.name", "ci")
    (repo / "CHANGES").write_text("first\n")
    git(repo, "add", "CHANGES")
    git(repo, "commit", "-q", "-m", "first")
    done = run_cli(
        *("release", merged, "--name", "wingbeat", "--repo", repo, "--store", tmp_path / "store"),
        "--allow-below-baseline",
        cwd=repo,
    )
    assert done.returncode == 0, done.stderr
    (card,) = (tmp_path / "store").rglob("model_card.md")
    assert f"| 1 | hybrid | {BUDGET} |" in card.read_text()
