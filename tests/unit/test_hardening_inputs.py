"""Hardening (issue 18): paths from files stay inside their root, bad files are one line
and exit 2, model weights are checked against the sha256 recorded with them, the data
version is data.dvc's only for the data it tracks, and template answers stay strings."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

import pytest
from insectml.errors import InputFileError, UserError

# --- paths in a labels CSV must not leave the data folder ----------------------------


def test_wingbeat_labels_leading_outside_the_data_folder_are_all_listed_as_problems(tmp_path):
    from insectml.wingbeat.validate import ValidateConfig, list_candidates

    (tmp_path / "labels.csv").write_text(
        "path,species,event\n/etc/hostname,aedes,e1\n../outside.wav,aedes,e2\nrec/ok.wav,aedes,e3\n"
    )
    cfg = ValidateConfig(labels=tmp_path / "labels.csv", data_dir=tmp_path, out_dir=tmp_path / "out", classes=None)
    listing = list_candidates(cfg)
    problems = listing["problems"]
    assert len(problems) == 2 and "'/etc/hostname'" in problems[0] and "'../outside.wav'" in problems[1]


def test_fewshot_csv_paths_leading_outside_the_root_are_all_listed_as_problems(tmp_path):
    from insectml.fewshot.validate import FewshotValidateConfig, list_candidates

    (tmp_path / "labels.csv").write_text("path,label\n/etc/hostname,a\nimg/../../x.png,b\nimg/ok.png,c\n")
    cfg = FewshotValidateConfig(root=tmp_path, out_dir=tmp_path / "out", labels=tmp_path / "labels.csv")
    listing = list_candidates(cfg)
    assert len(listing["problems"]) == 2 and all("leads outside --root" in p for p in listing["problems"])


def test_fewshot_labels_file_not_found_is_one_line(tmp_path):
    from insectml.fewshot.validate import FewshotValidateConfig, list_candidates

    cfg = FewshotValidateConfig(root=tmp_path, out_dir=tmp_path / "out", labels=tmp_path / "nope.csv")
    with pytest.raises(InputFileError, match="labels file not found"):
        list_candidates(cfg)


# --- modules.json names files inside the project only ---------------------------------


def _modules_json(project: Path, files: dict) -> None:
    entry = {"kind": "module", "version": "1", "checksum": "x", "files": files, "requires": []}
    (project / "modules.json").write_text(json.dumps({"library": {}, "components": {"bee/train": entry}}))


@pytest.mark.parametrize("name", ["../victim.txt", "/tmp/victim.txt", "link/victim.txt"])
def test_modules_json_listing_a_file_outside_the_project_is_refused(tmp_path, name):
    from insectml.project.components import Project

    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (project / "link").symlink_to(outside)
    _modules_json(project, {name: "0" * 64})
    with pytest.raises(InputFileError, match="is not inside the project"):
        Project(project)


def test_modules_json_entry_without_files_is_one_line(tmp_path):
    from insectml.project.components import Project

    (tmp_path / "modules.json").write_text(json.dumps({"components": {"bee": {"kind": "module"}}}))
    with pytest.raises(InputFileError, match="no 'files' object"):
        Project(tmp_path)


# --- bad JSON, a missing key, non-UTF-8, a non-object --params, a pre-release tag -----


def assert_one_line_error(done, *fragments):
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert all(f in last for f in fragments), last


def test_sweep_select_with_a_plan_that_is_not_json_is_one_line(run_cli, tmp_path):
    (tmp_path / "plan.json").write_text("{not json")
    (tmp_path / "m").mkdir()
    done = run_cli(
        "sweep",
        "select",
        "--task",
        "wingbeat",
        "--plan",
        tmp_path / "plan.json",
        "--models",
        tmp_path / "m",
        "--ids",
        "c01",
    )
    assert_one_line_error(done, "plan.json", "not valid JSON")


def test_sweep_plan_with_params_that_are_not_an_object_is_one_line(run_cli, repo_root, tmp_path):
    (tmp_path / "s.yaml").write_text("task: wingbeat\nmodel: cnn\nparams:\n  wingbeat_lr: [0.001]\n")
    done = run_cli(
        "sweep",
        "plan",
        "--sweep",
        tmp_path / "s.yaml",
        "--schema",
        repo_root / "nextflow_schema.json",
        "--params",
        "[1]",
    )
    assert_one_line_error(done, "--params is not a JSON object")


def test_results_with_a_metrics_file_missing_a_key_is_one_line(run_cli, tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps({"accuracy": 0.5}))
    done = run_cli("results", "--outdir", tmp_path)
    assert_one_line_error(done, "metrics.json", "macro_f1")


def test_sweep_select_with_non_utf8_training_metrics_names_the_file(tmp_path):
    from insectml.sweep import select

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "train_metrics.json").write_bytes(b'{"val": "\xff\xfe"}')
    with pytest.raises(InputFileError, match="train_metrics.json: .*not UTF-8"):
        select("wingbeat", [tmp_path / "m"], ["c01"], [{"id": "c01", "params": {}}], tmp_path / "out")


def test_compare_with_a_model_config_without_its_model_is_one_line(tmp_path):
    from insectml.wingbeat.compare import compare

    model, evaluation = tmp_path / "model", tmp_path / "eval"
    model.mkdir()
    evaluation.mkdir()
    metrics = {"model": "features", "classes": ["a"], "per_class": {}, "confusion_matrix": [[1]], "macro_f1": 1.0}
    (evaluation / "metrics.json").write_text(json.dumps(metrics))
    (model / "config.json").write_text("{}")
    with pytest.raises(InputFileError, match="config.json: model config has no 'model'"):
        compare([model], [evaluation], tmp_path / "out")


def test_params_that_are_not_an_object_are_one_line(repo_root):
    from insectml.params import validate_params

    with pytest.raises(UserError, match="not a JSON object"):
        validate_params(repo_root / "nextflow_schema.json", '["--task", "wingbeat"]')


def test_a_pre_release_version_is_a_config_error_not_a_traceback():
    from insectml.errors import ConfigError
    from insectml.release.gate import next_version, semver

    assert semver("v1.2.3") == (1, 2, 3)
    with pytest.raises(ConfigError, match="pre-release"):
        next_version("v1.3.0-rc.1", "patch")


def test_a_wingbeat_model_config_that_is_not_json_is_one_line(tmp_path):
    from insectml.wingbeat.predict import load_predictor

    (tmp_path / "config.json").write_text("{")
    (tmp_path / "labels.json").write_text('["a", "b"]')
    with pytest.raises(InputFileError, match="config.json: model config is not valid JSON"):
        load_predictor(tmp_path)


# --- model weights are checked against the sha256 recorded when they were written ------


@pytest.fixture
def classical_model(tmp_path) -> Path:
    """A wingbeat model folder as 'train' writes it: a fitted estimator, then the JSON files."""
    import joblib
    import numpy as np
    from insectml.modeldir import write_model_dir
    from insectml.wingbeat.frontend import FrontendConfig
    from sklearn.linear_model import LogisticRegression

    out = tmp_path / "model"
    out.mkdir()
    joblib.dump(LogisticRegression().fit(np.eye(2), [0, 1]), out / "model.joblib")
    config = {"kind": "classical", "frontend": FrontendConfig().to_dict(), "inputs": "engineered"}
    write_model_dir(out, config=config, labels=["a", "b"], train_metrics={}, lineage={})
    return out


def test_the_model_file_sha256_is_recorded_and_checked_before_loading(classical_model):
    from insectml.wingbeat.predict import load_predictor

    recorded = json.loads((classical_model / "lineage.json").read_text())["sha256"]["model.joblib"]
    assert recorded == hashlib.sha256((classical_model / "model.joblib").read_bytes()).hexdigest()
    assert load_predictor(classical_model).classes == ["a", "b"]


def test_a_replaced_model_file_is_refused_before_it_is_unpickled(classical_model):
    from insectml.wingbeat.predict import load_predictor

    (classical_model / "model.joblib").write_bytes(b"not the trained model")
    with pytest.raises(InputFileError, match="model.joblib: sha256 differs"):
        load_predictor(classical_model)


def test_a_model_folder_without_a_recorded_sha256_still_loads_unverified(classical_model, caplog):
    from insectml.wingbeat.predict import load_predictor

    (classical_model / "lineage.json").write_text("{}")  # written before the record existed
    assert load_predictor(classical_model).kind == "classical"
    assert "unverified" in caplog.text


def test_a_replaced_torchscript_detector_is_refused_before_it_is_loaded(tmp_path):
    from insectml.detector.predict import TORCHSCRIPT, DetectorPredictor

    (tmp_path / "labels.json").write_text('["bug"]')
    (tmp_path / TORCHSCRIPT).write_bytes(b"not TorchScript")
    (tmp_path / "lineage.json").write_text(json.dumps({"sha256": {TORCHSCRIPT: "0" * 64}}))
    with pytest.raises(InputFileError, match="sha256 differs"):
        DetectorPredictor(tmp_path)


# --- the data version: data.dvc's md5 only for the data it tracks --------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def dvc_checkout(tmp_path) -> Path:
    """A checkout whose data.dvc pins a folder holding wingbeat/a/x.wav and wingbeat/b/y.wav,
    with DVC's listing of that version in the local cache."""
    root = tmp_path / "checkout"
    listing = [
        {"md5": _md5(b"x"), "relpath": "wingbeat/a/x.wav"},
        {"md5": _md5(b"y"), "relpath": "wingbeat/b/y.wav"},
    ]
    text = json.dumps(listing)
    version = _md5(text.encode()) + ".dir"
    (root / ".dvc" / "cache" / "files" / "md5" / version[:2]).mkdir(parents=True)
    (root / ".dvc" / "cache" / "files" / "md5" / version[:2] / version[2:]).write_text(text)
    (root / "data.dvc").write_text(f"outs:\n- md5: {version}\n  hash: md5\n  path: data\n")
    return root


