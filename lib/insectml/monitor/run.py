"""``insectml monitor``: read the log, find the reference, run every test both sides allow,
write ``monitor.json`` and ``report.html``."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from insectml.errors import ConfigError, InputFileError
from insectml.fileio import write_json_atomic
from insectml.monitor.drift import (
    Result,
    Thresholds,
    categorical_drift,
    classifier_drift,
    feature_drift,
    json_ready,
    ks_drift,
    mmd_drift,
    proportion_drift,
)
from insectml.monitor.logs import Sample, finite_rows, keep_model, read_log, served_model, served_sample
from insectml.monitor.reference import load_reference, results_family
from insectml.monitor.report import write_monitor_report

log = logging.getLogger(__name__)

MONITOR_JSON = "monitor.json"
REPORT = "report.html"
MAX_BOXES = 5  # boxes per image: 0 … 4, and "5+"


@dataclass
class Outcome:
    tests: list[Result]
    features: list[dict]  # per-feature rows (wingbeat), most drifted first
    notes: list[str]
    json_path: Path
    report_path: Path

    @property
    def flagged(self) -> list[Result]:
        return [t for t in self.tests if t.flagged]


def _box_bins(counts: np.ndarray) -> list[str]:
    return [str(c) if c < MAX_BOXES else f"{MAX_BOXES}+" for c in counts]


def _enough(x) -> bool:
    return x is not None and len(x) >= 2


def compare(
    family: str, reference: Sample, served: Sample, th: Thresholds, seed: int = 0
) -> tuple[list[Result], list[dict], list[str]]:
    """Every test both samples have the data for: the tests, the per-feature rows
    (wingbeat), and a note for each test that could not run, saying why."""
    tests: list[Result] = []
    features: list[dict] = []
    notes: list[str] = []

    def missing(what: str, ref_has: bool) -> None:
        notes.append(
            f"{what} not tested: " + ("the log does not have it" if ref_has else "the reference does not have it")
        )

    if family == "wingbeat":
        # the server computes features for a model that does not use them only within its
        # summary share of serving time: the other records carry none
        with_features = 0 if served.features is None else int(np.isfinite(served.features).any(axis=1).sum())
        if reference.features is None or not with_features:
            missing("feature drift", reference.features is not None)
        elif with_features < th.min_records:
            notes.append(
                f"feature drift not tested: {with_features} of the {served.n} records carry features, fewer than "
                f"min_records ({th.min_records})"
            )
        else:
            summary, features = feature_drift(reference.features, served.features, reference.feature_names, th)
            tests.append(summary)

    ref_scores, cur_scores = finite_rows(reference.top_score), finite_rows(served.top_score)
    if _enough(ref_scores) and _enough(cur_scores):
        tests.append(ks_drift("confidence", ref_scores, cur_scores, th))
    else:
        missing("confidence drift", _enough(ref_scores))

    if family == "fewshot":
        if _enough(reference.unknown) and _enough(served.unknown):
            tests.append(proportion_drift("unknown_rate", reference.unknown, served.unknown, th))
        else:
            missing("unknown-rate drift", _enough(reference.unknown))

    if reference.predicted and served.predicted:
        tests.append(categorical_drift("class_mix", reference.predicted, served.predicted, th))
    else:
        missing("class-mix drift", bool(reference.predicted))

    if family == "detector":
        if _enough(reference.box_count) and _enough(served.box_count):
            ref_bins, cur_bins = _box_bins(reference.box_count), _box_bins(served.box_count)
            tests.append(categorical_drift("boxes_per_image", ref_bins, cur_bins, th))
        else:
            missing("boxes-per-image drift", _enough(reference.box_count))

    if family in ("fewshot", "detector"):
        ref_emb, cur_emb = finite_rows(reference.embedding), finite_rows(served.embedding)
        if not (_enough(ref_emb) and _enough(cur_emb)):
            missing("embedding drift", _enough(ref_emb))
        elif len(cur_emb) < th.min_records:
            notes.append(
                f"embedding drift not tested: {len(cur_emb)} of the {served.n} records carry an embedding, fewer "
                f"than min_records ({th.min_records})"
            )
        elif ref_emb.shape[1] != cur_emb.shape[1]:
            notes.append(
                f"embedding drift not tested: the log's embeddings have {cur_emb.shape[1]} dimensions, the "
                f"reference's {ref_emb.shape[1]} (another model)"
            )
        else:
            tests.append(mmd_drift("embedding_mmd", ref_emb, cur_emb, th, seed))
            tests.append(classifier_drift("embedding_classifier", ref_emb, cur_emb, th, seed))
    return tests, features, notes


def monitor(
    log_dir: Path,
    reference_dir: Path,
    out_dir: Path,
    thresholds: Thresholds | None = None,
    family: str | None = None,
    model: str | None = None,
    seed: int = 0,
) -> Outcome:
    """Compare the traffic in the prediction log ``log_dir`` with the reference of the
    results folder ``reference_dir``; write ``out_dir/monitor.json`` and ``report.html``."""
    thresholds = thresholds or Thresholds()
    records, skipped = read_log(log_dir)
    found = results_family(reference_dir)
    if family and family != found:
        raise ConfigError(f"--family {family}, but {reference_dir} holds the results of the {found} family")
    family = found
    families = Counter(r["family"] for r in records)
    records, notes = keep_model(records, family)
    if len(records) < thresholds.min_records:
        held = ", ".join(f"{n} {f}" for f, n in sorted(families.items())) or "nothing"
        raise InputFileError(
            log_dir,
            f"{len(records)} usable {family} record(s) (the log holds {held}); the tests need at least "
            f"{thresholds.min_records} (--thresholds min_records=N)",
        )
    served_id = served_model(records)
    ref = load_reference(reference_dir, family, model, served_id, seed)
    served = served_sample(records, family, ref.sample.feature_names)
    tests, features, test_notes = compare(family, ref.sample, served, thresholds, seed)
    if skipped:
        notes.append(f"skipped {skipped} line(s) of the log that are not prediction records")
    notes = [*ref.notes, *notes, *test_notes]
    if not tests:
        raise InputFileError(log_dir, "no test could run: " + "; ".join(test_notes))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    times = [str(r["time"]) for r in records if r.get("time")]
    summary = {
        "family": family,
        "model": served_id[0],
        "version": served_id[1],
        "log": str(log_dir),
        "reference": str(reference_dir),
        "reference_model": ref.model,
        "records": len(records),
        "first": min(times, default=None),
        "last": max(times, default=None),
        "thresholds": asdict(thresholds),
        "flagged": any(t.flagged for t in tests),
        "tests": [t.to_json() for t in tests],
        "features": json_ready(features),
        "sources": ref.sources,
        "notes": notes,
    }
    json_path = write_json_atomic(out_dir / MONITOR_JSON, summary)
    report_path = write_monitor_report(out_dir / REPORT, summary, tests, features, ref, served, seed)
    return Outcome(tests, features, notes, json_path, report_path)
