"""Per-box Grad-CAM for detectors, the explain CLI, and the detector report's new parts
(PR curves, per-class AP intervals, training curves, comparison, explanations), on a tiny
randomly initialised SSDlite and a few generated images."""

import json

import numpy as np
import pytest
import torch
from insectml.detector import explain
from insectml.detector.evaluate import confusion_at_iou, evaluate_detector, match_detections
from insectml.detector.metrics import map_bootstrap_ci, mean_average_precision, pr_curves
from insectml.detector.models import create_detector
from PIL import Image

CLASSES = ["bee", "fly"]
MODEL = "ssdlite320_mobilenet_v3_large"


def _detector(seed: int = 0):
    """A random SSDlite that behaves like a trained one in the two ways that matter here:
    its batch norms hold the statistics of a batch of images (freshly initialised, the
    backbone's features fade to ~1e-13 and every map is empty), and class 1 ("bee")
    scores high everywhere, so that it returns confident boxes."""
    torch.manual_seed(seed)
    model = create_detector(MODEL, len(CLASSES))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one batch sets the statistics
    model.train()
    with torch.no_grad():
        model.backbone(torch.rand(4, 3, 320, 320))
        for conv in model.head.classification_head.module_list:
            bias = conv[-1].bias.view(-1, len(CLASSES) + 1)
            bias[:, 1] += 3.0
    return model.eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    torch.save(_detector().state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps({"model": MODEL, "image_size": 320}))
    (folder / "labels.json").write_text(json.dumps(CLASSES))
    history = [{"epoch": e, "train_loss": 5.0 / e, "val_map_50": 0.1 * e, "val_map": 0.05 * e} for e in (1, 2, 3)]
    (folder / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Three small images (not square, so a map must be resized back) with a bright patch each."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(1)
    paths = []
    for i in range(3):
        pixels = (rng.random((96, 128, 3)) * 80).astype(np.uint8)
        pixels[20 + 10 * i : 60 + 10 * i, 30:80] = (230, 200, 40)
        path = folder / f"img{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def _tensor(path):
    from insectml.detector.predict import decode_image

    return decode_image(path.read_bytes())


def test_a_box_map_covers_the_image_and_is_scaled():
    model = _detector()
    image = torch.rand(3, 96, 128)
    with torch.no_grad():
        out = model([image])[0]
    heat = explain.box_gradcam(model, image, out["boxes"][0].tolist(), int(out["labels"][0]))
    assert heat.shape == (96, 128) and heat.min() >= 0 and heat.max() == pytest.approx(1.0)


def test_every_detection_depends_on_the_explained_layer():
    """SSDlite finds most boxes on its stride-16 map, which does not pass through the
    backbone's last block: a map there would be zero whatever the box looked at. The
    explained layer must lie on the path to each detection's score."""
    torch.manual_seed(0)
    model = create_detector(MODEL, len(CLASSES)).eval()
    _, layer = explain.feature_layer(model)
    seen = {}
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.update(out=output))
    try:
        out = model([torch.rand(3, 96, 128)])[0]
    finally:
        handle.remove()
    reached = [
        torch.autograd.grad(out["scores"][d], seen["out"], retain_graph=True, allow_unused=True)[0] for d in range(6)
    ]
    assert all(g is not None and float(g.abs().sum()) > 0 for g in reached)


def test_share_in_box():
    heat = np.zeros((10, 10))
    heat[2:4, 2:4] = 1.0
    assert explain.share_in_box(heat, [2, 2, 4, 4]) == 1.0 and explain.share_in_box(heat, [5, 5, 9, 9]) == 0.0


def test_match_detections_and_confusion_agree():
    truth = {"boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), "labels": torch.tensor([1, 2])}
    pred = {
        "boxes": torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]),
        "labels": torch.tensor([1, 1, 2]),
        "scores": torch.tensor([0.9, 0.8, 0.3]),
    }
    pairs, missed = match_detections(pred, truth)
    assert pairs == [(0, 0), (1, 1)] and missed == []
    assert confusion_at_iou([pred], [truth], 2).tolist() == [[1, 0, 0], [1, 0, 0], [0, 0, 0]]


def _synthetic(n: int, seed: int):
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n):
        corner = rng.uniform(0, 100, (2, 2))
        truth = torch.tensor(np.hstack([corner, corner + 30]), dtype=torch.float32)
        labels = torch.tensor([1, 2])
        noisy = truth + torch.tensor(rng.normal(0, 3, (2, 4)), dtype=torch.float32)
        preds.append({"boxes": noisy, "labels": labels, "scores": torch.tensor(rng.uniform(0, 1, 2))})
        targets.append({"boxes": truth, "labels": labels})
    return preds, targets


def test_per_class_intervals_hold_the_per_class_ap():
    preds, targets = _synthetic(20, 2)
    reference = mean_average_precision(preds, targets, CLASSES)["ap_per_class"]
    per_class = map_bootstrap_ci(preds, targets, CLASSES, n_boot=30)["per_class"]
    for name in CLASSES:
        entry = per_class[name]["ap"]
        assert entry["value"] == pytest.approx(reference[name], abs=1e-6)
        assert entry["low"] <= entry["value"] <= entry["high"]


