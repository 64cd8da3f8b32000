"""Sweep files: expansion (grid, seeded random), one-line errors, and picking the best."""

import json

import pytest
from insectml.errors import InputFileError
from insectml.sweep import plan, select


@pytest.fixture
def schema(repo_root):
    return repo_root / "nextflow_schema.json"


PARAMS = {"task": "wingbeat,fewshot", "outdir": "results", "seed": 42}


def write(tmp_path, text):
    path = tmp_path / "sweep.yaml"
    path.write_text(text)
    return path


def test_bundled_sweeps_plan(repo_root, schema):
    grid = plan(repo_root / "conf/sweeps/wingbeat_cnn.yaml", schema, PARAMS)
    assert grid["task"] == "wingbeat" and grid["model"] == "cnn" and grid["metric"] == "val.macro_f1"
    assert [c["id"] for c in grid["configs"]] == ["c01", "c02", "c03", "c04"]
    assert {(c["params"]["wingbeat_lr"], c["params"]["wingbeat_batch_size"]) for c in grid["configs"]} == {
        (0.001, 16),
        (0.001, 32),
        (0.004, 16),
        (0.004, 32),
    }
    random = plan(repo_root / "conf/sweeps/fewshot_random.yaml", schema, PARAMS)
    assert random == plan(repo_root / "conf/sweeps/fewshot_random.yaml", schema, PARAMS)  # seeded
    assert all(0.0003 <= c["params"]["fewshot_lr"] <= 0.003 for c in random["configs"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("task: wingbeat\nmodel: cnn\nparams: [", "not valid YAML"),
        ("task: detector\nparams: {detector_lr: [0.1]}", "task: 'detector' cannot be swept"),
        ("task: wingbeat\nmodel: svm\nparams: {wingbeat_lr: [0.1]}", "model: 'svm' is not a wingbeat model"),
        (
            "task: wingbeat\nmodel: cnn\nparams: {wingbeat_n_mels: [32]}",
            "params.wingbeat_n_mels: not a wingbeat training",
        ),
        ("task: wingbeat\nmodel: cnn\nparams: {wingbeat_lr: []}", "params.wingbeat_lr: must be a non-empty list"),
        (
            "task: wingbeat\nmodel: cnn\nparams: {wingbeat_lr: {min: 0.1, max: 1}}",
            "params.wingbeat_lr: a range needs method: random",
        ),
        ("task: fewshot\nmethod: random\nparams: {fewshot_lr: [0.1]}", "samples: random sweeps need samples"),
        ("task: fewshot\nparams: {fewshot_loss: [proto, triplet]}", "params (configuration 2): --fewshot_loss"),
        ("task: fewshot\nepochs: 3\nparams: {fewshot_lr: [0.1]}", "epochs: unknown field"),
    ],
)
def test_bad_sweep_files_name_the_field(tmp_path, schema, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputFileError) as info:
        plan(path, schema, PARAMS)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_sweep_plan_cli_exits_2_with_one_line(run_cli, repo_root, tmp_path):
    path = write(tmp_path, "task: wingbeat\nmodel: cnn\nparams: {wingbeat_lr: [0.1, -1]}")
    done = run_cli(
        "sweep", "plan", "--sweep", path, "--schema", repo_root / "nextflow_schema.json", "--params", json.dumps(PARAMS)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--wingbeat_lr" in done.stderr


def test_select_picks_the_best_validation_metric(tmp_path):
    configs = [{"id": f"c0{i}", "params": {"fewshot_lr": lr}} for i, lr in enumerate((0.1, 0.2, 0.3), 1)]
    dirs = []
    for i, value in enumerate((0.5, 0.9, 0.7), 1):
        d = tmp_path / f"model_{i}"
        d.mkdir()
        (d / "train_metrics.json").write_text(
            json.dumps({"best_val_episode_acc": value, "fit_seconds": 3.0, "best_epoch": 2})
        )
        dirs.append(d)
    best = select("fewshot", dirs, ["c01", "c02", "c03"], configs, tmp_path / "sweep")
    assert best == "c02" and (tmp_path / "sweep" / "best.txt").read_text() == "c02\n"
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()
    assert rows[0] == "config,fewshot_lr,val_metric,train_seconds,best_epoch"
    assert [r.split(",")[0] for r in rows[1:]] == ["c02", "c03", "c01"]
    assert (tmp_path / "sweep" / "sweep.png").is_file()
