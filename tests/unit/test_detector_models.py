"""Detectors build offline, train through the shared loop, and are scored like COCO."""

import json

import numpy as np
import pytest
import torch
from insectml.detector.evaluate import confusion_at_iou
from insectml.detector.models import DETECTORS, create_detector
from insectml.errors import ConfigError, InputFileError


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector_builds_without_downloads(name):
    model = create_detector(name, num_classes=3).eval()
    with torch.no_grad():
        out = model([torch.rand(3, 320, 320)])
    assert set(out[0]) >= {"boxes", "labels", "scores"}


def test_local_weights_and_bad_names(tmp_path):
    source = create_detector("ssdlite320_mobilenet_v3_large", 3)
    torch.save(source.state_dict(), tmp_path / "w.pt")
    target = create_detector("ssdlite320_mobilenet_v3_large", 3, weights=tmp_path / "w.pt")
    assert all(
        torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values(), strict=True)
    )
    with pytest.raises(ConfigError, match="unknown detector"):
        create_detector("yolo", 3)
    with pytest.raises(InputFileError, match="weights not found"):
        create_detector("ssdlite320_mobilenet_v3_large", 3, weights=tmp_path / "none.pt")


def test_confusion_has_background_row_and_column():
    truth = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}
    pred = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.8]),
    }
    matrix = confusion_at_iou([pred], [truth], n_classes=2)
    assert matrix.tolist() == [[1, 0, 0], [0, 0, 1], [0, 1, 0]]


def test_train_then_evaluate_on_tiny_demo(tmp_path, run_cli):
    from insectml.data.detector_demo import OPENCLIPART, write_detector_demo

    if not OPENCLIPART.is_dir():
        pytest.skip("needs the Debian package openclipart-png")
    root = write_detector_demo(tmp_path / "det", n_box_images=40, n_species_images=6, seed=5)
    out = tmp_path / "out"
    assert (
        run_cli(
            "detector",
            "validate",
            "--root",
            root,
            "--supervisely",
            root / "insects_sly",
            "--species",
            root / "species",
            "--out",
            out,
        ).returncode
        == 0
    )
    common = ["--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json", "--root", root]
    done = run_cli("detector", "train", *common, "--epochs", "1", "--out", out / "model")
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli("detector", "evaluate", "--model", out / "model", *common, "--out", out / "eval")
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["map_50"] <= 1 and np.asarray(metrics["confusion_matrix_iou50"]).shape == (8, 8)
    assert (out / "eval" / "predictions.png").is_file()
    assert json.loads((out / "model" / "history.jsonl").read_text().splitlines()[0])["epoch"] == 1

    done = run_cli(
        "detector",
        "pseudo-label",
        "--model",
        out / "model",
        *common,
        "--threshold",
        "0.05",
        "--keep",
        "all",
        "--out",
        out / "pseudo",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "pseudo" / "pseudo_report.json").read_text())
    assert report["species_images"] == 6 and report["gained_boxes"] + report["dropped"] == 6
    pseudo = [json.loads(line) for line in (out / "pseudo" / "pseudo_manifest.jsonl").read_text().splitlines()]
    assert all(r["split"] == "train" and set(r["labels"]) == {r["species"]} for r in pseudo)
    assert all(r["pseudo"]["threshold"] == 0.05 and min(r["pseudo"]["scores"]) >= 0.05 for r in pseudo)
    if not pseudo:  # the barely trained model boxed nothing: no target stage
        assert report["target_stage"] == "skipped" and (out / "pseudo" / "target_skipped.txt").is_file()
        return
    merged = (out / "pseudo" / "merged_manifest.jsonl").read_text().splitlines()
    assert len(merged) == 40 + len(pseudo) and report["target_stage"] == "trained"
    if pseudo:  # the review project reads back with the same reader
        from insectml.detector.supervisely_io import read_supervisely

        _, records, problems = read_supervisely(out / "pseudo" / "pseudo_sly", out / "pseudo")
        assert not problems and len(records) == len(pseudo)


def test_pseudo_label_skips_the_target_stage_when_nothing_gains_a_box(tmp_path, run_cli):
    """A threshold no box reaches: no merged manifest (the workflow's target stage does not
    run) and one line saying why, instead of a target detector that copies the generic one."""
    from insectml.data.detector_demo import OPENCLIPART, write_detector_demo

    if not OPENCLIPART.is_dir():
        pytest.skip("needs the Debian package openclipart-png")
    root = write_detector_demo(tmp_path / "det", n_box_images=12, n_species_images=3, seed=2)
    out = tmp_path / "out"
    done = run_cli(
        "detector", "validate", "--root", root, "--supervisely", root / "insects_sly",
        "--species", root / "species", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    common = ["--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json", "--root", root]
    done = run_cli("detector", "train", *common, "--epochs", "1", "--image-size", "128", "--out", out / "model")
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli(
        "detector", "pseudo-label", "--model", out / "model", *common, "--threshold", "0.9999", "--out", out / "pseudo"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    note = (out / "pseudo" / "target_skipped.txt").read_text()
    assert "none of the 3 species images gained a box" in note and "target stage is skipped" in done.stderr
    assert not (out / "pseudo" / "merged_manifest.jsonl").exists()
