"""Train a detector on manifest rows with the shared loop (early stopping on val mAP@.5)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from insectml import lineage
from insectml.data.manifest import read_json, read_manifest
from insectml.detector.data import DetectionSet, collate
from insectml.detector.family import PARAMS
from insectml.detector.metrics import mean_average_precision, predict
from insectml.detector.models import create_detector, normalisation
from insectml.errors import ConfigError
from insectml.modeldir import write_model_dir
from insectml.training.loop import LoopConfig, config_fingerprint, declared_loop, fit, lineage_settings
from insectml.training.weights import resolve_weights, weights_lineage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorTrainConfig:
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    model: str = PARAMS.default("detector_model")
    weights: Path | str | None = None  # a state-dict file, an imported folder or NAME
    image_size: int = PARAMS.default("detector_image_size")
    loop: LoopConfig = field(default_factory=partial(declared_loop, PARAMS))


def train_detector(cfg: DetectorTrainConfig) -> dict:
    """Write a model dir: weights.pt, config.json, labels.json, lineage.json,
    train_metrics.json, history.jsonl, checkpoints/last.pt."""
    started = lineage.now()
    dataset = read_json(cfg.dataset, "dataset description")
    classes = dataset["classes"]
    rows = [r for r in read_manifest(cfg.manifest) if r["split"] in ("train", "val")]
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    if not train_rows or not val_rows:
        raise ConfigError(f"{cfg.manifest}: needs images in both the train and val splits")
    train_set = DetectionSet(train_rows, cfg.root, classes, train=True)
    val_set = DetectionSet(val_rows, cfg.root, classes, train=False)
    weights = resolve_weights(cfg.weights) if cfg.weights else None
    torch.manual_seed(cfg.loop.seed)
    model = create_detector(cfg.model, len(classes), cfg.image_size, weights)

    def step(model, batch, device):
        images, targets = batch
        losses = model([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        return sum(losses.values())

    def validate(model, device):
        preds, targets = predict(model, val_set, device)
        m = mean_average_precision(preds, targets, classes)
        return {"map_50": m["map_50"], "map": m["map"]}

    loop = replace(
        cfg.loop,
        out_dir=cfg.out_dir,
        monitor="map_50",
        # the weights by content: a NAME re-imported with other tensors is other weights
        fingerprint=config_fingerprint(replace(cfg, weights=weights and weights.sha256), "manifest", "dataset", "root"),
    )
    tic = time.perf_counter()
    summary = fit(model, train_set, step, validate, loop, collate=collate)
    fit_seconds = time.perf_counter() - tic
    config = {
        "family": "detector",
        "kind": "detector",
        "model": cfg.model,
        "image_size": cfg.image_size,
        **normalisation(model),
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    train_metrics = {
        "fit_seconds": round(fit_seconds, 3),
        "n_train": len(train_rows),
        "n_val": len(val_rows),
        **summary,
    }
    record = lineage.collect(
        params={
            "model": cfg.model,
            "image_size": cfg.image_size,
            "weights": weights_lineage(weights),
            "loop": lineage_settings(loop),
            "split": dataset.get("split", {}),
        },
        seed=loop.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
        source=dataset.get("source"),
    )
    write_model_dir(cfg.out_dir, config=config, labels=classes, train_metrics=train_metrics, lineage=record)
    return train_metrics
