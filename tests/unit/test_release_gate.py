"""The release quality gate and version bumps (GTO's name@vX.Y.Z), the baseline verdict
it enforces, and the model card's intervals, verdict and selection."""

import json
from pathlib import Path

from insectml.release.candidate import load_candidate
from insectml.release.card import write_card
from insectml.release.gate import check, next_version

PREVIOUS = {"headline": {"macro_f1": 0.80, "accuracy": 0.85}, "labels": ["a", "b"]}


def test_first_release_is_major_v1():
    gate = check({"macro_f1": 0.5}, ["a"], None)
    assert gate.passed and gate.bump == "major" and next_version(None, gate.bump) == "v1.0.0"


def test_a_better_first_headline_is_minor():
    gate = check({"macro_f1": 0.81, "accuracy": 0.85}, ["a", "b"], PREVIOUS)
    assert gate.passed and gate.bump == "minor" and next_version("v1.2.3", gate.bump) == "v1.3.0"


def test_as_good_is_patch():
    gate = check({"macro_f1": 0.80, "accuracy": 0.86}, ["b", "a"], PREVIOUS)
    assert gate.passed and gate.bump == "patch" and next_version("v1.2.3", gate.bump) == "v1.2.4"


def test_worse_beyond_tolerance_fails_within_passes():
    assert not check({"macro_f1": 0.79, "accuracy": 0.85}, ["a", "b"], PREVIOUS).passed
    assert check({"macro_f1": 0.79, "accuracy": 0.85}, ["a", "b"], PREVIOUS, tolerance=0.02).passed


def test_a_new_label_set_needs_major():
    refused = check({"macro_f1": 0.9, "accuracy": 0.9}, ["a", "b", "c"], PREVIOUS)
    assert not refused.passed and "--major" in refused.problems[0]
    allowed = check({"macro_f1": 0.9, "accuracy": 0.9}, ["a", "b", "c"], PREVIOUS, major=True)
    assert allowed.passed and next_version("v1.2.3", allowed.bump) == "v2.0.0"


# the baseline verdict, the intervals and the model's selection in the gate and the card

NOT_BETTER = {
    "beats_baseline": False,
    "difference": 0.041,
    "low": 0.0,
    "high": 0.146,
    "sentence": "features does NOT clearly beat the baseline on test macro-F1: +0.041 [0.000, 0.146].",
}
CV = {"k": 5, "fold_seed": 7, "reason": "--cv_folds 5", "rule": "highest out-of-fold macro-F1", "macro_f1": {}}


def test_not_beating_the_baseline_fails_with_one_problem_naming_the_override():
    gate = check({"macro_f1": 0.81, "accuracy": 0.86}, ["a", "b"], PREVIOUS, verdict=NOT_BETTER)
    assert not gate.passed and len(gate.problems) == 1
    assert gate.problems[0].startswith("the candidate does not beat its baseline: features does NOT")
    assert "+0.041 [0.000, 0.146]" in gate.problems[0] and "--allow-below-baseline" in gate.problems[0]


def test_not_beating_the_baseline_fails_a_first_release_too():
    assert not check({"macro_f1": 0.5}, ["a"], None, verdict=NOT_BETTER).passed


def test_a_verdict_without_a_sentence_shows_its_difference_and_interval():
    verdict = {"metric": "episodes_5way_5shot", "baseline": "colour_histogram", "beats_baseline": False}
    verdict |= {"difference": -0.01, "low": -0.03, "high": 0.02}
    gate = check({"top1": 0.5}, ["a"], None, verdict=verdict)
    assert "episodes_5way_5shot against colour_histogram: difference -0.0100 [-0.0300, 0.0200]" in gate.problems[0]


def test_allow_below_baseline_passes_and_records_it():
    gate = check({"macro_f1": 0.81}, ["a", "b"], PREVIOUS, verdict=NOT_BETTER, allow_below_baseline=True)
    assert gate.passed and gate.below_baseline_allowed and gate.bump == "minor"


