"""The CLI end to end on tiny data, and its behaviour on bad input."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf


def assert_one_line_error(done, *fragments):
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    assert all(f in lines[-1] for f in fragments), lines[-1]


@pytest.fixture(scope="module")
def trained(tiny_wingbeat, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    for args in (
        ["wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out],
        [
            "wingbeat",
            "features",
            "--manifest",
            out / "manifest.jsonl",
            "--dataset",
            out / "dataset.json",
            "--data",
            tiny_wingbeat,
            "--out",
            out / "features.npz",
        ],
        ["wingbeat", "train", "--features", out / "features.npz", "--set", "n_estimators=30", "--out", out / "model"],
        ["wingbeat", "evaluate", "--model", out / "model", "--features", out / "features.npz", "--out", out / "eval"],
    ):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
    return out


def test_evaluation_writes_metrics_plot_and_report(trained):
    metrics = json.loads((trained / "eval" / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1 and len(metrics["per_class"]) == 5
    assert (trained / "eval" / "confusion_matrix.png").stat().st_size > 0
    assert "macro-F1" in (trained / "eval" / "report.html").read_text()


def test_model_carries_its_lineage(trained, tiny_wingbeat):
    lineage = json.loads((trained / "model" / "lineage.json").read_text())
    assert {"code", "data", "params", "seed", "packages", "started", "finished"} <= set(lineage)
    assert set(lineage["code"]) == {"commit", "dirty", "describe"}
    assert lineage["data"]["dataset_version"] and lineage["params"]["overrides"] == {"n_estimators": "30"}
    assert lineage["packages"]["scikit-learn"]


def test_same_seed_same_metrics(trained, run_cli):
    again = trained / "model2"
    run_cli("wingbeat", "train", "--features", trained / "features.npz", "--set", "n_estimators=30", "--out", again)
    first = json.loads((trained / "model" / "train_metrics.json").read_text())["val"]
    second = json.loads((again / "train_metrics.json").read_text())["val"]
    assert first == second


def test_predict_prints_probabilities(trained, tiny_wingbeat, run_cli):
    wav = next((tiny_wingbeat / "recordings").rglob("*.wav"))
    done = run_cli("wingbeat", "predict", "--model", trained / "model", wav)
    probs = json.loads(done.stdout)["probabilities"]
    assert abs(sum(probs.values()) - 1) < 1e-4


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: p.write_bytes(b"not audio at all"), "not a readable WAV"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: sf.write(p, np.zeros((800, 2), dtype=np.float32), 8000), "2 channels"),
        (lambda p: sf.write(p, np.zeros(800, dtype=np.float32), 22050), "sample rate is 22050 Hz"),
        (lambda p: sf.write(p, np.array([np.nan] * 800, dtype=np.float32), 8000, subtype="FLOAT"), "NaN"),
    ],
    ids=["corrupt", "empty", "stereo", "rate", "nan"],
)
def test_bad_recording_is_one_line_exit_2(trained, run_cli, tmp_path, make, fragment):
    bad = tmp_path / "bad.wav"
    make(bad)
    assert_one_line_error(run_cli("wingbeat", "predict", "--model", trained / "model", bad), str(bad), fragment)


def test_missing_column_is_one_line_exit_2(run_cli, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("path,event\na.wav,e1\n")
    done = run_cli("wingbeat", "validate", "--labels", labels, "--out", tmp_path)
    assert_one_line_error(done, str(labels), "'species'")


def test_unknown_species_fails_validation_and_keeps_report(tiny_wingbeat, run_cli, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_wingbeat, root)
    text = (root / "labels.csv").read_text().replace(",culex_pipiens,", ",culex_pippiens,", 1)
    (root / "labels.csv").write_text(text)
    done = run_cli("wingbeat", "validate", "--labels", root / "labels.csv", "--out", tmp_path / "out")
    assert_one_line_error(done, "labels.csv", "unknown species 'culex_pippiens'")
    assert (tmp_path / "out" / "validation_report.json").is_file()


def test_bad_argument_is_one_line_exit_2(run_cli, tmp_path):
    done = run_cli("wingbeat", "train", "--features", tmp_path / "none.npz")
    assert_one_line_error(done, "none.npz", "file not found")


def test_every_command_has_help(run_cli):
    for args in (
        ["--help"],
        ["wingbeat", "--help"],
        ["wingbeat", "validate", "--help"],
        ["serve", "start", "--help"],
        ["data", "demo", "--help"],
        ["params", "validate", "--help"],
    ):
        done = run_cli(*args)
        assert done.returncode == 0 and "usage:" in done.stdout


def test_building_the_parser_does_not_import_torch(repo_root):
    """Every pipeline task calls the CLI twice (its step, then `insectml versions`);
    importing torch to build the parser cost ~2 s per call."""
    code = "import sys; from insectml.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=repo_root / "lib", capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
