"""Jenkinsfile.monitor, the scheduled monitoring job: lint-clean, one make target per sh
step, parameters checked before they reach make, drift (make monitor's DRIFT file) makes
the build unstable."""

import re
import shutil

from tests.unit.test_jenkinsfile import groovy_lint, make_targets


def text(repo_root) -> str:
    return (repo_root / "Jenkinsfile.monitor").read_text()


def test_monitor_job_passes_npm_groovy_lint(repo_root, tmp_path):
    shutil.copy(repo_root / "Jenkinsfile.monitor", tmp_path / "Jenkinsfile")
    done = groovy_lint(repo_root, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_monitor_job_runs_on_a_schedule_and_only_make_targets(repo_root):
    steps = re.findall(r"\bsh\s+'([^']*)'", text(repo_root))
    assert "cron(" in text(repo_root)
    assert [s.split()[1] for s in steps] == ["setup", "monitor"] and {"setup", "monitor"} <= make_targets(repo_root)


def test_monitor_job_checks_parameters_before_make_sees_them(repo_root):
    body = text(repo_root)[text(repo_root).index("stage('Monitor')") :]
    assert body.index("requirePlainParameters()") < body.index("sh 'make monitor")


def test_drift_marks_the_build_unstable(repo_root):
    assert "fileExists('monitor/DRIFT')" in text(repo_root) and "unstable(" in text(repo_root)