def test_pr_curve_ends_at_the_recall_reached():
    preds, targets = _synthetic(15, 3)
    curves = pr_curves(preds, targets, CLASSES)
    ci = map_bootstrap_ci(preds, targets, CLASSES, n_boot=5)
    for name, curve in curves.items():
        assert curve["n_truth"] == 15 and 0 < curve["recall"][-1] <= 1
        assert curve["ap_50"] == pytest.approx(ci["per_class"][name]["ap_50"]["value"], abs=1e-6)


def test_explain_files_writes_one_png_per_image_and_the_json(model_dir, images, tmp_path, monkeypatch):
    monkeypatch.setattr(explain, "MAX_BOXES", 2)  # two maps per image keep the test fast
    out = tmp_path / "out"
    result = explain.explain_files(model_dir, images[:2], out, score=0.5)
    assert sorted(p.name for p in out.glob("*.png")) == ["img0_explain.png", "img1_explain.png"]
    written = json.loads((out / "explanations.json").read_text())
    assert written == json.loads(json.dumps(result))
    explained = [d for image in written["images"] for d in image["detections"] if "map_in_box" in d]
    assert len(explained) == 4 and all(0 <= d["map_in_box"] <= 1 for d in explained)


def test_explain_files_never_overwrites_without_force(model_dir, images, tmp_path, monkeypatch):
    from insectml.errors import InputFileError

    monkeypatch.setattr(explain, "MAX_BOXES", 1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "img0_explain.png").write_text("mine")
    with pytest.raises(InputFileError, match="--force"):
        explain.explain_files(model_dir, images[:1], out)
    assert (out / "img0_explain.png").read_text() == "mine"
    explain.explain_files(model_dir, images[:1], out, force=True)
    assert (out / "img0_explain.png").read_bytes().startswith(b"\x89PNG")


def test_two_inputs_with_one_stem_are_refused_before_any_work():
    from pathlib import Path

    from insectml import explain as shared_explain
    from insectml.errors import ConfigError

    with pytest.raises(ConfigError, match="rename one"):
        shared_explain.output_paths([Path("a/x.jpg"), Path("b/x.png")], Path("out"))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--score", "1.5"], "--score must be between 0 and 1"),
        (["missing.png"], "image not found"),
        (["notanimage.png"], "not a readable image"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(model_dir, images, tmp_path, run_cli, extra, message):
    (tmp_path / "notanimage.png").write_text("hello")
    args = [a if not a.endswith(".png") else tmp_path / a for a in extra]
    if "--score" in extra:
        args.append(images[0])
    done = run_cli("detector", "explain", "--model", model_dir, "--out", tmp_path / "out", *args)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_cli_help_names_the_outputs(run_cli):
    done = run_cli("detector", "explain", "--help")
    assert done.returncode == 0 and "explanations.json" in done.stdout and "--force" in done.stdout


def _manifest(images, tmp_path):
    """Box labels for the generated images: the bright patch, labelled bee or fly."""
    rows = []
    for i, path in enumerate(images):
        rows.append(
            {
                "id": path.stem,
                "path": path.name,
                "boxes": [[30, 20 + 10 * i, 80, 60 + 10 * i]],
                "labels": [CLASSES[i % 2]],
                "split": "test",
                "source": "boxes",
                "width": 128,
                "height": 96,
            }
        )
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "dataset.json").write_text(json.dumps({"classes": CLASSES}))
    return tmp_path / "manifest.jsonl", tmp_path / "dataset.json"


def test_report_has_every_part_and_the_comparison(model_dir, images, tmp_path, monkeypatch):
    from insectml.detector import metrics

    bootstrap = metrics.map_bootstrap_ci
    monkeypatch.setattr(
        "insectml.detector.evaluate.map_bootstrap_ci", lambda *a, **k: bootstrap(*a, **{**k, "n_boot": 20})
    )
    manifest, dataset = _manifest(images, tmp_path)
    root = images[0].parent
    first = evaluate_detector(
        model_dir, manifest, dataset, root, tmp_path / "generic", name="generic", explain_per_class=1
    )
    second = evaluate_detector(
        model_dir,
        manifest,
        dataset,
        root,
        tmp_path / "target",
        name="target",
        compare_with=tmp_path / "generic",
        explain_per_class=1,
    )
    out = tmp_path / "target"
    for name in ("pr_curves.png", "ap_per_class.png", "training_curves.png", "explanations_classes.png"):
        assert (out / name).read_bytes().startswith(b"\x89PNG"), name
    report = (out / "report.html").read_text()
    for part in ("Precision–recall", "Average precision per class", "Training", "Explanations", "generic vs target"):
        assert part in report, part
    assert "same 3 test images" in report and first["images_sha256"] == second["images_sha256"]
    assert second["explanations"]["layer"] == "backbone.features.0"


def test_compare_with_a_folder_without_detector_metrics_is_a_user_error(model_dir, images, tmp_path):
    from insectml.errors import InputFileError

    manifest, dataset = _manifest(images, tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "metrics.json").write_text(json.dumps({"family": "wingbeat", "accuracy": 0.5}))
    with pytest.raises(InputFileError, match="metrics"):
        evaluate_detector(
            model_dir, manifest, dataset, images[0].parent, tmp_path / "eval", compare_with=tmp_path / "other"
        )