def test_the_tracked_data_anywhere_records_data_dvc_md5(dvc_checkout):
    from insectml.lineage import data_source, dvc_data_version

    files = [("a/x.wav", _md5(b"x")), ("b/y.wav", _md5(b"y"))]
    source = data_source("/staged/copy/of/wingbeat", files, dvc_root=dvc_checkout)
    assert source["tracked"] and source["dvc_md5"] == dvc_data_version(dvc_checkout)


def test_data_outside_data_dvc_records_its_content_hash_and_path_marked_untracked(dvc_checkout):
    from insectml import lineage

    files = [("a/x.wav", _md5(b"x")), ("b/y.wav", _md5(b"edited"))]
    source = lineage.data_source("/my/own/data", files, dvc_root=dvc_checkout)
    record = lineage.collect(params={}, seed=0, data={"dataset_version": "v"}, started="t", source=source)
    assert record["data"]["dvc_md5"] is None and record["data"]["tracked"] is False
    assert record["data"]["path"] == "/my/own/data" and len(record["data"]["content_md5"]) == 32


def test_validation_records_where_its_data_came_from(tiny_wingbeat, tmp_path):
    from insectml.wingbeat.validate import ValidateConfig, validate_and_split

    cfg = ValidateConfig(
        labels=tiny_wingbeat / "labels.csv",
        data_dir=tiny_wingbeat,
        out_dir=tmp_path,
        classes=tiny_wingbeat / "classes.txt",
    )
    source = validate_and_split(cfg)["source"]
    assert source["path"] == str(tiny_wingbeat.resolve()) and isinstance(source["tracked"], bool)


