"""Evaluate a wingbeat model on a split: metrics.json (every headline number with a grouped
bootstrap 95% CI: recording groups resampled, not recordings), confusion matrix,
reliability diagram (calibration before and after the model's temperature), training
curves, explanations (:mod:`.explain`), the predictions (``predictions.npz``, for paired
comparisons) and report.html."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insectml import stats
from insectml.errors import ConfigError, InputFileError
from insectml.fileio import open_atomic, write_json_atomic
from insectml.metrics import classification_metrics, plot_confusion
from insectml.report import Figure, Section, table_from_mapping, write_report
from insectml.wingbeat.explain import explain_evaluation
from insectml.wingbeat.features import load_features
from insectml.wingbeat.predict import load_predictor

PREDICTIONS = "predictions.npz"


def evaluate(model_dir: Path, features: Path, out_dir: Path, split: str = "test", seed: int = 0) -> dict:
    """``seed``: of the bootstrap resamples."""
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
    raw = predictor.predict_features(feats, mask, calibrated=False)
    probs = predictor.calibrate(raw)
    y_pred = probs.argmax(axis=1)
    groups = feats["groups"][mask]
    n_classes = len(predictor.classes)
    ci = {
        "macro_f1": stats.bootstrap_ci(stats.macro_f1_on(y_true, y_pred, n_classes), len(y_true), groups, seed=seed),
        "accuracy": stats.bootstrap_ci(stats.accuracy_on(y_true, y_pred), len(y_true), groups, seed=seed),
    }
    ece_before = stats.expected_calibration_error(raw, y_true)
    ece_after = stats.expected_calibration_error(probs, y_true)
    latency_ms = _latency_ms(predictor, feats, mask)

    out_dir.mkdir(parents=True, exist_ok=True)
    result = classification_metrics(y_true, y_pred, predictor.classes)
    config = json.loads((model_dir / "config.json").read_text())
    lineage = json.loads((model_dir / "lineage.json").read_text()) if (model_dir / "lineage.json").is_file() else {}
    train_metrics_path = model_dir / "train_metrics.json"
    train_metrics = json.loads(train_metrics_path.read_text()) if train_metrics_path.is_file() else {}
    val = train_metrics.get("val")
    cv_path = model_dir / "cv.json"
    cv = json.loads(cv_path.read_text()) if cv_path.is_file() else None
    metrics = {
        "family": "wingbeat",
        "model": config["model"],
        "split": split,
        **{k: result[k] for k in ("n", "accuracy", "macro_f1")},
        "ci": ci,
        **{f"{k}_{end}": ci[k][end] for k in ci for end in ("low", "high")},
        "n_groups": ci["macro_f1"]["n_units"],
        "val_accuracy": val["accuracy"] if val else None,
        "val_macro_f1": val["macro_f1"] if val else None,
        "cv_macro_f1": cv["macro_f1"]["value"] if cv else None,
        "cv_macro_f1_low": cv["macro_f1"]["low"] if cv else None,
        "cv_macro_f1_high": cv["macro_f1"]["high"] if cv else None,
        "cv": cv,
        "temperature": predictor.temperature,
        "temperature_fitted_on": config.get("temperature_fitted_on"),
        "ece_before": round(ece_before, 6),
        "ece_after": round(ece_after, 6),
        "n_parameters": config.get("n_parameters"),
        "train_seconds": train_metrics.get("fit_seconds"),
        "inference_ms_per_recording": latency_ms,
        "per_class": result["per_class"],
        "confusion_matrix": result["confusion_matrix"],
        "classes": predictor.classes,
    }
    write_json_atomic(out_dir / "metrics.json", metrics)
    with open_atomic(out_dir / PREDICTIONS, "wb") as fh:
        np.savez(fh, ids=feats["ids"][mask], y=y_true, pred=y_pred, groups=groups, probs=probs)
    reliability = stats.plot_reliability(
        {
            f"uncalibrated (ECE {ece_before:.3f})": (raw, y_true),
            f"T={predictor.temperature:.2f} (ECE {ece_after:.3f})": (probs, y_true),
        },
        out_dir / "reliability.png",
        f"wingbeat {config['model']} — {split}: reliability",
    )
    plot = plot_confusion(
        result["confusion_matrix"],
        predictor.classes,
        out_dir / "confusion_matrix.png",
        f"wingbeat {config['model']} — {split} (acc {result['accuracy']:.3f}, macro-F1 {result['macro_f1']:.3f})",
    )
    sections = [
        Section("Per class", tables=[table_from_mapping(result["per_class"], caption=f"{split} split")]),
        Section(
            "Confusion matrix",
            text=["Rows: true species; columns: predicted; colour: the row's share, numbers: counts."],
            figures=[Figure(plot, "confusion matrix")],
        ),
        Section(
            "Calibration",
            text=[
                f"Probabilities are divided by the temperature T = {predictor.temperature:.2f} (fitted on "
                f"{config.get('temperature_fitted_on') or '—'}) before the softmax, here and when served. "
                "A calibrated model's dots lie on the diagonal."
            ],
            figures=[Figure(reliability, "reliability diagram, before and after temperature scaling")],
        ),
    ]
    history = model_dir / "history.jsonl"
    if history.is_file():
        curves = plot_curves({config["model"]: read_history(history)}, out_dir / "training_curves.png")
        sections.append(Section("Training", figures=[Figure(curves, "training loss and validation macro-F1")]))
    sections.append(
        explain_evaluation(
            predictor, feats, mask, y_true, probs, out_dir, f"wingbeat {config['model']} — {split}", seed=seed
        )
    )
    write_report(
        out_dir / "report.html",
        title=f"wingbeat — {config['model']}",
        headline={
            "macro-F1 [95% CI]": stats.format_ci(ci["macro_f1"]),
            "accuracy [95% CI]": stats.format_ci(ci["accuracy"]),
            f"{split} recordings (groups)": f"{metrics['n']} ({metrics['n_groups']})",
            "CV macro-F1 (out of fold)": stats.format_ci(cv["macro_f1"]) + f" ({cv['k']} folds)" if cv else "—",
            "val macro-F1": metrics["val_macro_f1"],
            "ECE before → after temperature": f"{ece_before:.3f} → {ece_after:.3f} "
            f"(T = {predictor.temperature:.2f}, fitted on {config.get('temperature_fitted_on') or '—'})",
        },
        sections=sections,
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


def read_history(path: Path) -> list[dict]:
    """The epochs of a model's history.jsonl, for its training curves."""
    try:
        epochs = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputFileError(path, "training history is not JSON lines") from None
    if not all(isinstance(e, dict) and {"epoch", "train_loss"} <= e.keys() for e in epochs):
        raise InputFileError(path, "training history has a line without 'epoch' and 'train_loss'")
    return epochs


def plot_curves(curves: dict[str, list[dict]], path: Path) -> Path:
    """Training loss and validation macro-F1 per epoch, one line per model of ``curves``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, history in curves.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label=name)
        if all("val_macro_f1" in h for h in history):  # a refit has nothing to validate on
            f1_ax.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    f1_ax.set(title="validation macro-F1", xlabel="epoch", ylim=(0, 1))
    if f1_ax.lines:
        f1_ax.legend()
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
