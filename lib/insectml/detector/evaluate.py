"""Evaluate a detector on a split: COCO mAP with image-bootstrap 95% intervals (overall and
per class), per-class precision–recall curves at IoU 0.5, a confusion matrix at IoU 0.5
with a background row/column, a grid of predictions, the training curves, Grad-CAM
explanations of correct and wrong detections, and report.html. Given the evaluation of
another detector on the same images (the generic one, for the target-species detector),
the report sets its headline beside this one's."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from insectml.data.manifest import read_json, read_manifest
from insectml.detector.data import DetectionSet
from insectml.detector.metrics import (  # noqa: F401 (match_detections: part of this module's API)
    CONFUSION_IOU,
    CONFUSION_SCORE,
    map_bootstrap_ci,
    match_detections,
    mean_average_precision,
    pr_curves,
    predict,
)
from insectml.detector.models import load_detector  # noqa: F401 (re-exported)
from insectml.errors import ConfigError, InputFileError
from insectml.fileio import open_atomic, write_json_atomic

GRID_IMAGES = 12  # images in the prediction grid


def confusion_at_iou(
    preds, targets, n_classes: int, iou: float = CONFUSION_IOU, score: float = CONFUSION_SCORE
) -> np.ndarray:
    """(n+1)×(n+1) counts, rows = truth, columns = prediction, last index = background:
    greedy matching by score (:func:`match_detections`); unmatched truths are missed
    (column bg), unmatched predictions above ``score`` are false alarms (row bg)."""
    matrix = np.zeros((n_classes + 1, n_classes + 1), dtype=np.int64)
    bg = n_classes
    for pred, target in zip(preds, targets, strict=True):
        pairs, missed = match_detections(pred, target, iou, score)
        for p, t in pairs:
            matrix[bg if t is None else int(target["labels"][t]) - 1, int(pred["labels"][p]) - 1] += 1
        for t in missed:
            matrix[int(target["labels"][t]) - 1, bg] += 1
    return matrix


def evaluate_detector(
    model_dir: Path,
    manifest: Path,
    dataset_json: Path,
    root: Path,
    out_dir: Path,
    split: str = "test",
    *,
    name: str | None = None,
    compare_with: Path | None = None,
    explain_per_class: int | None = None,
) -> dict:
    """Write metrics.json, the figures and report.html into ``out_dir``. ``name`` (default:
    the model folder's name) names this evaluation in its report and in the report of one
    that compares with it; ``compare_with``: another detector's evaluation folder (its
    metrics.json); ``explain_per_class``: correct and wrong detections explained per class
    (0: no explanations)."""
    from insectml.detector import explain
    from insectml.metrics import plot_confusion
    from insectml.report import Section, write_report

    per_class = explain.PER_CLASS if explain_per_class is None else explain_per_class
    if per_class < 0:
        raise ConfigError(f"explanations per class must be 0 or more, got {per_class}")
    other = _read_compared(compare_with) if compare_with is not None else None
    model, classes, config = load_detector(model_dir)
    dataset = read_json(dataset_json, "dataset description")
    if dataset.get("classes") != classes:
        raise ConfigError(f"{dataset_json}: classes differ from the model's {model_dir / 'labels.json'}")
    rows = [r for r in read_manifest(manifest) if r["split"] == split]
    if not rows:
        raise ConfigError(f"{manifest}: no images in split '{split}'")
    name = name or Path(model_dir).resolve().name
    data = DetectionSet(rows, root, classes, train=False)
    with torch.no_grad():
        preds, targets = predict(model, data, torch.device("cpu"), desc=f"evaluate {name}")
    result = mean_average_precision(preds, targets, classes)
    ci = map_bootstrap_ci(preds, targets, classes)
    matrix = confusion_at_iou(preds, targets, len(classes))
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "family": "detector",
        "name": name,
        "model": config["model"],
        "split": split,
        "n_images": len(rows),
        # which images: two evaluations with the same digest scored the same ones
        "images_sha256": hashlib.sha256("\n".join(sorted(r["path"] for r in rows)).encode()).hexdigest(),
        **result,
        **{f"{key}_{end}": ci[key][end] for key in ("map", "map_50") for end in ("low", "high")},
        "ci": ci,
        "confusion_matrix_iou50": matrix.tolist(),
        "confusion_labels": [*classes, "background"],
    }

    sections = []
    if other is not None:
        sections.append(_comparison(metrics, other))
    curves = pr_curves(preds, targets, classes)
    sections.append(_pr_section(curves, out_dir))
    sections.append(_ap_section(classes, ci, curves, out_dir))
    confusion = plot_confusion(
        matrix.tolist(),
        [*classes, "background"],
        out_dir / "confusion_matrix.png",
        f"{config['model']} — {split}, IoU {CONFUSION_IOU}, score ≥ {CONFUSION_SCORE}",
    )
    sections.append(
        Section(
            f"Confusion at IoU {CONFUSION_IOU}",
            [
                f"Detections scoring at least {CONFUSION_SCORE}, matched greedily (the most confident first) to the "
                f"truth box they overlap most, at IoU ≥ {CONFUSION_IOU}. Row background: false alarms; column "
                "background: missed objects."
            ],
            figures=[_figure(confusion, "rows: true class, columns: detected class")],
        )
    )
    grid = _plot_grid(rows[:GRID_IMAGES], root, preds[:GRID_IMAGES], classes, out_dir / "predictions.png")
    sections.append(
        Section(
            "Predictions",
            [f"The first {min(len(rows), GRID_IMAGES)} images of the {split} split."],
            figures=[_figure(grid, f"green: truth, red: detections with score ≥ {CONFUSION_SCORE}")],
        )
    )
    sections.append(_training_section(model_dir, out_dir))
    if per_class:
        explained = explain.explain_evaluation(
            model, data, rows, preds, targets, classes, matrix, out_dir, per_class=per_class
        )
        metrics["explanations"] = explained.summary
        sections.append(Section("Explanations", explained.text, figures=[_figure(p, c) for p, c in explained.figures]))
    write_json_atomic(out_dir / "metrics.json", metrics)

    headline = _headline(metrics)
    if other is not None:
        headline[f"{other['name']} mAP@.5 [{ci['level']:.0%} CI] (compared)"] = _with_interval(other, "map_50")
    lineage_path = model_dir / "lineage.json"
    write_report(
        out_dir / "report.html",
        title=f"detector {name} — {config['model']}",
        headline=headline,
        sections=sections,
        lineage=json.loads(lineage_path.read_text()) if lineage_path.is_file() else None,
    )
    return metrics


def _figure(path: Path, caption: str):
    from insectml.report import Figure

    return Figure(path, caption)


def _with_interval(metrics: dict, key: str) -> str:
    ci = metrics["ci"]
    return f"{metrics[key]:.3f} [{ci[key]['low']:.3f}, {ci[key]['high']:.3f}]"


def _headline(metrics: dict) -> dict[str, object]:
    """The report's headline: mAP figures with their bootstrap intervals."""
    ci = metrics["ci"]
    level = f"{ci['level']:.0%}"
    return {
        f"mAP@[.5:.95] [{level} CI]": _with_interval(metrics, "map"),
        f"mAP@.5 [{level} CI]": _with_interval(metrics, "map_50"),
        "mAP@.75": metrics["map_75"],
        f"{metrics['split']} images": metrics["n_images"],
        "interval": f"basic bootstrap over images, {ci['n_boot']} resamples",
    }


