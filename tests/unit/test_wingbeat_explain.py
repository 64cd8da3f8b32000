"""Wingbeat explanations (Grad-CAM, integrated gradients, permutation importance), their
place in the evaluation report, ``insectml wingbeat explain``, and the comparison and
sweep reports written with the shared report API."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from insectml.errors import ConfigError

N_MELS, FRAMES = 32, 64


def cli(*args: object) -> int:
    """One ``insectml`` command in this process; its exit code."""
    from insectml.cli import main

    return main([str(a) for a in args])


def net_predictor(name: str, classes=("a", "b", "c")):
    """A predictor around an untrained net: what the explanations read of a NetPredictor."""
    import torch
    from insectml.wingbeat.nets import create_net

    torch.manual_seed(0)
    options = {"backbone": "mobilenetv3_small_050"} if name == "cnn" else {}
    model = create_net(name, len(classes), N_MELS, **options).eval()
    return SimpleNamespace(kind="net", model=model, mean=0.0, std=1.0, classes=list(classes))


def spectrograms(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, N_MELS, FRAMES)).astype(np.float32), np.full(n, FRAMES, dtype=np.int32)


@pytest.mark.parametrize("name", ["cnn", "gru", "transformer"])
def test_maps_cover_the_spectrogram_and_are_non_negative(name):
    from insectml.wingbeat.explain import heat_maps

    mel, frames = spectrograms(3)
    maps = heat_maps(net_predictor(name), mel, frames, np.array([0, 1, 2]))
    assert maps.shape == mel.shape and (maps >= 0).all() and maps.max() > 0


@pytest.mark.parametrize("name", ["gru", "transformer"])
def test_integrated_gradients_give_padding_no_credit(name):
    from insectml.wingbeat.explain import heat_maps

    mel, frames = spectrograms(2)
    frames[:] = 40
    maps = heat_maps(net_predictor(name), mel, frames, np.array([0, 1]))
    assert maps[:, :, :40].max() > 0 and np.abs(maps[:, :, 40:]).max() == 0


def test_maps_are_deterministic():
    from insectml.wingbeat.explain import heat_maps

    mel, frames = spectrograms(2)
    predictor = net_predictor("gru")
    first = heat_maps(predictor, mel, frames, np.array([0, 1]))
    assert np.array_equal(first, heat_maps(predictor, mel, frames, np.array([0, 1])))


def classical_predictor(n: int = 90, seed: int = 0):
    """A logistic regression whose class is told by input 0 alone; the rest is noise."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.normal(size=(n, 4))
    x[:, 0] = y * 3 + rng.normal(scale=0.3, size=n)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    predictor = SimpleNamespace(kind="classical", inputs="engineered", estimator=estimator, classes=["a", "b", "c"])
    feats = {"engineered": x, "feature_names": np.asarray(["f0_hz", "noise1", "noise2", "noise3"])}
    return predictor, feats, y


def test_permutation_importance_names_the_input_the_model_relies_on():
    from insectml.wingbeat.explain import permutation_importances

    predictor, feats, y = classical_predictor()
    rows = permutation_importances(predictor, feats, np.ones(len(y), bool), y, seed=0)
    assert rows[0]["input"] == "f0_hz" and rows[0]["importance"] > 0.3
    assert rows == permutation_importances(predictor, feats, np.ones(len(y), bool), y, seed=0)


def test_a_model_without_a_map_is_refused_by_heat_maps():
    from insectml.wingbeat.explain import heat_maps

    predictor, _, _ = classical_predictor()
    mel, frames = spectrograms(1)
    with pytest.raises(ConfigError, match="no per-recording map"):
        heat_maps(predictor, mel, frames, np.array([0]))


def test_an_evaluation_gets_class_and_pair_grids(tmp_path):
    from insectml.wingbeat.explain import explain_evaluation

    predictor = net_predictor("cnn")
    mel, frames = spectrograms(12)
    y_true = np.arange(12) % 3
    probs = np.full((12, 3), 0.1)
    probs[np.arange(12), (y_true + (np.arange(12) % 2)) % 3] = 0.8  # half right, half taken for the next class
    feats = {"logmel": mel, "frames": frames, "ids": np.asarray([f"r{i}" for i in range(12)])}
    section = explain_evaluation(predictor, feats, np.ones(12, bool), y_true, probs, tmp_path, "tiny cnn")
    assert [f.path.name for f in section.figures] == ["explain_classes.png", "explain_pairs.png"]
    assert all(f.path.stat().st_size > 0 for f in section.figures)
    saved = json.loads((tmp_path / "explanations.json").read_text())
    assert saved["method"] == "Grad-CAM" and len(saved["confused_pairs"]) == 3


