"""Evaluate a wingbeat model on a split: metrics.json, confusion matrix, report.html."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insectml.errors import ConfigError
from insectml.metrics import classification_metrics, plot_confusion
from insectml.report import write_report
from insectml.wingbeat.features import load_features
from insectml.wingbeat.predict import load_predictor


def evaluate(model_dir: Path, features: Path, out_dir: Path, split: str = "test") -> dict:
    predictor = load_predictor(model_dir)
    feats = load_features(features)
    mask = feats["split"] == split
    if not mask.any():
        raise ConfigError(f"{features}: no samples in split '{split}'")
    index = {c: i for i, c in enumerate(predictor.classes)}
    unknown = sorted(set(feats["labels"][mask].tolist()) - set(index))
    if unknown:
        raise ConfigError(f"{features}: labels the model does not know: {', '.join(unknown)}")
    y_true = np.asarray([index[label] for label in feats["labels"][mask]])
    probs = predictor.predict_features(feats, mask)
    y_pred = probs.argmax(axis=1)
    latency_ms = _latency_ms(predictor, feats, mask)

    out_dir.mkdir(parents=True, exist_ok=True)
    result = classification_metrics(y_true, y_pred, predictor.classes)
    config = json.loads((model_dir / "config.json").read_text())
    lineage = json.loads((model_dir / "lineage.json").read_text()) if (model_dir / "lineage.json").is_file() else {}
    train_metrics_path = model_dir / "train_metrics.json"
    train_metrics = json.loads(train_metrics_path.read_text()) if train_metrics_path.is_file() else {}
    val = train_metrics.get("val")
    metrics = {
        "family": "wingbeat",
        "model": config["model"],
        "split": split,
        **{k: result[k] for k in ("n", "accuracy", "macro_f1")},
        "val_accuracy": val["accuracy"] if val else None,
        "val_macro_f1": val["macro_f1"] if val else None,
        "n_parameters": config.get("n_parameters"),
        "train_seconds": train_metrics.get("fit_seconds"),
        "inference_ms_per_recording": latency_ms,
        "per_class": result["per_class"],
        "confusion_matrix": result["confusion_matrix"],
        "classes": predictor.classes,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plot = plot_confusion(
        result["confusion_matrix"],
        predictor.classes,
        out_dir / "confusion_matrix.png",
        f"wingbeat {config['model']} — {split} (acc {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f})",
    )
    write_report(
        out_dir / "report.html",
        title=f"wingbeat — {config['model']}",
        headline={
            "accuracy": metrics["accuracy"],
            "macro-F1": metrics["macro_f1"],
            "val accuracy": metrics["val_accuracy"],
            "val macro-F1": metrics["val_macro_f1"],
            f"{split} recordings": metrics["n"],
        },
        per_class=result["per_class"],
        images=[plot],
        lineage=lineage,
    )
    return metrics


def _latency_ms(predictor, feats: dict, mask: np.ndarray, n: int = 50) -> float:
    """Median milliseconds to classify one recording from its precomputed features."""
    import time

    times = []
    for i in np.flatnonzero(mask)[:n]:
        one = np.zeros_like(mask)
        one[i] = True
        tic = time.perf_counter()
        predictor.predict_features(feats, one)
        times.append((time.perf_counter() - tic) * 1000)
    return round(float(np.median(times)), 3)
