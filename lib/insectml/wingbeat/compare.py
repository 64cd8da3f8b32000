"""Compare trained wingbeat models side by side, pick the best, and say whether it beats the baseline.

The best is chosen by the out-of-fold macro-F1 of cross-validation when every model has
one (``cv.json`` in its model directory), else by validation macro-F1; test numbers are
shown for every model, with their intervals, and never used to choose. The verdict, the
first line of the report and ``comparison.json``: the chosen model's test macro-F1 minus
the baseline's, paired (the same recording groups resampled for both), with its 95% CI.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError
from insectml.fileio import open_atomic, write_json_atomic, write_text_atomic
from insectml.modeldir import read_json
from insectml.report import Figure, Section, Table, write_report
from insectml.wingbeat.evaluate import plot_curves, read_history

BASELINE = "baseline"
COLUMNS = [
    "model",
    "cv_macro_f1",
    "cv_macro_f1_low",
    "cv_macro_f1_high",
    "val_macro_f1",
    "macro_f1",
    "macro_f1_low",
    "macro_f1_high",
    "accuracy",
    "accuracy_low",
    "accuracy_high",
    "ece_before",
    "ece_after",
    "temperature",
    "n_parameters",
    "train_seconds",
    "inference_ms_per_recording",
    "best_epoch",
]
# The report's table: intervals shown beside their values.
SHOWN = [
    ("model", "model"),
    ("CV macro-F1 [95% CI]", "cv_macro_f1"),
    ("val macro-F1", "val_macro_f1"),
    ("test macro-F1 [95% CI]", "macro_f1"),
    ("test accuracy [95% CI]", "accuracy"),
    ("ECE before → after", "ece"),
    ("T", "temperature"),
    ("parameters", "n_parameters"),
    ("train s", "train_seconds"),
    ("ms / recording", "inference_ms_per_recording"),
    ("best epoch", "best_epoch"),
]


# What compare reads from each file, checked once when it is read.
_METRICS_KEYS = ("model", "classes", "per_class", "confusion_matrix", "macro_f1")


def compare(
    model_dirs: list[Path], evaluation_dirs: list[Path], out: Path, sweep: Path | None = None, seed: int = 0
) -> str:
    """Write comparison.csv/.json, plots and report.html into ``out``; return the best model's name.
    ``sweep``: a sweep's sweep.json, whose table (and plot) the report shows; ``seed``: of
    the paired bootstrap."""
    evaluations = {}
    for d in evaluation_dirs:
        metrics = read_json(d / "metrics.json", "evaluation metrics", keys=_METRICS_KEYS)
        evaluations[metrics["model"]] = (d, metrics)
    rows, curves = [], {}
    for d in model_dirs:
        config = read_json(d / "config.json", "model config", keys=("model",))
        name = config["model"]
        if name not in evaluations:
            raise InputFileError(d, f"no evaluation given for model '{name}'")
        train = read_json(d / "train_metrics.json", "training metrics")
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
            curves[name] = read_history(history)
    selected_by = "cv_macro_f1" if all(r["cv_macro_f1"] is not None for r in rows) else "val_macro_f1"
    rows.sort(key=lambda r: (-(r[selected_by] or 0), r["model"]))
    best = rows[0]["model"]
    verdict = _verdict(best, evaluations, seed)

    out.mkdir(parents=True, exist_ok=True)
    with open_atomic(out / "comparison.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_json_atomic(
        out / "comparison.json",
        {"best": best, "selected_by": selected_by, "verdict": verdict, "baseline": BASELINE, "models": rows},
    )
    write_text_atomic(out / "best.txt", best + "\n")
    selected = "out-of-fold (cross-validation) macro-F1" if selected_by == "cv_macro_f1" else "validation macro-F1"
    sections = [
        Section(
            "Models",
            text=["Intervals: 95%, grouped bootstrap over recording groups. Best first; the chosen model highlighted."],
            tables=[Table([label for label, _ in SHOWN], [_shown(r) for r in rows], highlight=0)],
        ),
        Section("Per-class recall (test)", tables=[_recall_table(rows)]),
    ]
    if sweep is not None:
        from insectml.sweep import section

        sections.append(section(sweep))
    sections.append(
        Section(
            "Confusion matrices (test)",
            figures=[Figure(_plot_confusions(rows, evaluations, out / "confusion_matrices.png"), "best first")],
        )
    )
    if curves:
        figures = [Figure(plot_curves(curves, out / "training_curves.png"), "training loss and validation macro-F1")]
        sections.append(Section("Training curves", figures=figures))
    write_report(
        out / "report.html",
        title="wingbeat model comparison",
        verdict=verdict["sentence"],
        intro=[
            f"Best by {selected}: {best} (this one is packaged). "
            "Test metrics are reported for every model but never used to choose."
        ],
        sections=sections,
    )
    return best


def _verdict(best: str, evaluations: dict, seed: int) -> dict:
    """Does ``best`` beat the baseline on test? The paired difference in macro-F1 and its CI."""
    from insectml import stats

    if BASELINE not in evaluations:
        return {"beats_baseline": None, "sentence": "No baseline was run: nothing says whether the models beat one."}
    if best == BASELINE:
        return {
            "beats_baseline": False,
            "difference": 0.0,
            "sentence": "No model beats the baseline (log power spectrum + logistic regression): the baseline was "
            "chosen.",
        }
    ours, theirs = (_predictions(evaluations[name][0]) for name in (best, BASELINE))
    if not np.array_equal(ours["ids"], theirs["ids"]):
        raise InputFileError(evaluations[best][0], "scored other recordings than the baseline's evaluation")
    n_classes = len(evaluations[best][1]["classes"])
    diff = stats.paired_bootstrap_diff(
        stats.macro_f1_on(ours["y"], ours["pred"], n_classes),
        stats.macro_f1_on(theirs["y"], theirs["pred"], n_classes),
        len(ours["y"]),
        ours["groups"],
        seed=seed,
    )
    beats = diff["low"] is not None and diff["low"] > 0
    shown = f"{diff['difference']:+.3f} [{_num(diff['low'])}, {_num(diff['high'])}]"
    sentence = (
        f"{best} beats the baseline on test macro-F1 by {shown} (paired, 95% CI over recording groups)."
        if beats
        else f"{best} does NOT clearly beat the baseline on test macro-F1: {shown} (paired, 95% CI over recording "
        "groups, includes 0 or below)."
    )
    return {"beats_baseline": beats, "metric": "macro_f1", "model": best, **diff, "sentence": sentence}


def _predictions(evaluation: Path) -> dict:
    path = evaluation / "predictions.npz"
    if not path.is_file():
        raise InputFileError(path, "not found (an evaluation from an older insectml?)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _ci(row: dict, key: str) -> str | None:
    if row.get(key) is None:
        return None
    return f"{row[key]:.3f} [{_num(row.get(key + '_low'))}, {_num(row.get(key + '_high'))}]"


def _shown(row: dict) -> list:
    """A table row of the report: intervals beside their values, the baseline marked."""
    shown = {label: row.get(key) for label, key in SHOWN}
    shown["model"] = row["model"] + (" (baseline)" if row["model"] == BASELINE else "")
    for label, key in SHOWN:
        if key in ("cv_macro_f1", "macro_f1", "accuracy"):
            shown[label] = _ci(row, key)
    if row.get("ece_before") is not None:
        shown["ECE before → after"] = f"{row['ece_before']:.3f} → {row['ece_after']:.3f}"
    return [shown[label] for label, _ in SHOWN]


def _recall_table(rows: list[dict]) -> Table:
    """Classes × models, best first."""
    classes = list(rows[0]["per_class_recall"]) if rows else []
    return Table(
        ["class", *(r["model"] for r in rows)],
        [[c, *(r["per_class_recall"].get(c) for r in rows)] for c in classes],
    )


def _plot_confusions(rows: list[dict], evaluations: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(len(rows), 3)  # wider rows shrink each matrix below reading size in the report
    lines = -(-len(rows) // cols)
    fig, axes = plt.subplots(lines, cols, figsize=(4.2 * cols, 4.4 * lines), squeeze=False)
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    for ax, row in zip(axes.ravel(), rows, strict=False):
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
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
