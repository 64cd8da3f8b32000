"""The Jenkinsfile holds no logic: every `sh` step is one `make` target that exists, and no
build parameter is pasted into a command by Groovy or reaches make unchecked."""

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


def stage_bodies(repo_root) -> dict[str, str]:
    """Each stage's text, from its `stage('…')` to the next stage or the `post` block."""
    text = (repo_root / "Jenkinsfile").read_text()
    text = text[: text.index("\n    post {")]
    parts = re.split(r"stage\('([^']+)'\)", text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def parameter_names(repo_root) -> list[str]:
    text = (repo_root / "Jenkinsfile").read_text()
    return re.findall(r"(?:string|booleanParam)\(name: '([A-Z_]+)'", text)


def test_no_sh_step_is_interpolated_by_groovy(repo_root):
    # Groovy pastes values into double-quoted (GString) and slashy strings only: a build
    # parameter holding `"; rm -rf ~; "` would run as a command next to the credentials.
    code = re.sub(r"(?m)^\s*//.*$", "", (repo_root / "Jenkinsfile").read_text())
    arguments = re.findall(r"(?<![\w./-])sh[\s(]\s*(?:script\s*:\s*)?(\S)", code)
    assert len(arguments) >= 8
    assert set(arguments) == {"'"}, "an sh step whose command is not a single-quoted string"


def test_stages_that_pass_parameters_to_make_check_them_first(repo_root):
    names = parameter_names(repo_root)
    assert {"TASK", "MMS", "MMS_STORE"} <= set(names)
    passing = {}
    for stage, body in stage_bodies(repo_root).items():
        steps = [a or b for a, b in re.findall(r"""\bsh\s+(?:'([^']*)'|"([^"]*)")""", body)]
        if any(re.search(rf"\${name}\b", step) for step in steps for name in names):
            check, first_sh = body.find("requirePlainParameters()"), re.search(r"\bsh\s", body).start()
            passing[stage] = 0 <= check < first_sh
    assert passing == {"Train": True, "Release": True, "Deploy": True}


def plain_word(repo_root) -> re.Pattern:
    """The pattern requirePlainParameters() holds every parameter to (a Groovy slashy string)."""
    text = (repo_root / "Jenkinsfile").read_text()
    return re.compile(re.search(r"==~ /(.+?)/\)", text).group(1))


def test_parameter_check_accepts_the_defaults_and_a_tag(repo_root):
    text = (repo_root / "Jenkinsfile").read_text()
    defaults = re.findall(r"(?:string|booleanParam)\(name: '[A-Z_]+', defaultValue: '?([^',]*)'?,", text)
    assert len(defaults) == len(parameter_names(repo_root))
    for value in [*defaults, "wingbeat@v1.2.0", "s3://bucket/insectml/store", "gpu,cpu"]:
        assert plain_word(repo_root).fullmatch(value), value


def test_parameter_check_rejects_shell_and_make_syntax(repo_root):
    hostile = ['"; rm -rf ~; "', "x; id", "$(shell id)", "`id`", "a b", "x|sh", "x&", "x'y", "x\ny", "$HOME"]
    assert not [value for value in hostile if plain_word(repo_root).fullmatch(value)]
