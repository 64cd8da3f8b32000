"""The Jenkinsfile holds no logic: every `sh` step is one `make` target that exists."""

import re
import subprocess
from pathlib import Path


def groovy_lint(repo_root: Path, folder: Path) -> subprocess.CompletedProcess:
    """npm-groovy-lint on ``folder``/Jenkinsfile, as `make lint` runs it (installed by make
    setup from env/package-lock.json)."""
    node = subprocess.run(["bash", str(repo_root / "env/setup.sh"), "--node-dir"], capture_output=True, text=True)
    lint = Path(node.stdout.strip()) / "node_modules" / ".bin" / "npm-groovy-lint"
    assert lint.is_file(), f"{lint} is missing: run 'make setup'"
    return subprocess.run(
        [str(lint), "--noserver", "--failon", "error", "--output", "txt", "Jenkinsfile"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )


def make_targets(repo_root) -> set[str]:
    text = (repo_root / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z0-9-]*):", text, flags=re.MULTILINE))


def sh_steps(repo_root) -> list[str]:
    text = (repo_root / "Jenkinsfile").read_text()
    return re.findall(r"""\bsh\s+(?:'([^']*)'|"([^"]*)")""", text)


def test_every_sh_step_is_an_existing_make_target(repo_root):
    targets = make_targets(repo_root)
    steps = [a or b for a, b in sh_steps(repo_root)]
    assert len(steps) >= 8
    for step in steps:
        words = step.split()
        assert words[0] == "make", f"Jenkinsfile: `sh '{step}'` is not a make call"
        named = [w for w in words[1:] if "=" not in w]
        assert len(named) == 1 and named[0] in targets, f"Jenkinsfile: `{step}` names no existing make target"


def test_stages_in_order(repo_root):
    stages = re.findall(r"stage\('([^']+)'\)", (repo_root / "Jenkinsfile").read_text())
    assert stages == ["Setup", "Lint", "Unit tests", "Pipeline test", "Train", "Release", "Deploy"]


def test_no_credentials_in_the_repository(repo_root):
    text = (repo_root / "Jenkinsfile").read_text()
    assert "withCredentials" in text
    assert not re.search(r"(?i)(password|secret|token)\s*=\s*['\"][^'\"]+['\"]", text)


def test_jenkinsfile_passes_npm_groovy_lint(repo_root):
    done = groovy_lint(repo_root, repo_root)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
