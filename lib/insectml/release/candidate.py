"""What a release is made of, read from a family's published results folder.

``results/<family>/`` holds everything: the archive served by MMS, the evaluation of the
model it contains, and that model's lineage. Each family names its headline metrics (the
first one decides minor vs patch releases) and its label set (a changed label set is a
major release). The evaluation also says whether the model beats its baseline (the
verdict the gate checks) and, for wingbeat, how the model was chosen among several.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from insectml.errors import InputFileError
from insectml.families import FAMILIES


@dataclass
class Candidate:
    family: str
    results: Path
    archive: Path
    model_dir: Path
    lineage: dict
    metrics: dict
    headline: dict[str, float]
    labels: list[str]
    plots: list[Path] = field(default_factory=list)
    # the evaluation's verdict against its baseline (``beats_baseline``, ``difference``,
    # ``low``, ``high``, maybe ``sentence``); None when the family compares with none
    verdict: dict | None = None
    # how the model was chosen: wingbeat's ``selected_by``, ``model``, the CV summary
    # (``cv``) and the sweep configuration when any; {} for a family that trains one model
    selection: dict = field(default_factory=dict)
    intervals: dict[str, dict[str, float]] = field(default_factory=dict)  # headline → {low, high}, 95 %


def _json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"{what} is not valid JSON ({exc.msg})") from None


def _one_archive(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        what = "no archive" if not found else f"{len(found)} archives ({', '.join(p.name for p in found)})"
        raise InputFileError(folder, f"{what} matching {pattern}; a release needs exactly one")
    return found[0]


def _wingbeat_choice(results: Path, best: str, metrics: dict) -> tuple[dict | None, dict]:
    """The comparison's verdict (None from an insectml before verdicts) and how ``best`` was chosen."""
    comparison = _json(results / "comparison" / "comparison.json", "model comparison")
    selection = {"selected_by": comparison.get("selected_by"), "model": best}
    if metrics.get("cv"):
        selection["cv"] = metrics["cv"]
    if (results / "sweep" / "best.txt").is_file():
        selection["sweep_config"] = (results / "sweep" / "best.txt").read_text().strip()
    return comparison.get("verdict"), selection


def _intervals(flat: dict, headline: dict[str, float]) -> dict[str, dict[str, float]]:
    """The 95 % interval of each headline metric whose evaluation gives ``<metric>_low/_high``."""
    return {
        k: {"low": float(flat[f"{k}_low"]), "high": float(flat[f"{k}_high"])}
        for k in headline
        if flat.get(f"{k}_low") is not None and flat.get(f"{k}_high") is not None
    }


def load_candidate(results: Path) -> Candidate:
    """The release candidate in ``results`` (a family folder such as ``results/wingbeat``)."""
    if not results.is_dir():
        raise InputFileError(results, "folder not found (give a family's results folder, e.g. results/wingbeat)")
    if (results / "comparison" / "best.txt").is_file():
        family = "wingbeat"
        best = (results / "comparison" / "best.txt").read_text().strip()
        model_dir = results / "models" / best
        if (results / "sweep" / "best.txt").is_file():  # a sweep publishes models/<model>_<config>
            model_dir = results / "models" / f"{best}_{(results / 'sweep' / 'best.txt').read_text().strip()}"
        evaluation = results / "evaluation" / best
        archive = _one_archive(results / "archive", "*.mar")
    elif (results / "models" / "target").is_dir() or (results / "models" / "generic").is_dir():
        # the target-species detector; the generic one when the target stage was skipped
        family = "detector"
        stage = "target" if (results / "models" / "target").is_dir() else "generic"
        model_dir = results / "models" / stage
        evaluation = results / "evaluation" / stage
        archive = _one_archive(results / "archive", f"*_{stage}.mar")
    elif (results / "evaluation" / "gallery").is_dir():
        family = "fewshot"
        model_dir = results / "model"
        evaluation = results / "evaluation"
        archive = _one_archive(results / "archive", "*.mar")
    else:
        raise InputFileError(results, "not a wingbeat, detector or few-shot results folder")
    lineage_path = model_dir / "lineage.json"
    if not lineage_path.is_file():
        raise InputFileError(lineage_path, "no lineage: the model cannot be released without it")
    lineage = _json(lineage_path, "lineage")
    metrics = _json(evaluation / "metrics.json", "evaluation metrics")
    flat = dict(metrics)
    verdict, selection = None, {}
    if family == "wingbeat":
        verdict, selection = _wingbeat_choice(results, best, metrics)
    if family == "fewshot":
        verdict = metrics.get("verdict")
        episodes = metrics["episodes_5way_1shot"]
        flat["episodes_5way_1shot"] = episodes["mean"]
        if episodes["mean"] is not None and episodes.get("ci95") is not None:  # mean ± 1.96 σ/√n
            flat["episodes_5way_1shot_low"] = episodes["mean"] - episodes["ci95"]
            flat["episodes_5way_1shot_high"] = episodes["mean"] + episodes["ci95"]
        flat["open_set_auroc"] = metrics["open_set"]["auroc"]
        labels = _json(evaluation / "gallery" / "gallery.json", "gallery").get("classes", [])
    else:
        labels = json.loads((model_dir / "labels.json").read_text()) if (model_dir / "labels.json").is_file() else []
    names = FAMILIES[family].headline
    headline = {k: float(flat[k]) for k in names if flat.get(k) is not None}
    if names[0] not in headline:
        raise InputFileError(evaluation / "metrics.json", f"no {names[0]} (the release's headline metric)")
    plots = sorted(evaluation.glob("*.png"))
    return Candidate(
        family,
        results,
        archive,
        model_dir,
        lineage,
        metrics,
        headline,
        sorted(labels),
        plots,
        verdict=verdict,
        selection=selection,
        intervals=_intervals(flat, headline),
    )
