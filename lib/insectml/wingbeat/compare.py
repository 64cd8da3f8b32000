"""Compare trained wingbeat models side by side and pick the best by validation macro-F1."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from insectml.errors import InputFileError
from insectml.report import write_comparison_report

COLUMNS = [
    "model",
    "val_macro_f1",
    "val_accuracy",
    "accuracy",
    "macro_f1",
    "n_parameters",
    "train_seconds",
    "inference_ms_per_recording",
    "best_epoch",
]


def _load(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    return json.loads(path.read_text())


def compare(model_dirs: list[Path], evaluation_dirs: list[Path], out: Path, sweep: Path | None = None) -> str:
    """Write comparison.csv/.json, plots and report.html into ``out``; return the best model's name.
    ``sweep``: a sweep's sweep.json, whose table (and plot) the report shows."""
    evaluations = {}
    for d in evaluation_dirs:
        metrics = _load(d / "metrics.json", "evaluation metrics")
        evaluations[metrics["model"]] = (d, metrics)
    rows, curves = [], {}
    for d in model_dirs:
        config = _load(d / "config.json", "model config")
        name = config["model"]
        if name not in evaluations:
            raise InputFileError(d, f"no evaluation given for model '{name}'")
        train = _load(d / "train_metrics.json", "training metrics")
        _, metrics = evaluations[name]
        rows.append(
            {
                "model": name,
                **{k: metrics.get(k) for k in COLUMNS[1:-1]},
                "best_epoch": train.get("best_epoch"),
                "per_class_recall": {c: v["recall"] for c, v in metrics["per_class"].items()},
            }
        )
        history = d / "history.jsonl"
        if history.is_file():
            curves[name] = [json.loads(line) for line in history.read_text().splitlines()]
    rows.sort(key=lambda r: (-(r["val_macro_f1"] or 0), r["model"]))
    best = rows[0]["model"]

    out.mkdir(parents=True, exist_ok=True)
    with (out / "comparison.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out / "comparison.json").write_text(
        json.dumps({"best": best, "selected_by": "val_macro_f1", "models": rows}, indent=2) + "\n"
    )
    (out / "best.txt").write_text(best + "\n")
    images = [_plot_confusions(rows, evaluations, out / "confusion_matrices.png")]
    if curves:
        images.append(_plot_curves(curves, out / "training_curves.png"))
    extra = ""
    if sweep is not None:
        from insectml.sweep import table_html

        extra = table_html(json.loads(sweep.read_text()))
        if (sweep.parent / "sweep.png").is_file():
            images.append(sweep.parent / "sweep.png")
    write_comparison_report(out / "report.html", rows=rows, columns=COLUMNS, best=best, images=images, extra=extra)
    return best


def _plot_confusions(rows: list[dict], evaluations: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 4.4), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        metrics = evaluations[row["model"]][1]
        counts = np.asarray(metrics["confusion_matrix"])
        norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        short = [c[:10] for c in metrics["classes"]]
        # as written: a "$" in a class name must not start mathtext
        ax.set_xticks(range(len(short)), short, rotation=60, ha="right", fontsize=7, parse_math=False)
        ax.set_yticks(range(len(short)), short, fontsize=7, parse_math=False)
        for i in range(len(short)):
            for j in range(len(short)):
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
        ax.set_title(f"{row['model']}: test macro-F1 {row['macro_f1']:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_curves(curves: dict[str, list[dict]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, f1_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, history in curves.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["train_loss"] for h in history], marker="o", label=name)
        f1_ax.plot(epochs, [h["val_macro_f1"] for h in history], marker="o", label=name)
    loss_ax.set(title="training loss", xlabel="epoch")
    f1_ax.set(title="validation macro-F1", xlabel="epoch", ylim=(0, 1))
    f1_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
