"""insectml monitor: a held-out slice of the reference's distribution passes (exit 0), a
shifted one is flagged (exit 3), bad input is one line and exit 2. Logs are written in
the prediction-log format of issue #20; references are results folders as the pipeline
publishes them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from insectml.cli import main
from insectml.monitor.drift import Thresholds, mmd_drift, psi
from insectml.monitor.logs import Sample, read_log
from insectml.monitor.run import compare

CLASSES = ["a", "b", "c", "d"]
FEATURES = [f"f{i}" for i in range(8)]


def record(family: str, answer, summary: dict, top_score, unknown=False, version="abc123def456") -> dict:
    return {
        "time": "2026-12-02T15:04:05.123456+00:00",
        "family": family,
        "model": "m",
        "version": version,
        "input": {"sha256": "0" * 64, "bytes": 1, "media_type": "application/octet-stream"},
        "answer": answer,
        "summary": summary,
        "top_score": top_score,
        "unknown": unknown,
        "input_file": None,
    }


def write_log(folder: Path, records: list[dict], rotated: int = 0) -> Path:
    """``records`` as a log folder; the first ``rotated`` go to predictions.jsonl.1."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records]
    if rotated:
        (folder / "predictions.jsonl.1").write_text("\n".join(lines[:rotated]) + "\n")
    (folder / "predictions.jsonl").write_text("\n".join(lines[rotated:]) + "\n")
    return folder


def results_folder(root: Path, family: str, reference: Sample | None) -> Path:
    """A family's results folder with one model, ``m``; its evaluation saved ``reference``
    as the monitor reference file (if given)."""
    (root / "data").mkdir(parents=True)
    (root / "data" / "dataset.json").write_text(json.dumps({"family": family}))
    model = root / "models" / "m"
    model.mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"family": family, "model": "m"}))
    (model / "lineage.json").write_text(json.dumps({"sha256": {"weights.pt": "abc123def456" + "0" * 52}}))
    if reference is not None:
        reference.save(root / "evaluation" / "m" / "monitor_reference.npz")
    return root


def run(*args) -> int:
    return main(["monitor", *map(str, args)])


# --- wingbeat: engineered features, class mix, confidence ---------------------------------


def wingbeat_traffic(n: int, rng: np.random.Generator, shift: bool = False):
    """Features, predicted classes and top scores of ``n`` recordings; ``shift``: louder,
    noisier recordings (gain and noise on every feature) of another class mix."""
    mix = [0.1, 0.1, 0.2, 0.6] if shift else [0.25, 0.25, 0.25, 0.25]
    classes = rng.choice(CLASSES, size=n, p=mix)
    features = rng.normal(np.arange(len(FEATURES)), 1.0, size=(n, len(FEATURES)))
    if shift:
        features = 1.5 * features + rng.normal(0, 1.0, features.shape)
    top = rng.beta(8, 2, size=n)
    return features, list(classes), top