def test_allow_below_baseline_records_nothing_when_the_candidate_beats_it():
    beats = {**NOT_BETTER, "beats_baseline": True, "low": 0.01}
    assert not check({"macro_f1": 0.5}, ["a"], None, verdict=beats, allow_below_baseline=True).below_baseline_allowed


def test_nothing_compared_passes():
    assert check({"macro_f1": 0.5}, ["a"], None, verdict=None).passed
    assert check({"macro_f1": 0.5}, ["a"], None, verdict={"beats_baseline": None, "sentence": "No baseline"}).passed


def test_the_other_problems_come_first():
    gate = check({"macro_f1": 0.70, "accuracy": 0.85}, ["a", "b"], PREVIOUS, verdict=NOT_BETTER)
    assert len(gate.problems) == 2 and gate.problems[0].startswith("macro_f1 0.7000 is below")


def wingbeat_results(root: Path, verdict: dict, cv: dict | None = CV) -> Path:
    """A minimal wingbeat results folder: the comparison, the chosen model, its evaluation, an archive."""
    results = root / "wingbeat"
    for folder in ("comparison", "models/features", "evaluation/features", "archive"):
        (results / folder).mkdir(parents=True)
    (results / "comparison" / "best.txt").write_text("features\n")
    comparison = {"best": "features", "selected_by": "cv_macro_f1", "verdict": verdict, "baseline": "baseline"}
    (results / "comparison" / "comparison.json").write_text(json.dumps(comparison))
    (results / "models" / "features" / "lineage.json").write_text(json.dumps({"seed": 42}))
    (results / "models" / "features" / "labels.json").write_text(json.dumps(["b", "a"]))
    metrics = {"macro_f1": 0.8123, "macro_f1_low": 0.75, "macro_f1_high": 0.86, "accuracy": 0.83, "cv": cv}
    (results / "evaluation" / "features" / "metrics.json").write_text(json.dumps(metrics))
    (results / "archive" / "wingbeat.mar").write_bytes(b"")
    return results


def test_a_wingbeat_candidate_carries_its_verdict_intervals_and_selection(tmp_path):
    c = load_candidate(wingbeat_results(tmp_path, NOT_BETTER))
    assert c.verdict == NOT_BETTER
    assert c.intervals == {"macro_f1": {"low": 0.75, "high": 0.86}}  # accuracy has no interval here
    assert c.selection == {"selected_by": "cv_macro_f1", "model": "features", "cv": CV}


def released_card(tmp_path, verdict: dict, allow: bool) -> tuple[dict, str]:
    c = load_candidate(wingbeat_results(tmp_path, verdict))
    gate = check(c.headline, c.labels, None, verdict=c.verdict, allow_below_baseline=allow)
    json_path, md_path = write_card(c, "wingbeat", "v1.0.0", gate, None, tmp_path / "card")
    return json.loads(json_path.read_text()), md_path.read_text()


def test_the_card_records_a_release_below_its_baseline(tmp_path):
    card, md = released_card(tmp_path, NOT_BETTER, allow=True)
    assert card["below_baseline_allowed"] and card["verdict_sentence"] == NOT_BETTER["sentence"]
    assert "`--allow-below-baseline`: used" in md and NOT_BETTER["sentence"] in md


def test_the_card_shows_intervals(tmp_path):
    card, md = released_card(tmp_path, NOT_BETTER, allow=True)
    assert card["intervals"]["macro_f1"] == {"low": 0.75, "high": 0.86}
    assert "| macro_f1 | — | 0.8123 | [0.7500, 0.8600] |" in md and "| accuracy | — | 0.8300 | — |" in md


def test_the_card_says_how_the_model_was_chosen(tmp_path):
    card, md = released_card(tmp_path, NOT_BETTER, allow=True)
    assert card["selection"]["cv"]["k"] == 5
    assert "out-of-fold (cross-validation) macro-F1" in md and "5 folds by recording group, fold seed 7" in md


def test_the_card_says_when_no_baseline_was_compared(tmp_path):
    card, md = released_card(tmp_path, None, allow=False)
    assert card["verdict_sentence"] == "no baseline compared" and "- beats its baseline: not compared" in md