def _read_compared(folder: Path) -> dict:
    """The metrics.json of the evaluation to compare with, checked to be a detector's."""
    from insectml.modeldir import read_json as read_checked

    path = folder / "metrics.json"
    metrics = read_checked(path, "detector evaluation metrics", keys=("map", "map_50", "map_75", "ci", "n_images"))
    if metrics.get("family") != "detector" or not all(k in metrics["ci"] for k in ("map", "map_50")):
        raise InputFileError(path, "not the metrics.json of 'insectml detector evaluate'")
    return {**metrics, "name": metrics.get("name") or folder.resolve().name}


def _comparison(metrics: dict, other: dict):
    """This detector's headline beside the other's, and their per-class AP."""
    from insectml.report import Section, Table

    level = f"{metrics['ci']['level']:.0%}"
    columns = [
        "evaluation",
        "model",
        "split",
        "images",
        f"mAP@[.5:.95] [{level} CI]",
        f"mAP@.5 [{level} CI]",
        "mAP@.75",
    ]
    table = Table(
        columns,
        [
            [m["name"], m.get("model"), m.get("split"), m["n_images"], *_intervals(m), m["map_75"]]
            for m in (other, metrics)
        ],
        caption="the compared evaluation first, this one highlighted",
        highlight=1,
    )
    names = list(dict.fromkeys([*other.get("ap_per_class", {}), *metrics["ap_per_class"]]))
    per_class = Table(
        ["class", f"{other['name']} AP@[.5:.95]", f"{metrics['name']} AP@[.5:.95]"],
        [[c, other.get("ap_per_class", {}).get(c), metrics["ap_per_class"].get(c)] for c in names],
        caption="per class",
    )
    if other.get("images_sha256") is not None:
        same = other["images_sha256"] == metrics["images_sha256"] and other.get("split") == metrics["split"]
    else:  # an evaluation from before the digest: the count is all there is to compare
        same = other["n_images"] == metrics["n_images"] and other.get("split") == metrics["split"]
    if same:
        text = f"Both detectors scored on the same {metrics['n_images']} {metrics['split']} images."
        if other.get("images_sha256") is None:
            text = f"Both detectors scored on {metrics['n_images']} {metrics['split']} images (the same count)."
    else:
        text = (
            f"The two evaluations scored different images ({other.get('split')}: {other['n_images']}, "
            f"{metrics['split']}: {metrics['n_images']}): the figures are not directly comparable."
        )
    overlap = not (
        metrics["ci"]["map_50"]["low"] > other["ci"]["map_50"]["high"]
        or other["ci"]["map_50"]["low"] > metrics["ci"]["map_50"]["high"]
    )
    text += f" mAP@.5: {metrics['name']} {metrics['map_50']:.3f}, {other['name']} {other['map_50']:.3f}; " + (
        "the intervals overlap." if overlap else "the intervals do not overlap."
    )
    return Section(f"{other['name']} vs {metrics['name']}", [text], tables=[table, per_class])


