"""What a release is made of, read from a family's published results folder.

``results/<family>/`` holds everything: the archive served by MMS, the evaluation of the
model it contains, and that model's lineage. Each family names its headline metrics (the
first one decides minor vs patch releases) and its label set (a changed label set is a
major release).
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
    if family == "fewshot":
        flat["episodes_5way_1shot"] = metrics["episodes_5way_1shot"]["mean"]
        flat["open_set_auroc"] = metrics["open_set"]["auroc"]
        labels = _json(evaluation / "gallery" / "gallery.json", "gallery").get("classes", [])
    else:
        labels = json.loads((model_dir / "labels.json").read_text()) if (model_dir / "labels.json").is_file() else []
    names = FAMILIES[family].headline
    headline = {k: float(flat[k]) for k in names if flat.get(k) is not None}
    if names[0] not in headline:
        raise InputFileError(evaluation / "metrics.json", f"no {names[0]} (the release's headline metric)")
    plots = sorted(evaluation.glob("*.png"))
    return Candidate(family, results, archive, model_dir, lineage, metrics, headline, sorted(labels), plots)