# -- the real steps on tiny data ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_wingbeat, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain")
    steps = [
        ["wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out],
        ["wingbeat", "features", "--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json",
         "--data", tiny_wingbeat, "--out", out / "features.npz"],
        ["wingbeat", "train", "--features", out / "features.npz", "--set", "n_estimators=30", "--out", out / "features"],
        ["wingbeat", "train", "--features", out / "features.npz", "--model", "gru", "--epochs", "1",
         "--out", out / "gru"],
    ]  # fmt: skip
    for model in ("features", "gru"):
        steps.append(["wingbeat", "evaluate", "--model", out / model, "--features", out / "features.npz",
                      "--out", out / f"e_{model}"])  # fmt: skip
    for args in steps:
        assert cli(*args) == 0, args
    return out


@pytest.mark.parametrize(
    "model, figures",
    [
        ("features", ["explain_classes.png", "explain_pairs.png", "explain_importance.png"]),
        ("gru", ["explain_classes.png", "explain_pairs.png"]),
    ],
)
def test_every_evaluation_report_has_an_explanations_section(trained, model, figures):
    report = (trained / f"e_{model}" / "report.html").read_text(encoding="utf-8")
    explanations = report[report.index("<h2>Explanations</h2>") :]
    assert all((trained / f"e_{model}" / name).stat().st_size > 0 for name in figures)
    assert explanations.count("<img") == len(figures)


def test_the_evaluation_report_keeps_its_numbers_and_plots(trained):
    report = (trained / "e_gru" / "report.html").read_text(encoding="utf-8")
    for heading in ("Per class", "Confusion matrix", "Calibration", "Training", "Explanations"):
        assert f"<h2>{heading}</h2>" in report
    assert "macro-F1 [95% CI]" in report and "ECE before → after temperature" in report


@pytest.fixture(scope="module")
def wavs(tiny_wingbeat) -> list[Path]:
    return sorted((tiny_wingbeat / "recordings").rglob("*.wav"))[:2]


def test_explain_writes_a_map_per_recording_and_a_summary(trained, wavs, tmp_path, capsys):
    assert cli("wingbeat", "explain", "--model", trained / "gru", "--out", tmp_path, *wavs) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    saved = json.loads((tmp_path / "explanations.json").read_text())["recordings"]
    assert printed == saved and [r["map"] for r in saved] == [f"{w.stem}_explain.png" for w in wavs]
    assert all((tmp_path / r["map"]).stat().st_size > 0 and 0 < r["probability"] <= 1 for r in saved)


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    return lines[0]


def test_explain_keeps_existing_outputs_without_force(trained, wavs, tmp_path, capsys):
    existing = tmp_path / f"{wavs[0].stem}_explain.png"
    existing.write_bytes(b"mine")
    assert cli("wingbeat", "explain", "--model", trained / "gru", "--out", tmp_path, wavs[0]) == 2
    assert "--force" in one_line_error(capsys) and existing.read_bytes() == b"mine"
    assert cli("wingbeat", "explain", "--model", trained / "gru", "--out", tmp_path, "--force", wavs[0]) == 0
    assert existing.read_bytes() != b"mine"


@pytest.mark.parametrize(
    "model, make, fragment",
    [
        ("gru", lambda p: p.write_bytes(b"not audio"), "not a readable WAV"),
        ("features", None, "no per-recording map"),
        ("empty", None, "config.json: missing from the model directory"),
    ],
    ids=["unreadable-wav", "features-model", "missing-model-files"],
)
def test_explain_bad_input_is_one_line_exit_2(trained, wavs, tmp_path, capsys, model, make, fragment):
    (trained / "empty").mkdir(exist_ok=True)
    wav = wavs[0]
    if make is not None:
        wav = tmp_path / "bad.wav"
        make(wav)
    assert cli("wingbeat", "explain", "--model", trained / model, "--out", tmp_path / "out", wav) == 2
    assert fragment in one_line_error(capsys)
    assert not (tmp_path / "out" / "explanations.json").exists()


def test_the_comparison_report_says_the_verdict_first_and_marks_the_chosen_model(trained, tmp_path):
    from insectml.sweep import select

    sweep = tmp_path / "sweep"
    select("wingbeat", [trained / "gru", trained / "features"], ["c01", "c02"], [], sweep)
    out = tmp_path / "comparison"
    code = cli(
        "wingbeat", "compare", "--models", trained / "features", trained / "gru",
        "--evaluations", trained / "e_features", trained / "e_gru", "--out", out, "--sweep", sweep / "sweep.json",
    )  # fmt: skip
    assert code == 0
    report = (out / "report.html").read_text(encoding="utf-8")
    comparison = json.loads((out / "comparison.json").read_text())
    assert report.index('class="verdict"') < report.index("<table")
    highlighted = [line for line in report.splitlines() if 'class="highlight"' in line]
    best_config = json.loads((sweep / "sweep.json").read_text())["best"]
    assert len(highlighted) == 2  # the chosen model, the chosen sweep configuration
    assert f"<td>{comparison['best']}</td>" in highlighted[0] and f"<td>{best_config}</td>" in highlighted[1]
    assert "<h2>Sweep (" in report and "<h2>Training curves</h2>" in report


def test_the_sweep_table_puts_the_best_first_and_highlights_it():
    from insectml.sweep import table

    summary = {
        "metric": "val.macro_f1",
        "best": "c02",
        "configs": [
            {"config": "c02", "params": {"wingbeat_lr": 0.003}, "val_metric": 0.8, "train_seconds": 2.0,
             "best_epoch": 3},
            {"config": "c01", "params": {"wingbeat_lr": 0.0003}, "val_metric": 0.7, "train_seconds": 2.1,
             "best_epoch": None},
        ],
    }  # fmt: skip
    shown = table(summary)
    assert shown.columns == ["config", "wingbeat_lr", "val.macro_f1", "train s", "best epoch"]
    assert shown.highlight == 0 and shown.rows[1][:2] == ["c01", "0.0003"]