def wingbeat_log(folder: Path, n: int, seed: int, shift: bool = False) -> Path:
    features, classes, top = wingbeat_traffic(n, np.random.default_rng(seed), shift)
    records = [
        record(
            "wingbeat",
            {"probabilities": dict(zip(CLASSES, map(float, probs), strict=True))},
            {"features": dict(zip(FEATURES, map(float, row), strict=True))},
            float(probs.max()),
        )
        for row, probs in zip(features, probabilities(classes, top), strict=True)
    ]
    return write_log(folder, records, rotated=n // 3)


def probabilities(classes: list[str], top: np.ndarray) -> np.ndarray:
    """Answers whose most probable class is ``classes`` with probability ``top``."""
    probs = np.repeat(((1 - top) / (len(CLASSES) - 1))[:, None], len(CLASSES), axis=1)
    probs[np.arange(len(top)), [CLASSES.index(c) for c in classes]] = top
    return probs


@pytest.fixture(scope="module")
def wingbeat_results(tmp_path_factory) -> Path:
    """As the pipeline would publish it with the features file: data/features.npz (train and
    val rows are the reference) and the evaluation's calibrated test predictions."""
    from insectml.wingbeat.frontend import FrontendConfig

    root = results_folder(tmp_path_factory.mktemp("results") / "wingbeat", "wingbeat", None)
    features, classes, top = wingbeat_traffic(400, np.random.default_rng(1))
    np.savez(
        root / "data" / "features.npz",
        ids=np.arange(400).astype(str),
        labels=np.asarray(classes),
        split=np.asarray(["train", "val"] * 150 + ["test"] * 100),
        engineered=features,
        feature_names=np.asarray(FEATURES),
        frontend=np.asarray(json.dumps(FrontendConfig().to_dict())),
    )
    (root / "models" / "m" / "labels.json").write_text(json.dumps(CLASSES))
    (root / "evaluation" / "m").mkdir(parents=True)
    np.savez(root / "evaluation" / "m" / "predictions.npz", probs=probabilities(classes[300:], top[300:]))
    return root


def test_held_out_wingbeat_traffic_passes(tmp_path, wingbeat_results, capsys):
    log = wingbeat_log(tmp_path / "log", 150, seed=2)
    assert run(log, "--reference", wingbeat_results, "--out", tmp_path / "out") == 0, capsys.readouterr().out


def test_louder_noisier_wingbeat_traffic_of_another_mix_is_flagged(tmp_path, wingbeat_results, capsys):
    log = wingbeat_log(tmp_path / "log", 150, seed=2, shift=True)
    code = run(log, "--reference", wingbeat_results, "--out", tmp_path / "out")
    flagged = {line.split()[1].rstrip(":") for line in capsys.readouterr().out.splitlines() if line.startswith("DRIFT")}
    assert (code, flagged) == (3, {"features", "class_mix"})


def test_monitor_json_and_report_record_every_test(tmp_path, wingbeat_results):
    log = wingbeat_log(tmp_path / "log", 150, seed=2, shift=True)
    run(log, "--reference", wingbeat_results, "--out", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    tests = {t["name"]: t for t in summary["tests"]}
    assert set(tests) == {"features", "confidence", "class_mix"}
    assert all({"statistic", "p_value", "threshold", "flagged"} <= t.keys() for t in tests.values())
    assert "Drift:" in (tmp_path / "out" / "report.html").read_text()


# --- few-shot: embeddings, unknown rate ---------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


CENTRES = unit(np.random.default_rng(0).normal(size=(6, 16)))
NEW_SPECIES = unit(np.random.default_rng(99).normal(size=16))


def fewshot_traffic(n: int, rng: np.random.Generator, new_species: float = 0.0):
    """Embeddings of ``n`` images of the gallery's classes; a share ``new_species`` of
    them from a class the gallery does not hold; the gallery's answers."""
    which = rng.integers(0, len(CENTRES), n)
    centres = CENTRES[which].copy()
    new = rng.random(n) < new_species
    centres[new] = NEW_SPECIES
    emb = unit(centres + rng.normal(0, 0.25, centres.shape))
    sims = emb @ CENTRES.T
    top = sims.max(axis=1)
    labels = [f"class{i}" for i in sims.argmax(axis=1)]
    unknown = top < 0.6
    return emb, labels, top, unknown


def fewshot_log(folder: Path, n: int, seed: int, new_species: float = 0.0) -> Path:
    emb, labels, top, unknown = fewshot_traffic(n, np.random.default_rng(seed), new_species)
    records = [
        record(
            "fewshot",
            {"label": "unknown" if u else label, "score": float(t), "top_k": [{"label": label, "score": float(t)}]},
            {"embedding": [float(x) for x in e]},
            float(t),
            bool(u),
        )
        for e, label, t, u in zip(emb, labels, top, unknown, strict=True)
    ]
    return write_log(folder, records)


@pytest.fixture(scope="module")
def fewshot_results(tmp_path_factory) -> Path:
    emb, labels, top, unknown = fewshot_traffic(400, np.random.default_rng(1))
    known = [label for label, u in zip(labels, unknown, strict=True) if not u]
    reference = Sample(n=400, embedding=emb, predicted=known, top_score=top, unknown=unknown)
    return results_folder(tmp_path_factory.mktemp("results") / "fewshot", "fewshot", reference)


def test_held_out_images_pass(tmp_path, fewshot_results, capsys):
    log = fewshot_log(tmp_path / "log", 200, seed=3)
    assert run(log, "--reference", fewshot_results, "--out", tmp_path / "out") == 0, capsys.readouterr().out


def test_a_new_species_cluster_is_flagged_as_embedding_drift(tmp_path, fewshot_results, capsys):
    log = fewshot_log(tmp_path / "log", 200, seed=3, new_species=0.3)
    code = run(log, "--reference", fewshot_results, "--out", tmp_path / "out")
    out = capsys.readouterr().out
    assert code == 3 and "DRIFT embedding_mmd" in out, out


def test_mmd_tells_a_new_cluster_from_a_resample():
    rng = np.random.default_rng(5)
    ref = fewshot_traffic(300, rng)[0]
    same = fewshot_traffic(150, rng)[0]
    shifted = fewshot_traffic(150, rng, new_species=0.3)[0]
    th = Thresholds()
    assert (mmd_drift("e", ref, same, th).flagged, mmd_drift("e", ref, shifted, th).flagged) == (False, True)


def test_records_without_features_are_left_out_of_feature_drift():
    rng = np.random.default_rng(6)
    reference = Sample(n=300, features=wingbeat_traffic(300, rng)[0], feature_names=FEATURES)
    served = wingbeat_traffic(100, rng, shift=True)[0]
    served[::2] = np.nan  # lines beyond the server's summary share carry an empty summary
    tests, _, _ = compare("wingbeat", reference, Sample(n=100, features=served), Thresholds())
    assert [(t.name, t.n_served, t.flagged) for t in tests] == [("features", 50, True)]


def test_psi_is_zero_for_the_same_sample_and_large_for_a_shift():
    x = np.random.default_rng(0).normal(size=2000)
    assert psi(x, x) < 1e-9 and psi(x, x + 2) > 1.0


# --- detector: class mix and boxes per image of the annotations ---------------------------


def test_detector_reference_is_its_annotations(tmp_path, capsys):
    rng = np.random.default_rng(4)
    root = tmp_path / "detector"
    (root / "data").mkdir(parents=True)
    (root / "data" / "dataset.json").write_text(json.dumps({"family": "detector"}))
    (root / "models" / "generic").mkdir(parents=True)
    (root / "models" / "generic" / "config.json").write_text(json.dumps({"family": "detector", "model": "x"}))

    def boxes(n: int) -> list[list[str]]:
        return [list(rng.choice(["bee", "fly"], size=rng.integers(0, 4))) for _ in range(n)]

    rows = [{"id": str(i), "path": f"{i}.jpg", "split": "train", "labels": b} for i, b in enumerate(boxes(200))]
    (root / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    served = [
        record("detector", [{"label": label, "score": 0.9, "box": [0, 0, 1, 1]} for label in b], {}, 0.9 if b else None)
        for b in boxes(120)
    ]
    log = write_log(tmp_path / "log", served)
    code = run(log, "--reference", root, "--out", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "monitor.json").read_text())
    assert (code, [t["name"] for t in summary["tests"]]) == (0, ["class_mix", "boxes_per_image"]), capsys.readouterr()


# --- the log and bad input ----------------------------------------------------------------


def test_log_is_read_oldest_first_and_a_half_written_line_is_skipped(tmp_path):
    folder = tmp_path / "log"
    folder.mkdir()
    (folder / "predictions.jsonl.2").write_text(json.dumps(record("wingbeat", {}, {}, 0.1)) + "\n")
    (folder / "predictions.jsonl.1").write_text(json.dumps(record("wingbeat", {}, {}, 0.2)) + "\n")
    (folder / "predictions.jsonl").write_text(json.dumps(record("wingbeat", {}, {}, 0.3)) + '\n{"time": "20')
    records, skipped = read_log(folder)
    assert ([r["top_score"] for r in records], skipped) == ([0.1, 0.2, 0.3], 1)


@pytest.mark.parametrize("problem", ["missing log", "not a results folder", "too few records", "bad threshold"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, wingbeat_results, capsys, problem):
    log = wingbeat_log(tmp_path / "log", 30, seed=2)
    args = {
        "missing log": [tmp_path / "nothing", "--reference", wingbeat_results],
        "not a results folder": [log, "--reference", tmp_path],
        "too few records": [log, "--reference", wingbeat_results, "--thresholds", "min_records=100"],
        "bad threshold": [log, "--reference", wingbeat_results, "--thresholds", "alpha=5"],
    }[problem]
    code = run(*args, "--out", tmp_path / "out")
    err = capsys.readouterr().err
    assert (code, len(err.strip().splitlines())) == (2, 1), err


# --- the wingbeat demo: the library's features of real demo recordings --------------------


def _demo_split(data: Path) -> dict[str, list[dict]]:
    """Per species: 7 reference (train), 2 evaluation (test), 5 served recordings, at random."""
    rows = list(csv.DictReader((data / "labels.csv").open()))
    rng = np.random.default_rng(0)
    out: dict[str, list[dict]] = {"train": [], "test": [], "served": []}
    for species in sorted({r["species"] for r in rows}):
        mine = [rows[i] for i in rng.permutation([i for i, r in enumerate(rows) if r["species"] == species])]
        out["train"] += mine[:7]
        out["test"] += mine[7:9]
        out["served"] += mine[9:14]
    return out


@pytest.fixture(scope="module")
def demo(tiny_wingbeat, tmp_path_factory):
    """A wingbeat results folder as the pipeline publishes it (no features file: the monitor
    recomputes the reference from the recordings), a logistic regression on the engineered
    features as the served model, and logs of the served recordings as they are and with
    gain and noise applied to the waveform."""
    from insectml.wingbeat.audio import decode_wav
    from insectml.wingbeat.features import engineered_features, feature_names
    from insectml.wingbeat.frontend import FrontendConfig
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    frontend = FrontendConfig()
    split = _demo_split(tiny_wingbeat)

    def features(rows, gain=1.0, noise=0.0, seed=0):
        rng = np.random.default_rng(seed)
        out = []
        for r in rows:
            audio = decode_wav(tiny_wingbeat / r["path"], frontend.sample_rate)
            audio = np.clip(gain * audio + rng.normal(0, noise, len(audio)), -1, 1).astype(np.float32)
            out.append(engineered_features(audio, frontend))
        return np.stack(out)

    classes = sorted({r["species"] for r in split["train"]})
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features(split["train"]), [r["species"] for r in split["train"]])

    root = tmp_path_factory.mktemp("demo") / "wingbeat"
    (root / "data").mkdir(parents=True)
    (root / "data" / "dataset.json").write_text(
        json.dumps({"family": "wingbeat", "source": {"path": str(tiny_wingbeat)}})
    )
    manifest = [
        {"id": r["path"], "path": r["path"], "label": r["species"], "group": r["event"], "split": s}
        for s in ("train", "test")
        for r in split[s]
    ]
    (root / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in manifest))
    model_dir = root / "models" / "features"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text(
        json.dumps({"family": "wingbeat", "model": "features", "frontend": frontend.to_dict()})
    )
    (model_dir / "labels.json").write_text(json.dumps(classes))
    (model_dir / "lineage.json").write_text(json.dumps({"sha256": {"model.joblib": "feed" * 16}}))
    (root / "evaluation" / "features").mkdir(parents=True)
    np.savez(root / "evaluation" / "features" / "predictions.npz", probs=model.predict_proba(features(split["test"])))

    names = feature_names()
    logs = {}
    for kind, (gain, noise) in {"clean": (1.0, 0.0), "shifted": (3.0, 0.05)}.items():
        feats = features(split["served"], gain, noise, seed=1)
        records = []
        for row, probs in zip(feats, model.predict_proba(feats), strict=True):
            answer = {
                "probabilities": {c: float(p) for c, p in sorted(zip(classes, probs, strict=True), key=lambda x: -x[1])}
            }
            summary = {"features": {n: float(v) for n, v in zip(names, row, strict=True)}}
            records.append(record("wingbeat", answer, summary, float(probs.max()), version="feed" * 3))
        logs[kind] = write_log(root.parent / f"log_{kind}", records)
    return root, logs


def test_demo_held_out_recordings_pass(demo, tmp_path, capsys):
    root, logs = demo
    assert run(logs["clean"], "--reference", root, "--out", tmp_path) == 0, capsys.readouterr().out


def test_demo_recordings_with_gain_and_noise_are_flagged(demo, tmp_path, capsys):
    root, logs = demo
    code = run(logs["shifted"], "--reference", root, "--out", tmp_path)
    assert code == 3 and "DRIFT features" in capsys.readouterr().out