def _intervals(metrics: dict) -> list[str]:
    return [_with_interval(metrics, "map"), _with_interval(metrics, "map_50")]


def _pr_section(curves: dict, out_dir: Path):
    from insectml.report import Section

    title = f"Precision–recall at IoU {CONFUSION_IOU}"
    if not curves:
        return Section(title, ["No truth box in this split: there is no precision–recall curve to draw."])
    path = _plot_pr(curves, out_dir / "pr_curves.png")
    return Section(
        title,
        [
            f"Per class, precision against recall as the score threshold falls, at IoU {CONFUSION_IOU} with COCO's "
            "matching (the AP@.5 in each title is the area under the dashed interpolated curve, 101 recall points). "
            f"The dot marks the score threshold {CONFUSION_SCORE}."
        ],
        figures=[_figure(path, "precision–recall curves per class")],
    )


def _ap_section(classes: list[str], ci: dict, curves: dict, out_dir: Path):
    from insectml.report import Section, Table

    level = f"{ci['level']:.0%}"
    per_class = ci.get("per_class", {})

    def cell(entry: dict | None) -> str:
        return "no truth box" if entry is None else f"{entry['value']:.3f} [{entry['low']:.3f}, {entry['high']:.3f}]"

    table = Table(
        ["class", "truth boxes", f"AP@[.5:.95] [{level} CI]", f"AP@.5 [{level} CI]"],
        [
            [
                c,
                curves[c]["n_truth"] if c in curves else 0,
                cell(per_class.get(c, {}).get("ap")),
                cell(per_class.get(c, {}).get("ap_50")),
            ]
            for c in classes
        ],
    )
    figures = []
    if per_class:
        figures.append(_figure(_plot_ap(per_class, level, out_dir / "ap_per_class.png"), "AP per class"))
    return Section(
        "Average precision per class",
        [f"Bars: AP per class; whiskers: its {level} basic bootstrap interval over images ({ci['n_boot']} resamples)."],
        tables=[table],
        figures=figures,
    )


