"""The Jenkinsfile holds no logic: every `sh` step is one `make` target that exists."""

import re


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
