"""The detector family's two stages through the real Nextflow engine (-profile test)."""

import json

import pytest

from .conftest import nextflow

pytestmark = pytest.mark.integration


def test_two_stage_detector_runs_and_publishes(repo_root, tool_env, tmp_path):
    if not (repo_root / "data" / "detector" / "insects_sly" / "meta.json").is_file():
        pytest.fail("data/detector is missing: run 'make data' (dvc pull) first")
    done = nextflow(
        repo_root, tmp_path, tool_env, "-profile", "test", "--task", "detector", "--outdir", str(tmp_path / "results")
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "detector"
    for stage in ("generic", "target"):
        metrics = json.loads((out / "evaluation" / stage / "metrics.json").read_text())
        assert 0 <= metrics["map_50"] <= 1 and metrics["split"] == "test"
        assert (out / "models" / stage / "lineage.json").is_file()
    report = json.loads((out / "pseudo" / "pseudo_report.json").read_text())
    assert report["species_images"] == 60 and report["gained_boxes"] + report["dropped"] == 60
    assert (out / "pseudo" / "pseudo_sly" / "meta.json").is_file()
    dataset = json.loads((out / "data" / "dataset.json").read_text())
    assert dataset["family"] == "detector" and "stink_bug" in dataset["classes"]
