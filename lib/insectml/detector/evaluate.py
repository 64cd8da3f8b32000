"""Evaluate a detector on a split: COCO mAP with image-bootstrap 95% intervals,
per-class AP, a confusion matrix at IoU 0.5 with a background row/column, a grid of
predictions, and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from insectml.data.manifest import read_json, read_manifest
from insectml.detector.data import DetectionSet
from insectml.detector.metrics import map_bootstrap_ci, mean_average_precision, predict
from insectml.detector.models import create_detector
from insectml.errors import ConfigError, InputFileError
from insectml.fileio import write_json_atomic


def load_detector(model_dir: Path):
    for name in ("config.json", "labels.json", "weights.pt"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = json.loads((model_dir / "config.json").read_text())
    classes = json.loads((model_dir / "labels.json").read_text())
    model = create_detector(
        config["model"], len(classes), config.get("image_size", 320), mean=config.get("mean"), std=config.get("std")
    )
    model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval(), classes, config


def confusion_at_iou(preds, targets, n_classes: int, iou: float = 0.5, score: float = 0.5) -> np.ndarray:
    """(n+1)×(n+1) counts, rows = truth, columns = prediction, last index = background:
    greedy matching by score; unmatched truths are missed (column bg), unmatched
    predictions above ``score`` are false alarms (row bg)."""
    from torchvision.ops import box_iou

    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    bg = n_classes
    for pred, target in zip(preds, targets, strict=True):
        keep = pred["scores"] >= score
        boxes, labels = pred["boxes"][keep], pred["labels"][keep] - 1
        order = torch.argsort(pred["scores"][keep], descending=True)
        truth_boxes, truth_labels = target["boxes"], target["labels"] - 1
        matched = torch.zeros(len(truth_boxes), dtype=torch.bool)
        ious = box_iou(boxes, truth_boxes) if len(boxes) and len(truth_boxes) else None
        for p in order.tolist():
            if ious is not None:
                candidates = ious[p].clone()
                candidates[matched] = -1
                t = int(torch.argmax(candidates))
                if candidates[t] >= iou:
                    matched[t] = True
                    matrix[int(truth_labels[t]), int(labels[p])] += 1
                    continue
            matrix[bg, int(labels[p])] += 1
        for t in torch.nonzero(~matched).flatten().tolist():
            matrix[int(truth_labels[t]), bg] += 1
    return matrix


def evaluate_detector(
    model_dir: Path, manifest: Path, dataset_json: Path, root: Path, out_dir: Path, split: str = "test"
) -> dict:
    from insectml.metrics import plot_confusion
    from insectml.report import write_report

    model, classes, config = load_detector(model_dir)
    dataset = read_json(dataset_json, "dataset description")
    if dataset.get("classes") != classes:
        raise ConfigError(f"{dataset_json}: classes differ from the model's {model_dir / 'labels.json'}")
    rows = [r for r in read_manifest(manifest) if r["split"] == split]
    if not rows:
        raise ConfigError(f"{manifest}: no images in split '{split}'")
    data = DetectionSet(rows, root, classes, train=False)
    with torch.no_grad():
        preds, targets = predict(model, data, torch.device("cpu"))
    result = mean_average_precision(preds, targets, classes)
    ci = map_bootstrap_ci(preds, targets, classes)
    matrix = confusion_at_iou(preds, targets, len(classes))
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "family": "detector",
        "model": config["model"],
        "split": split,
        "n_images": len(rows),
        **result,
        **{f"{key}_{end}": ci[key][end] for key in ("map", "map_50") for end in ("low", "high")},
        "ci": ci,
        "confusion_matrix_iou50": matrix.tolist(),
        "confusion_labels": [*classes, "background"],
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    confusion = plot_confusion(
        matrix.tolist(),
        [*classes, "background"],
        out_dir / "confusion_matrix.png",
        f"{config['model']} — {split}, IoU 0.5, score ≥ 0.5",
    )
    grid = _plot_grid(rows[:12], root, preds[:12], classes, out_dir / "predictions.png")
    lineage_path = model_dir / "lineage.json"
    write_report(
        out_dir / "report.html",
        title=f"detector — {config['model']}",
        headline=_headline(metrics),
        per_class={name: {"AP@[.5:.95]": ap} for name, ap in result["ap_per_class"].items()},
        images=[confusion, grid],
        lineage=json.loads(lineage_path.read_text()) if lineage_path.is_file() else {},
    )
    return metrics


def _headline(metrics: dict) -> dict[str, object]:
    """The report's headline: mAP figures with their bootstrap intervals."""
    ci = metrics["ci"]

    def with_interval(key: str) -> str:
        return f"{metrics[key]:.3f} [{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]"

    level = f"{ci['level']:.0%}"
    return {
        f"mAP@[.5:.95] [{level} CI]": with_interval("map"),
        f"mAP@.5 [{level} CI]": with_interval("map_50"),
        "mAP@.75": metrics["map_75"],
        f"{metrics['split']} images": metrics["n_images"],
        "interval": f"percentile bootstrap over images, {ci['n_boot']} resamples",
    }


def _plot_grid(rows, root: Path, preds, classes, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = 4
    fig, axes = plt.subplots(-(-len(rows) // cols), cols, figsize=(12, 3 * -(-len(rows) // cols)), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, pred in zip(axes.ravel(), rows, preds, strict=False):
        with Image.open(root / row["path"]) as image:
            ax.imshow(image.convert("RGB"))
        for x1, y1, x2, y2 in row["boxes"]:
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=1.5))
        for box, label, score in zip(pred["boxes"], pred["labels"], pred["scores"], strict=True):
            if score < 0.5:
                continue
            x1, y1, x2, y2 = box.tolist()
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="red", lw=1.5))
            ax.text(
                x1,
                y1,
                f"{classes[int(label) - 1]} {score:.2f}",
                color="white",
                fontsize=7,
                bbox={"facecolor": "red", "alpha": 0.6, "pad": 1},
            )
    fig.suptitle("green: truth, red: predictions with score ≥ 0.5")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
