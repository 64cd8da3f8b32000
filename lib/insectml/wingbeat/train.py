"""Train a classical wingbeat model on engineered features."""

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
from insectml.wingbeat.features import load_features
from insectml.wingbeat.models import create_classical

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    features: Path
    out_dir: Path
    classifier: str = P.default("wingbeat_feature_model")
    overrides: dict[str, str] = field(default_factory=dict)
    seed: int = GENERAL.default("seed")
    threads: int = 1


def train(cfg: TrainConfig) -> dict:
    """Fit on the train split, score the val split, and write a model directory:
    ``model.joblib``, ``config.json``, ``labels.json``, ``lineage.json``, ``train_metrics.json``."""
    import joblib

    started = lineage.now()
    feats = load_features(cfg.features)
    dataset = json.loads(str(feats["dataset"])) if "dataset" in feats else {}
    classes = dataset.get("classes") or sorted(set(feats["labels"].tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[label] for label in feats["labels"]])
    X = feats["engineered"]
    train_mask, val_mask = feats["split"] == "train", feats["split"] == "val"
    if not train_mask.any() or not val_mask.any():
        raise ConfigError(f"{cfg.features}: needs samples in both the train and val splits")

    estimator = create_classical(cfg.classifier, cfg.seed, cfg.overrides, cfg.threads)
    log.info("fitting %s on %d recordings (%d features)", cfg.classifier, int(train_mask.sum()), X.shape[1])
    tic = time.perf_counter()
    estimator.fit(X[train_mask], y[train_mask])
    fit_seconds = time.perf_counter() - tic
    val = classification_metrics(y[val_mask], estimator.predict(X[val_mask]), classes)
    log.info("val accuracy %.3f, macro-F1 %.3f", val["accuracy"], val["macro_f1"])

    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, out / "model.joblib")
    config = {
        "family": "wingbeat",
        "kind": "classical",
        "model": "features",
        "classifier": cfg.classifier,
        "hyperparameters": {k: _jsonable(v) for k, v in estimator.named_steps["model"].get_params().items()},
        "frontend": feats["frontend"].to_dict(),
        "feature_names": feats["feature_names"].tolist(),
    }
    train_metrics = {"val": val, "fit_seconds": round(fit_seconds, 3), "n_train": int(train_mask.sum())}
    record = lineage.collect(
        params={
            "model": "features",
            "classifier": cfg.classifier,
            "overrides": cfg.overrides,
            "frontend": feats["frontend"].to_dict(),
            "split": dataset.get("split", {}),
        },
        seed=cfg.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
    )
    write_model_dir(out, config=config, labels=classes, train_metrics=train_metrics, lineage=record)
    return train_metrics


def _jsonable(value: object) -> object:
    return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)
