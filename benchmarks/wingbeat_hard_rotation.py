#!/usr/bin/env python3
"""How far any wingbeat model can beat the baseline on the hard demo: every session tested once.

The pipeline's test split of data/wingbeat_hard holds one session per species (6 test
sessions), so a test verdict rests on 6 independent units. Here the test session rotates:
with S sessions per species, rotation r tests the r-th session of every species (S/T
rotations when T sessions per species are tested) and trains on the rest, so every
recording is predicted once by a model that never saw its session. Printed, measured side
by side in one run on the same rotations: each model's pooled macro-F1 over all sessions
with its grouped bootstrap 95% CI (sessions resampled), its mean per-rotation macro-F1,
and the paired difference to the baseline (mean log-mel power spectrum + logistic
regression) with its interval over sessions.

Models: the baseline, ``features`` with each classical classifier on the engineered
features, and (``--rocket``) MiniRocket on the log-mel frames. ``--sessions-per-species`` /
``--per-session`` first write a variant of the hard demo (same generator, more sessions)
into a temporary folder instead of reading data/wingbeat_hard.

    python benchmarks/wingbeat_hard_rotation.py [--rocket] [--sessions-per-species 8 --per-session 15 --test-per-species 2]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

CLASSIFIERS = ("random_forest", "hist_gradient_boosting", "logistic_regression", "svm")


def hard_variant(out: Path, sessions: int, per_session: int) -> Path:
    """The hard demo's generator with ``sessions`` per species."""
    import insectml.data.demo as demo

    demo.SESSIONS_PER_SPECIES = sessions
    return demo.write_wingbeat_hard_demo(out, per_session=per_session)


def features(data: Path, work: Path, seed: int) -> Path:
    """validate (by session) and features of ``data``, by the CLI."""
    cli = [sys.executable, str(ROOT / "bin" / "insectml")]
    for args in (
        ["wingbeat", "validate", "--labels", data / "labels.csv", "--group-by", "session", "--seed", seed,
         "--out", work],
        ["wingbeat", "features", "--manifest", work / "manifest.jsonl", "--dataset", work / "dataset.json",
         "--data", data, "--out", work / "features.npz"],
    ):  # fmt: skip
        subprocess.run([*cli, *map(str, args)], check=True, stdout=subprocess.DEVNULL)
    return work / "features.npz"


def rotations(labels: np.ndarray, groups: np.ndarray, per_rotation: int) -> list[np.ndarray]:
    """Boolean test masks: rotation r tests sessions r, r + R, … of every species (R rotations)."""
    by_species: dict[str, list[str]] = {}
    for session in sorted(set(groups.tolist())):
        by_species.setdefault(labels[groups == session][0], []).append(session)
    n = min(len(v) for v in by_species.values()) // per_rotation
    return [np.isin(groups, [s for v in by_species.values() for s in v[r::n][:per_rotation]]) for r in range(n)]


def predict_all(name: str, feats: dict, y: np.ndarray, masks: list[np.ndarray], seed: int) -> np.ndarray:
    """Every recording's prediction by the model of the rotation that tests it."""
    from insectml.wingbeat.features import classical_inputs
    from insectml.wingbeat.models import create_classical

    pred = np.full(len(y), -1)
    for test in masks:
        if name == "rocket":
            from insectml.wingbeat.rocket import MiniRocket, centre_channels, make_rocket_head

            x, frames = feats["logmel"], feats["frames"]
            train_x = centre_channels(x[~test], frames[~test])
            transform = MiniRocket(seed=seed).fit(train_x, frames[~test])
            x_train = transform.transform(train_x, frames[~test])
            x_test = transform.transform(centre_channels(x[test], frames[test]), frames[test])
            model = make_rocket_head(seed)
        else:
            inputs, classifier = ("log_spectrum", "logistic_regression") if name == "baseline" else ("engineered", name)
            X = classical_inputs(feats, inputs)
            x_train, x_test = X[~test], X[test]
            model = create_classical(classifier, seed, {}, threads=2)
        model.fit(x_train, y[~test])
        pred[test] = model.predict(x_test)
    return pred


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--rocket", action="store_true", help="add MiniRocket (slower)")
    parser.add_argument("--sessions-per-species", type=int, help="write a hard-demo variant with this many")
    parser.add_argument("--per-session", type=int, default=30, help="with --sessions-per-species")
    parser.add_argument("--test-per-species", type=int, default=1, help="sessions per species tested at once")
    args = parser.parse_args()

    from insectml.stats import bootstrap_ci, format_ci, macro_f1_on, paired_bootstrap_diff
    from insectml.wingbeat.features import load_features
    from sklearn.metrics import f1_score

    with tempfile.TemporaryDirectory(prefix="hard-rotation-") as tmp:
        data = ROOT / "data" / "wingbeat_hard"
        if args.sessions_per_species:
            data = hard_variant(Path(tmp) / "data", args.sessions_per_species, args.per_session)
        feats = load_features(features(data, Path(tmp), args.seed))
    labels, groups = feats["labels"], feats["groups"]
    classes = sorted(set(labels.tolist()))
    y = np.asarray([classes.index(label) for label in labels])
    masks = rotations(labels, groups, args.test_per_species)
    print(f"{data.name}: {len(y)} recordings, {len(set(groups.tolist()))} sessions, {len(masks)} rotations "
          f"of {args.test_per_species} test session(s) per species")  # fmt: skip

    names = ["baseline", *CLASSIFIERS] + (["rocket"] if args.rocket else [])
    preds = {name: predict_all(name, feats, y, masks, args.seed) for name in names}
    base = macro_f1_on(y, preds["baseline"], len(classes))
    print("\n| model | pooled macro-F1 [95% CI] | mean per rotation | minus baseline [95% CI] |\n|---|---|---|---|")
    for name in names:
        metric = macro_f1_on(y, preds[name], len(classes))
        pooled = bootstrap_ci(metric, len(y), groups, seed=args.seed)
        per_rotation = np.mean([f1_score(y[m], preds[name][m], average="macro") for m in masks])
        diff = "—"
        if name != "baseline":
            d = paired_bootstrap_diff(metric, base, len(y), groups, seed=args.seed)
            diff = f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"
        label = f"features ({name})" if name in CLASSIFIERS else name
        print(f"| {label} | {format_ci(pooled)} | {per_rotation:.3f} | {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