def _training_section(model_dir: Path, out_dir: Path):
    from insectml.modeldir import read_json as read_checked
    from insectml.report import Section

    path = model_dir / "history.jsonl"
    if not path.is_file():
        return Section("Training", [f"No training history ({path.name}) in the model folder."])
    try:
        history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError:
        raise InputFileError(path, "training history is not JSON lines") from None
    if not history or not all("epoch" in h and "train_loss" in h for h in history):
        raise InputFileError(path, "training history without 'epoch' and 'train_loss' on every line")
    summary = model_dir / "train_metrics.json"
    kept = read_checked(summary, "training metrics").get("best_epoch") if summary.is_file() else None
    figure = _plot_history(history, out_dir / "training_curves.png", kept)
    text = f"{len(history)} epoch(s), from {path.name}; validation mAP on the val split after each epoch."
    if kept:
        text += f" The weights evaluated are those of epoch {kept} (dotted line)."
    return Section(
        "Training",
        [text],
        figures=[_figure(figure, "training loss and validation mAP per epoch")],
    )


def _plots():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path, dpi: int = 90) -> Path:
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return path


def _plot_pr(curves: dict, path: Path) -> Path:
    plt = _plots()
    from insectml.detector.metrics import RECALL_THRESHOLDS

    cols = min(len(curves), 4)
    rows = -(-len(curves) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, c) in zip(axes.ravel(), curves.items(), strict=False):
        ax.axis("on")
        ax.plot(c["recall"], c["precision"], drawstyle="steps-post", lw=1.2, color="tab:blue")
        if len(c["precision"]):
            envelope = np.maximum.accumulate(c["precision"][::-1])[::-1]
            index = np.searchsorted(c["recall"], RECALL_THRESHOLDS, side="left")
            inside = index < len(envelope)
            ax.plot(RECALL_THRESHOLDS[inside], envelope[index[inside]], ls="--", lw=1, color="tab:orange")
            above = np.flatnonzero(c["scores"] >= CONFUSION_SCORE)
            if len(above):
                ax.plot(c["recall"][above[-1]], c["precision"][above[-1]], "o", color="black", ms=4)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_title(
            f"{name}\nAP@.5 {c['ap_50']:.3f}, {c['n_truth']} truth box{'es' if c['n_truth'] > 1 else ''}",
            fontsize=8,
            parse_math=False,
        )
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _plot_ap(per_class: dict, level: str, path: Path) -> Path:
    plt = _plots()
    names = list(per_class)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.8))
    for offset, key, label in ((-0.2, "ap_50", "AP@.5"), (0.2, "ap", "AP@[.5:.95]")):
        value = np.asarray([per_class[n][key]["value"] for n in names])
        low = value - np.asarray([per_class[n][key]["low"] for n in names])
        high = np.asarray([per_class[n][key]["high"] for n in names]) - value
        ax.barh(y + offset, value, height=0.38, xerr=[np.maximum(low, 0), np.maximum(high, 0)], capsize=2, label=label)
    ax.set_yticks(y, names, parse_math=False)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.02)
    ax.set_xlabel(f"average precision ({level} interval)")
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _plot_history(history: list[dict], path: Path, kept: int | None = None) -> Path:
    plt = _plots()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (loss_ax, map_ax) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("training loss")
    for key, label in (("val_map_50", "mAP@.5"), ("val_map", "mAP@[.5:.95]")):
        if all(key in h for h in history):
            map_ax.plot(epochs, [h[key] for h in history], marker="o", label=label)
    if map_ax.lines:
        map_ax.legend(fontsize=8)
    else:
        map_ax.text(0.5, 0.5, "no validation", ha="center", va="center", transform=map_ax.transAxes)
    map_ax.set_xlabel("epoch")
    map_ax.set_ylabel("validation")
    map_ax.set_ylim(bottom=0)
    if kept:
        for ax in (loss_ax, map_ax):
            ax.axvline(kept, ls=":", color="grey")
    for ax in (loss_ax, map_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _plot_grid(rows, root: Path, preds, classes, path: Path) -> Path:
    plt = _plots()
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
            if score < CONFUSION_SCORE:
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
                parse_math=False,
            )
    fig.suptitle(f"green: truth, red: predictions with score ≥ {CONFUSION_SCORE}")
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out
