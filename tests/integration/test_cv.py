"""Grouped cross-validation through Nextflow (-profile test, --cv_folds 3) on the hard
wingbeat demo: every model × fold its own task, models chosen by their out-of-fold
macro-F1, refits calibrated on them, the verdict against the baseline first in the report."""

from __future__ import annotations

import csv
import html
import json

import pytest

pytestmark = pytest.mark.integration

MODELS = ("features", "rocket", "gru", "baseline")


def trace_rows(results):
    newest = max((results.parent / "pipeline_info").glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
    with newest.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_every_model_and_fold_is_its_own_task(cv_run):
    tags = [r["tag"] for r in trace_rows(cv_run) if r["process"].endswith("WINGBEAT_TRAIN")]
    expected = {f"wingbeat:{m}:{role}" for m in MODELS for role in ("fold0", "fold1", "fold2", "refit")}
    assert sorted(tags) == sorted(expected)
    joined = [r["tag"] for r in trace_rows(cv_run) if r["process"].endswith("WINGBEAT_CV")]
    assert sorted(joined) == sorted(f"wingbeat:{m}" for m in MODELS)


def test_the_folds_plan_is_published_and_groups_by_session(cv_run):
    plan = json.loads((cv_run / "folds.json").read_text())
    assert plan["k"] == 3 and plan["seed"] == 42 and plan["reason"] == "--cv_folds 3"
    manifest = [json.loads(line) for line in (cv_run / "data" / "manifest.jsonl").read_text().splitlines()]
    pool = {r["group"] for r in manifest if r["split"] != "test"}
    assert set(plan["group_fold"]) == pool and all(g.startswith("s") for g in pool)


def test_models_are_chosen_by_cross_validation_and_the_verdict_comes_first(cv_run):
    comparison = json.loads((cv_run / "comparison" / "comparison.json").read_text())
    assert comparison["selected_by"] == "cv_macro_f1"
    rows = {r["model"]: r for r in comparison["models"]}
    assert set(rows) == set(MODELS)
    assert comparison["best"] == max(rows.values(), key=lambda r: r["cv_macro_f1"])["model"]
    for row in rows.values():
        assert row["cv_macro_f1_low"] <= row["cv_macro_f1"] <= row["cv_macro_f1_high"]
        assert row["macro_f1_low"] <= row["macro_f1"] <= row["macro_f1_high"]
    verdict = comparison["verdict"]
    report = (cv_run / "comparison" / "report.html").read_text()
    assert report.index('class="verdict"') < report.index("<table") and "(baseline)" in report
    assert verdict["beats_baseline"] in (True, False) and verdict["sentence"] in html.unescape(report)


def test_the_packaged_model_is_the_calibrated_refit_with_its_cv_in_lineage(cv_run):
    best = (cv_run / "comparison" / "best.txt").read_text().strip()
    model = cv_run / "models" / best
    config = json.loads((model / "config.json").read_text())
    lineage = json.loads((model / "lineage.json").read_text())
    cv = json.loads((model / "cv.json").read_text())
    assert config["temperature"] == cv["temperature"] and config["temperature_fitted_on"].endswith("(3 folds)")
    assert lineage["cv"]["k"] == 3 and lineage["cv"]["fold_seed"] == 42 and lineage["cv"]["rule"]
    assert lineage["params"]["rows"]["role"] == "refit"
    metrics = json.loads((cv_run / "evaluation" / best / "metrics.json").read_text())
    assert metrics["cv_macro_f1"] == cv["macro_f1"]["value"] and metrics["temperature"] == cv["temperature"]
    assert (cv_run / "archive" / "wingbeat.mar").is_file()
