"""Train a wingbeat model with a scikit-learn head on fixed inputs: ``features`` (engineered
features + a classifier), ``rocket`` (MiniRocket features of the log-mel frames + logistic
regression) or ``baseline`` (the mean log-mel power spectrum + logistic regression, the
cheap model every comparison shows beside the others)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from insectml import lineage
from insectml.errors import ConfigError
from insectml.metrics import classification_metrics
from insectml.modeldir import write_model_dir
from insectml.runparams import GENERAL
from insectml.wingbeat.family import PARAMS as P
from insectml.wingbeat.features import classical_inputs, load_features
from insectml.wingbeat.folds import select_rows, write_heldout
from insectml.wingbeat.models import create_classical
from insectml.wingbeat.rocket import make_rocket_head

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    features: Path
    out_dir: Path
    classifier: str = P.default("wingbeat_feature_model")
    overrides: dict[str, str] = field(default_factory=dict)
    seed: int = GENERAL.default("seed")
    threads: int = 1
    model: str = "features"  # or "baseline"
    folds: Path | None = None  # folds.json of 'insectml cv plan'
    fold: int | None = None  # the fold held out; None with folds: the refit on all non-test data


def train(cfg: TrainConfig) -> dict:
    """Fit on the rows of the task's role (:mod:`.folds`), score the held-out ones, and
    write a model directory: ``model.joblib``, ``config.json``, ``labels.json``,
    ``lineage.json``, ``train_metrics.json`` (and ``heldout.npz`` for a fold)."""
    import joblib

    from insectml.stats import fit_temperature

    started = lineage.now()
    feats = load_features(cfg.features)
    dataset = json.loads(str(feats["dataset"])) if "dataset" in feats else {}
    classes = dataset.get("classes") or sorted(set(feats["labels"].tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[label] for label in feats["labels"]])
    if cfg.model not in INPUTS:
        raise ConfigError(f"not a wingbeat model with a scikit-learn head: {cfg.model}")
    inputs = INPUTS[cfg.model]
    classifier = {"features": cfg.classifier, "baseline": BASELINE_CLASSIFIER, "rocket": "logistic_regression"}[
        cfg.model
    ]
    rows = select_rows(feats, cfg.features, cfg.folds, cfg.fold)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)

    tic = time.perf_counter()
    if cfg.model == "rocket":
        x_train, x_held = _rocket_inputs(feats, rows, cfg.seed, cfg.threads, out)
        estimator = make_rocket_head(cfg.seed)
    else:
        X = classical_inputs(feats, inputs)
        x_train, x_held = X[rows.train], X[rows.held]
        estimator = create_classical(
            classifier, cfg.seed, cfg.overrides if cfg.model == "features" else {}, cfg.threads
        )
    log.info("fitting %s on %d recordings (%d %s inputs)", classifier, len(x_train), x_train.shape[1], inputs)
    estimator.fit(x_train, y[rows.train])
    fit_seconds = time.perf_counter() - tic

    val, temperature = None, 1.0
    if rows.held.any():
        probs = estimator.predict_proba(x_held)
        val = classification_metrics(y[rows.held], probs.argmax(1), classes)
        log.info("%s accuracy %.3f, macro-F1 %.3f", rows.role, val["accuracy"], val["macro_f1"])
        if rows.role == "val":
            temperature = fit_temperature(np.log(np.clip(probs, 1e-12, None)), y[rows.held])
        else:
            write_heldout(out, feats, rows, y, probs, logits=False)
    joblib.dump(estimator, out / "model.joblib")
    config = {
        "family": "wingbeat",
        "kind": "rocket" if cfg.model == "rocket" else "classical",
        "model": cfg.model,
        "inputs": inputs,
        "classifier": classifier,
        "hyperparameters": {k: _jsonable(v) for k, v in estimator.named_steps["model"].get_params().items()},
        "frontend": feats["frontend"].to_dict(),
        "feature_names": feats["feature_names"].tolist() if inputs == "engineered" else [],
        **calibration(rows.role, temperature),
    }
    train_metrics = {"val": val, "fit_seconds": round(fit_seconds, 3), "n_train": int(rows.train.sum())}
    record = lineage.collect(
        params={
            "model": cfg.model,
            "classifier": classifier,
            "overrides": cfg.overrides,
            "frontend": feats["frontend"].to_dict(),
            "split": dataset.get("split", {}),
            "rows": rows.lineage(),
        },
        seed=cfg.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
        source=dataset.get("source"),
    )
    write_model_dir(out, config=config, labels=classes, train_metrics=train_metrics, lineage=record)
    return train_metrics


# What each model reads from the features file.
INPUTS = {"features": "engineered", "baseline": "log_spectrum", "rocket": "minirocket"}
# The baseline's classifier: linear, so it shows what the spectrum alone separates.
BASELINE_CLASSIFIER = "logistic_regression"


def _rocket_inputs(feats: dict, rows, seed: int, threads: int, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """MiniRocket fitted on the training rows' centred log-mels, saved to ``out``; the
    features of the training and held-out rows."""
    import torch

    from insectml.wingbeat.rocket import ROCKET_STATE, MiniRocket, centre_channels, save_transform

    torch.set_num_threads(threads)
    x, frames = feats["logmel"], feats["frames"]
    train = centre_channels(x[rows.train], frames[rows.train])
    transform = MiniRocket(seed=seed).fit(train, frames[rows.train])
    save_transform(transform, out / ROCKET_STATE)
    held = centre_channels(x[rows.held], frames[rows.held])
    return transform.transform(train, frames[rows.train]), transform.transform(held, frames[rows.held])


def calibration(role: str, temperature: float) -> dict:
    """config.json's calibration entries: the temperature predictions are divided by
    (on logits; on log-probabilities for classical models) and what it was fitted on."""
    fitted_on = {"val": "val split", "fold": None, "refit": "pending: insectml wingbeat cv"}[role]
    return {"temperature": round(float(temperature), 6), "temperature_fitted_on": fitted_on}


def _jsonable(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
