"""Train a detector on manifest rows with the shared loop (early stopping on val mAP@.5)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from insectml import lineage
from insectml.data.manifest import read_json, read_manifest
from insectml.detector.data import DetectionSet, collate
from insectml.detector.metrics import mean_average_precision, predict
from insectml.detector.models import create_detector
from insectml.errors import ConfigError
from insectml.training.loop import LoopConfig, config_fingerprint, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorTrainConfig:
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    model: str = "ssdlite320_mobilenet_v3_large"
    weights: Path | None = None
    image_size: int = 320
    epochs: int = 100
    batch_size: int = 8
    lr: float = 5e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 2.0
    patience: int = 15
    seed: int = 42
    threads: int = 1
    resume: bool = False
    device: str = "auto"
    checkpoint_dir: Path | None = None


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
    torch.manual_seed(cfg.seed)
    model = create_detector(cfg.model, len(classes), cfg.image_size, cfg.weights)

    def step(model, batch, device):
        images, targets = batch
        losses = model([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        return sum(losses.values())

    def validate(model, device):
        preds, targets = predict(model, val_set, device)
        m = mean_average_precision(preds, targets, classes)
        return {"map_50": m["map_50"], "map": m["map"]}

    loop = LoopConfig(
        out_dir=cfg.out_dir,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
        patience=cfg.patience,
        monitor="map_50",
        seed=cfg.seed,
        threads=cfg.threads,
        resume=cfg.resume,
        device=cfg.device,
        checkpoint_dir=cfg.checkpoint_dir,
        fingerprint=config_fingerprint(cfg, "manifest", "dataset", "root"),
    )
    tic = time.perf_counter()
    summary = fit(model, train_set, step, validate, loop, collate=collate)
    fit_seconds = time.perf_counter() - tic
    out = cfg.out_dir
    config = {
        "family": "detector",
        "kind": "detector",
        "model": cfg.model,
        "image_size": cfg.image_size,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "labels.json").write_text(json.dumps(classes, indent=2) + "\n")
    train_metrics = {
        "fit_seconds": round(fit_seconds, 3),
        "n_train": len(train_rows),
        "n_val": len(val_rows),
        **summary,
    }
    (out / "train_metrics.json").write_text(json.dumps(train_metrics, indent=2) + "\n")
    record = lineage.collect(
        params={
            "model": cfg.model,
            "image_size": cfg.image_size,
            "weights": str(cfg.weights) if cfg.weights else None,
            "loop": {
                k: v
                for k, v in vars(loop).items()
                if k not in ("out_dir", "resume", "device", "checkpoint_dir", "fingerprint")
            },
            "split": dataset.get("split", {}),
        },
        seed=cfg.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
    )
    (out / "lineage.json").write_text(json.dumps(record, indent=2) + "\n")
    return train_metrics
