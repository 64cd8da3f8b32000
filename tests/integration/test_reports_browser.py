"""Every report the pipeline writes, opened in a real headless chromium (Debian's package):
no script error, no console error, every image decodes, and each family's report carries
the sections issue #19 names. The pipeline runs are the shared session fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from insectml.report.browser import check_pages, find_chromium

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def chromium():
    if find_chromium() is None:
        pytest.fail("chromium is missing: 'make setup' installs Debian's chromium when run as root")


def reports(folder: Path) -> list[Path]:
    found = sorted(folder.rglob("report.html"))
    assert found, f"no report.html under {folder}"
    return found


def assert_clean(paths: list[Path]) -> list:
    checks = check_pages(paths)
    problems = {str(c.path): c.problems for c in checks if c.problems}
    assert not problems, problems
    assert all(c.n_images > 0 for c in checks), [str(c.path) for c in checks if not c.n_images]
    return checks


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_the_check_sees_a_broken_image_and_a_script_error(chromium, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(
        "<!doctype html><title>x</title><img alt='broken' src='data:image/png;base64,AAAA'><script>nope()</script>"
    )
    (check,) = check_pages([page])
    assert check.broken_images == ["broken"] and check.script_errors


def test_wingbeat_reports_open_cleanly(chromium, nf_test_run):
    cwd, _ = nf_test_run
    assert_clean(reports(cwd / "results" / "wingbeat"))


def test_wingbeat_evaluation_reports_show_explanations(nf_test_run):
    cwd, _ = nf_test_run
    evaluations = reports(cwd / "results" / "wingbeat" / "evaluation")
    assert all("Explanations" in text_of(p) for p in evaluations), evaluations


def test_detector_reports_open_cleanly(chromium, detector_run):
    assert_clean(reports(detector_run))


def test_detector_report_has_pr_curves_and_explanations(detector_run):
    text = "".join(text_of(p) for p in reports(detector_run))
    assert "precision" in text.lower() and "Explanations" in text


def test_fewshot_reports_open_cleanly(chromium, fewshot_run):
    assert_clean(reports(fewshot_run))


def test_fewshot_report_has_open_set_plots_and_explanations(fewshot_run):
    text = "".join(text_of(p) for p in reports(fewshot_run))
    assert "ROC" in text and "Explanations" in text


def test_cross_validated_reports_open_cleanly(chromium, cv_run, fewshot_cv_run):
    assert_clean(reports(cv_run) + reports(fewshot_cv_run))
