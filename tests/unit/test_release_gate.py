"""The release quality gate and version bumps (GTO's name@vX.Y.Z)."""

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