# --- cookiecutter hooks take answers as strings, whatever they hold ------------------

HOSTILE = 'O"Brien \\ lab\'s "x" \\n'


def test_post_hook_receives_hostile_answers_as_the_exact_strings(repo_root):
    from cookiecutter.environment import StrictEnvironment

    hook = repo_root / "cookiecutter-template" / "hooks" / "post_gen_project.py"
    answers = {"family": "wingbeat", "insectml_path": "", "dvc_remote": HOSTILE, "author": HOSTILE, "email": HOSTILE}
    text = (
        StrictEnvironment(context={"cookiecutter": answers}).from_string(hook.read_text()).render(cookiecutter=answers)
    )
    values = {
        node.targets[0].id: ast.literal_eval(node.value)
        for node in ast.parse(text).body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
    }
    assert values == {"family": "wingbeat", "library": "", "remote": HOSTILE, "author": HOSTILE, "email": HOSTILE}


def test_pre_hook_does_not_run_code_pasted_into_an_answer(repo_root, tmp_path, capfd):
    from cookiecutter.exceptions import FailedHookException
    from cookiecutter.main import cookiecutter

    marker = tmp_path / "injected"
    config = tmp_path / "cookiecutter.yaml"
    config.write_text(f"cookiecutters_dir: {tmp_path / 'cc'}\nreplay_dir: {tmp_path / 'replay'}\n")
    hostile = {
        "project_slug": "Not_a_slug",  # refused by the hook, so nothing is generated
        "insectml_version": f'0.1.0"; open({str(marker)!r}, "w").close(); x="',
    }
    with pytest.raises(FailedHookException):
        cookiecutter(
            str(repo_root / "cookiecutter-template"),
            no_input=True,
            extra_context=hostile,
            output_dir=str(tmp_path / "out"),
            config_file=str(config),
        )
    assert not marker.exists()
    assert "project_slug 'Not_a_slug'" in capfd.readouterr().err
