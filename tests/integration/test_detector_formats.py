"""Box labels as real tools export them, through the real Nextflow engine: a Roboflow YOLO,
a Roboflow COCO and a Pascal VOC export run ``--task detector -profile test`` end to end
with nothing but ``--detector_input`` (see the ``format_runs`` fixture)."""

import json
import zipfile

import pytest

from .conftest import EXPORTS

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("fmt", EXPORTS)
def test_an_export_as_downloaded_trains_the_generic_detector(format_runs, fmt):
    export, out, run = format_runs[fmt]
    dataset = json.loads((out / "data" / "dataset.json").read_text(encoding="utf-8"))
    assert dataset["n_images"] == len(export.images) and dataset["species"] == []
    metrics = json.loads((out / "evaluation" / "generic" / "metrics.json").read_text())
    assert 0 <= metrics["map_50"] <= 1 and metrics["split"] == "test"
    # no species images: the target stage is skipped, and the run says so
    assert "the target stage is skipped" in run.stdout + run.stderr
    assert not (out / "models" / "target").exists() and (out / "archive" / "detector_generic.mar").is_file()


@pytest.mark.parametrize("fmt", EXPORTS)
def test_class_names_survive_to_the_archive(format_runs, fmt):
    """Spaces, dots, brackets, a non-ASCII letter and names differing only in case, as the
    export declares them, in the manifest, the model folder and the .mar's labels."""
    export, out, _ = format_runs[fmt]
    dataset = json.loads((out / "data" / "dataset.json").read_text(encoding="utf-8"))
    assert tuple(dataset["classes"]) == export.classes
    labels = json.loads((out / "models" / "generic" / "labels.json").read_text(encoding="utf-8"))
    with zipfile.ZipFile(out / "archive" / "detector_generic.mar") as mar:
        packed = [json.loads(mar.read(n).decode()) for n in mar.namelist() if n.endswith("labels.json")]
    assert tuple(labels) == export.classes and packed and all(tuple(p) == export.classes for p in packed)


def test_a_near_duplicate_burst_across_groups_is_grouped(format_runs):
    """The VOC export's burst (one photo shifted and recompressed, in three groups) is merged
    into one group, with a warning per merge, instead of refusing the run."""
    export, out, _ = format_runs["voc"]
    rows = [json.loads(line) for line in (out / "data" / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    burst = [r for r in rows if r["path"] in export.burst]
    assert len(burst) == len(export.burst) > 1
    assert len({r["group"] for r in burst}) == 1 and len({r["split"] for r in burst}) == 1
    dataset = json.loads((out / "data" / "dataset.json").read_text())
    assert dataset["split"]["groups_merged"] >= 1


def test_the_generic_detector_is_the_release_candidate(format_runs):
    from insectml.release.candidate import load_candidate

    _, out, _ = format_runs["coco"]
    candidate = load_candidate(out)
    assert candidate.family == "detector" and candidate.archive.name == "detector_generic.mar"
