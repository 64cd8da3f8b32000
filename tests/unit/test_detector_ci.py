"""Image-bootstrap intervals on detector mAP: the fast path scores like COCO, the
intervals behave like intervals, and evaluate puts them in metrics.json and report.html."""

import json

import numpy as np
import pytest
import torch
from insectml.detector.metrics import _map_from_matches, _match_all, map_bootstrap_ci, mean_average_precision

CLASSES = ["bee", "fly"]


def _image(rng: np.random.Generator, tied_scores: bool) -> tuple[dict, dict]:
    """0–4 truth boxes of 2 classes; most are found (a few with the wrong class), some are
    missed, and some false alarms are added."""
    n = int(rng.integers(0, 5))
    corner = rng.uniform(0, 200, (n, 2))
    truth = np.hstack([corner, corner + rng.uniform(15, 60, (n, 2))])
    labels = rng.integers(1, 3, n)
    boxes, pred_labels, scores = [], [], []
    for box, label in zip(truth, labels, strict=True):
        if rng.random() < 0.8:
            boxes.append(box + rng.normal(0, 2.0, 4))
            pred_labels.append(label if rng.random() < 0.9 else 3 - label)
            scores.append(rng.uniform(0.3, 1.0))
    for _ in range(rng.poisson(1.0)):
        corner = rng.uniform(0, 200, 2)
        boxes.append(np.r_[corner, corner + rng.uniform(15, 60, 2)])
        pred_labels.append(int(rng.integers(1, 3)))
        scores.append(rng.uniform(0.0, 0.8))
    scores = np.round(scores, 1) if tied_scores else np.asarray(scores)
    pred = {
        "boxes": torch.tensor(np.asarray(boxes).reshape(-1, 4), dtype=torch.float32),
        "labels": torch.tensor(np.asarray(pred_labels, dtype=np.int64)),
        "scores": torch.tensor(np.asarray(scores, dtype=np.float32)),
    }
    return pred, {"boxes": torch.tensor(truth, dtype=torch.float32), "labels": torch.tensor(labels)}


def _synthetic(n_images: int, seed: int, tied_scores: bool = False) -> tuple[list[dict], list[dict]]:
    rng = np.random.default_rng(seed)
    pairs = [_image(rng, tied_scores) for _ in range(n_images)]
    return [p for p, _ in pairs], [t for _, t in pairs]


def _empty() -> tuple[dict, dict]:
    pred = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    return pred, {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}


@pytest.mark.parametrize(("seed", "tied_scores"), [(1, False), (2, True), (3, False)])
def test_full_set_value_equals_mean_average_precision(seed, tied_scores):
    preds, targets = _synthetic(25, seed, tied_scores)
    reference = mean_average_precision(preds, targets, CLASSES)
    ci = map_bootstrap_ci(preds, targets, CLASSES, n_boot=5)
    assert ci["map"]["value"] == pytest.approx(reference["map"], abs=1e-6)
    assert ci["map_50"]["value"] == pytest.approx(reference["map_50"], abs=1e-6)


def test_a_resample_scores_like_its_images_listed_out():
    preds, targets = _synthetic(20, 4)
    matches = _match_all(preds, targets)
    drawn = np.sort(np.random.default_rng(0).integers(0, 20, 20))
    fast = _map_from_matches(matches, np.bincount(drawn, minlength=20))
    listed = mean_average_precision([preds[i] for i in drawn], [targets[i] for i in drawn], CLASSES)
    assert fast == pytest.approx((listed["map"], listed["map_50"]), abs=1e-6)


def test_interval_contains_the_value():
    preds, targets = _synthetic(40, 5)
    ci = map_bootstrap_ci(preds, targets, CLASSES)
    assert all(ci[k]["low"] <= ci[k]["value"] <= ci[k]["high"] for k in ("map", "map_50"))
    assert {key: ci[key] for key in ("level", "n_boot", "unit", "n_units")} == {
        "level": 0.95,
        "n_boot": 200,
        "unit": "image",
        "n_units": 40,
    }


def test_interval_narrows_with_more_images():
    small = map_bootstrap_ci(*_synthetic(20, 6), CLASSES)
    large = map_bootstrap_ci(*_synthetic(400, 6), CLASSES)
    assert large["map_50"]["high"] - large["map_50"]["low"] < small["map_50"]["high"] - small["map_50"]["low"]


def test_same_seed_same_interval():
    preds, targets = _synthetic(30, 7)
    first = map_bootstrap_ci(preds, targets, CLASSES, seed=3)
    assert first == map_bootstrap_ci(preds, targets, CLASSES, seed=3)
    assert first != map_bootstrap_ci(preds, targets, CLASSES, seed=4)


def test_one_image_gives_a_degenerate_interval():
    preds, targets = _synthetic(1, 8)
    ci = map_bootstrap_ci(preds, targets, CLASSES)
    assert ci["map"]["low"] == ci["map"]["value"] == ci["map"]["high"] and ci["n_units"] == 1


def test_an_image_without_truth_or_predictions_changes_nothing_but_the_count():
    preds, targets = _synthetic(10, 9)
    pred, target = _empty()
    with_empty = map_bootstrap_ci([*preds, pred], [*targets, target], CLASSES, n_boot=20)
    assert with_empty["map"]["value"] == map_bootstrap_ci(preds, targets, CLASSES, n_boot=20)["map"]["value"]
    alone = map_bootstrap_ci([pred], [target], CLASSES, n_boot=20)
    assert alone["map"] == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_evaluate_writes_intervals_to_metrics_and_report(tmp_path, run_cli):
    from insectml.data.detector_demo import OPENCLIPART, write_detector_demo
    from insectml.detector.evaluate import evaluate_detector
    from insectml.detector.models import create_detector

    if not OPENCLIPART.is_dir():
        pytest.skip("needs the Debian package openclipart-png")
    root = write_detector_demo(tmp_path / "det", n_box_images=30, n_species_images=4, seed=5)
    out = tmp_path / "out"
    done = run_cli("detector", "validate", "--root", root, "--labels", root / "insects_sly", "--out", out)
    assert done.returncode == 0, done.stderr[-2000:]
    classes = json.loads((out / "dataset.json").read_text())["classes"]
    model_dir = tmp_path / "model"  # an untrained detector: the figures do not matter, their layout does
    model_dir.mkdir()
    torch.manual_seed(0)
    torch.save(create_detector("ssdlite320_mobilenet_v3_large", len(classes)).state_dict(), model_dir / "weights.pt")
    (model_dir / "config.json").write_text(json.dumps({"model": "ssdlite320_mobilenet_v3_large", "image_size": 320}))
    (model_dir / "labels.json").write_text(json.dumps(classes))

    evaluate_detector(model_dir, out / "manifest.jsonl", out / "dataset.json", root, tmp_path / "eval")
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    ci = metrics["ci"]
    assert (metrics["map_50_low"], metrics["map_50_high"]) == (ci["map_50"]["low"], ci["map_50"]["high"])
    report = (tmp_path / "eval" / "report.html").read_text()
    assert f"{metrics['map_50']:.3f} [{metrics['map_50_low']:.3f}, {metrics['map_50_high']:.3f}]" in report
