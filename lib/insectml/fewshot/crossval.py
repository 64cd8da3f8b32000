"""Join the few-shot fold tasks into the cross-validation result and calibrate the refit.

``insectml fewshot cv``: the held-out scores of every fold (``heldout.npz``: each fold's
classes scored by an embedder that never saw them; together every non-test class once) →
per fold, the mean 5-way 1-shot and 5-shot episode accuracy of the model and of the two
baselines (on the same episodes); over folds, their mean with a Student-t 95% interval
(:func:`insectml.stats.mean_ci`), and the model's paired difference to the better baseline
(per fold, on the same episodes; interval over folds); the temperature of the
probabilities fitted on the held-out folds' nearest-prototype classification, and the
open-set threshold on their open-set scores → a copy of the refit model folder holding
both (config.json), ``cv.json``, ``reliability_cv.png`` and the CV in its lineage.

Folds hold different numbers of classes; their cosines are joined into one
(queries × widest fold) array, a fold's missing classes given the cosine ``PAD``, whose
probability is 0 at every temperature in range (exp(-10⁴ / 2) underflows), so each query is
classified among its own fold's classes only.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from insectml.cv import CLASS_RULE, read_folds, read_json, task_rows
from insectml.errors import InputFileError
from insectml.fewshot.evaluate import BASELINES, CV_JSON, EPISODE_SHOTS
from insectml.fewshot.folds import EMBEDDINGS, HELDOUT
from insectml.fewshot.gallery import calibrate_threshold, fit_cosine_temperature, probabilities
from insectml.fileio import write_json_atomic

PAD = -1e4


def load_heldout(fold_dirs: list[Path]) -> tuple[list[dict], dict]:
    """The folds' held-out scores in fold order (each a dict of :func:`score_heldout`'s
    arrays) and the plan they came from (k, fold_seed, reason); every fold exactly once."""
    return read_folds(fold_dirs, HELDOUT)


def _fold_means(part: dict) -> dict[str, dict[str, float | None]]:
    """Per metric, per embedding: the fold's mean episode accuracy (None: no episodes)."""
    return {
        metric: {
            name: float(part[f"{name}__{metric}"].mean()) if len(part[f"{name}__{metric}"]) else None
            for name in EMBEDDINGS
        }
        for metric in EPISODE_SHOTS
    }


def _across_folds(per_fold: list[dict], metric: str) -> dict | None:
    """Per embedding: the mean ± t-interval over folds of ``metric``; None unless every
    fold had episodes."""
    from insectml.stats import mean_ci

    values = {name: [f[metric][name] for f in per_fold] for name in EMBEDDINGS}
    if any(v is None for vs in values.values() for v in vs):
        return None
    return {name: mean_ci(vs) for name, vs in values.items()}


def _verdict(per_fold: list[dict], summary: dict) -> dict | None:
    """Whether the model beats the better baseline (by CV mean) on the most-shot episodes
    every fold allows: the per-fold paired differences' t-interval lies above 0."""
    from insectml.stats import mean_ci

    metric = next((m for m in reversed(EPISODE_SHOTS) if summary[m] is not None), None)
    if metric is None:
        return None
    best = max(BASELINES, key=lambda b: summary[metric][b]["mean"])
    diffs = [f[metric]["model"] - f[metric][best] for f in per_fold]
    difference = mean_ci(diffs)
    return {
        "metric": metric,
        "baseline": best,
        "per_fold": [round(d, 6) for d in diffs],
        "difference": difference,
        "beats_baseline": difference["low"] is not None and difference["low"] > 0,
    }


def _joined_cosines(parts: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Every fold's query cosines in one array (padded with ``PAD``) and their classes."""
    width = max(p["cosines"].shape[1] for p in parts)
    cosines = np.concatenate(
        [np.pad(p["cosines"], ((0, 0), (0, width - p["cosines"].shape[1])), constant_values=PAD) for p in parts]
    )
    return cosines, np.concatenate([p["truth"] for p in parts])


def summarise(parts: list[dict], plan: dict) -> dict:
    """The cross-validation summary (``cv.json``) of the folds' held-out scores."""
    from insectml.stats import expected_calibration_error

    per_fold = [_fold_means(p) for p in parts]
    summary = {
        "unit": "class",
        "k": plan["k"],
        "fold_seed": plan["fold_seed"],
        "reason": plan["reason"],
        "rule": CLASS_RULE,
        "folds": [
            {"fold": f, "classes": int(len(p["classes"])), "queries": int(len(p["truth"])), **per_fold[f]}
            for f, p in enumerate(parts)
        ],
        **{metric: _across_folds(per_fold, metric) for metric in EPISODE_SHOTS},
    }
    summary["verdict"] = _verdict(per_fold, summary)
    cosines, truth = _joined_cosines(parts)
    temperature = fit_cosine_temperature(cosines, truth)
    known = np.concatenate([p["open_known"] for p in parts])
    unknown = np.concatenate([p["open_unknown"] for p in parts])
    return summary | {
        "temperature": round(temperature, 6),
        "n_queries": int(len(truth)),
        # in-sample: on the queries the temperature was fitted on
        "ece_fitted": round(expected_calibration_error(probabilities(cosines, temperature), truth), 6),
        "threshold": calibrate_threshold(known, unknown),
    }


def cross_validate(refit: Path, fold_dirs: list[Path], out: Path) -> dict:
    """Write ``out``: the refit model folder calibrated on its folds' held-out scores (the
    temperature and the open-set threshold in config.json), with ``cv.json`` and
    ``reliability_cv.png``; returns the CV summary."""
    from insectml import stats

    config = read_json(refit / "config.json", "model config")
    if task_rows(refit).get("role") != "refit":
        raise InputFileError(refit, "is not a refit (trained with --folds and without --fold)")
    parts, plan = load_heldout(fold_dirs)
    summary = summarise(parts, plan)
    fitted_on = f"held-out folds ({plan['k']} folds of classes, nearest prototype)"

    out = Path(out)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged = Path(tmp) / "model"
        shutil.copytree(refit, staged)
        cosines, truth = _joined_cosines(parts)
        t = summary["temperature"]
        stats.plot_reliability(
            {f"T = {t:.3f} (ECE {summary['ece_fitted']:.3f}, in-sample)": (probabilities(cosines, t), truth)},
            staged / "reliability_cv.png",
            f"held-out classes, nearest prototype ({plan['k']} folds)",
        )
        config |= {
            "temperature": t,
            "temperature_fitted_on": fitted_on,
            "threshold": summary["threshold"],
            "threshold_fitted_on": f"held-out folds ({plan['k']} folds of classes, open set)",
        }
        write_json_atomic(staged / "config.json", config)
        lineage = read_json(staged / "lineage.json", "lineage")
        lineage["cv"] = {k: summary[k] for k in ("unit", "k", "fold_seed", "reason", "rule")}
        write_json_atomic(staged / "lineage.json", lineage)
        write_json_atomic(staged / CV_JSON, summary)
        if out.exists():
            raise InputFileError(out, "exists; give a new output folder")
        staged.rename(out)
    return summary
