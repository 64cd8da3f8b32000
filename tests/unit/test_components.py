"""`insectml modules`: components of a small library copied into a project, recorded in
modules.json, checked and updated; the project's schema built from the library's groups."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from insectml.errors import UserError
from insectml.project.components import Library, Project, check, install


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def library(tmp_path) -> Path:
    root = tmp_path / "library"
    write(root / "lib/insectml/__init__.py", '__version__ = "1.2.3"\n')
    write(root / "modules/bee/train/main.nf", "process BEE_TRAIN {}\n")
    write(root / "modules/bee/validate/main.nf", "process BEE_VALIDATE {}\n")
    write(root / "modules/ant/train/main.nf", "process ANT_TRAIN {}\n")
    write(
        root / "workflows/bee.nf",
        "include { BEE_VALIDATE } from '../modules/bee/validate/main'\n"
        "include { BEE_TRAIN    } from '../modules/bee/train/main'\nworkflow BEE {}\n",
    )
    write(root / "conf/bee/params.config", "params { bee_epochs = 2 }\n")
    write(root / "conf/sweeps/bee_grid.yaml", "task: bee\n")
    write(root / "conf/base.config", "process {}\n")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "d",
        "$defs": {
            "general": {"properties": {"task": {"type": "string", "x-choices": ["bee", "ant"]}}},
            "cluster": {"properties": {"gpus": {"type": "integer"}}},
            "bee": {"properties": {"bee_epochs": {"type": "integer"}}},
            "ant": {"properties": {"ant_epochs": {"type": "integer"}}},
        },
    }
    write(root / "nextflow_schema.json", json.dumps(schema))
    return root


@pytest.fixture
def project(tmp_path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    return root


def test_a_workflow_brings_its_modules_config_and_sweeps(library, project):
    changed = install(Library(library), Project(project), "bee")
    assert changed == ["bee/validate", "bee/train", "bee"]
    assert (project / "conf/bee/params.config").is_file() and (project / "conf/sweeps/bee_grid.yaml").is_file()
    assert not (project / "modules/ant").exists()
    entry = json.loads((project / "modules.json").read_text())["components"]["bee/train"]
    assert entry["version"] == "1.2.3" and set(entry["files"]) == {"modules/bee/train/main.nf"}


def test_the_project_schema_has_only_the_installed_groups_and_keeps_its_own(library, project):
    write(project / "nextflow_schema.json", json.dumps({"$defs": {"mine": {"properties": {"x": {}}}}}))
    install(Library(library), Project(project), "base")
    install(Library(library), Project(project), "bee")
    schema = json.loads((project / "nextflow_schema.json").read_text())
    assert list(schema["$defs"]) == ["general", "cluster", "bee", "mine"]
    assert schema["$defs"]["general"]["properties"]["task"]["x-choices"] == ["bee"]


def test_check_tells_edited_from_outdated(library, project):
    install(Library(library), Project(project), "bee")
    (project / "modules/bee/train/main.nf").write_text("process BEE_TRAIN { /* mine */ }\n")
    (library / "modules/bee/validate/main.nf").write_text("process BEE_VALIDATE { /* v2 */ }\n")
    states = {s.name: s.state for s in check(Library(library), Project(project))}
    assert states == {"bee": "ok", "bee/train": "edited", "bee/validate": "outdated"}


def test_update_refuses_over_local_edits_unless_forced(library, project):
    install(Library(library), Project(project), "bee")
    (project / "modules/bee/train/main.nf").write_text("mine\n")
    (library / "modules/bee/train/main.nf").write_text("process BEE_TRAIN { /* v2 */ }\n")
    with pytest.raises(UserError, match="edited in the project"):
        install(Library(library), Project(project), "bee/train", update=True)
    assert install(Library(library), Project(project), "bee/train", update=True, force=True) == ["bee/train"]
    assert "v2" in (project / "modules/bee/train/main.nf").read_text()
    assert {s.state for s in check(Library(library), Project(project))} == {"ok"}


def test_install_refuses_to_overwrite_a_different_project_file(library, project):
    write(project / "modules/bee/train/main.nf", "the project's own\n")
    with pytest.raises(UserError, match="differs from the library"):
        install(Library(library), Project(project), "bee/train")
    assert (project / "modules/bee/train/main.nf").read_text() == "the project's own\n"


def test_cli_unknown_component_is_one_line(run_cli, library, project):
    done = run_cli("modules", "install", "wasp", "--library", library, "--project", project)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "wasp: no such component" in done.stderr
    assert not (project / "modules.json").exists()


def test_a_refused_install_copies_nothing(library, project):
    write(project / "conf/bee/params.config", "params { bee_epochs = 9 }\n")  # the project's own
    with pytest.raises(UserError, match="differs from the library"):
        install(Library(library), Project(project), "bee")
    assert not (project / "modules").exists() and not (project / "modules.json").exists()


def test_a_git_library_at_a_tag(library, project):
    import subprocess

    from insectml.project.components import open_library

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(library), *args], check=True, capture_output=True)

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "v1")
    git("tag", "v1.2.3")
    (library / "modules/bee/train/main.nf").write_text("process BEE_TRAIN { /* later */ }\n")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qam", "later")

    tagged = open_library(str(library), ref="v1.2.3")
    install(tagged, Project(project), "bee/train")
    assert (project / "modules/bee/train/main.nf").read_text() == "process BEE_TRAIN {}\n"
    assert json.loads((project / "modules.json").read_text())["library"]["source"] == f"{library}@v1.2.3"
