"""Train the embedder on base classes with the shared loop; early stopping on
novel-class validation episodes (5-way 1-shot accuracy on classes never trained on)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from insectml import lineage
from insectml.data.manifest import read_json, read_manifest
from insectml.errors import ConfigError
from insectml.fewshot.data import BalancedBatches, ImageSet
from insectml.fewshot.embed import embed, episode_accuracy
from insectml.fewshot.losses import MetricLoss, Trainable
from insectml.fewshot.model import create_embedder
from insectml.training.loop import LoopConfig, config_fingerprint, fit


@dataclass(frozen=True)
class FewshotTrainConfig:
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    backbone: str = "resnet10t"
    dim: int = 128
    image_size: int = 64
    weights: Path | None = None
    loss: str = "proto"
    miner: str = "none"
    shots: int = 1  # prototypical loss: support images per class in a training episode
    epochs: int = 40
    classes_per_batch: int = 16
    per_class: int = 3
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    patience: int = 10
    val_episodes: int = 300
    seed: int = 42
    threads: int = 1
    resume: bool = False
    device: str = "auto"
    checkpoint_dir: Path | None = None


def train_fewshot(cfg: FewshotTrainConfig) -> dict:
    started = lineage.now()
    dataset = read_json(cfg.dataset, "dataset description")
    rows = read_manifest(cfg.manifest)
    base = sorted(dataset["split_classes"]["train"])
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    if not train_rows or not val_rows:
        raise ConfigError(f"{cfg.manifest}: needs base (train) and novel validation (val) classes")
    if cfg.loss == "proto" and cfg.per_class <= cfg.shots:
        raise ConfigError(f"--per-class {cfg.per_class} must exceed --shots {cfg.shots} (queries are the rest)")
    train_set = ImageSet(train_rows, cfg.root, base, cfg.image_size, train=True)
    val_set = ImageSet(val_rows, cfg.root, [], cfg.image_size, train=False)
    val_labels = [r["label"] for r in val_rows]
    torch.manual_seed(cfg.seed)
    embedder = create_embedder(cfg.backbone, cfg.dim, cfg.weights)
    model = Trainable(embedder, MetricLoss(cfg.loss, len(base), cfg.dim, cfg.miner, cfg.shots))

    def step(model, batch, device):
        images, targets = batch
        return model.loss(model.embedder(images.to(device)), targets.to(device))

    def validate(model, device):
        emb = embed(model.embedder, val_set, device)
        one = episode_accuracy(emb, val_labels, way=5, shot=1, episodes=cfg.val_episodes, seed=cfg.seed)
        return {"episode_acc": one["mean"] or 0.0}

    def batches(generator):
        return BalancedBatches(train_set.targets, cfg.classes_per_batch, cfg.per_class, generator)

    loop = LoopConfig(
        out_dir=cfg.out_dir,
        epochs=cfg.epochs,
        batch_size=cfg.classes_per_batch * cfg.per_class,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        warmup_epochs=cfg.warmup_epochs,
        patience=cfg.patience,
        monitor="episode_acc",
        seed=cfg.seed,
        threads=cfg.threads,
        resume=cfg.resume,
        device=cfg.device,
        checkpoint_dir=cfg.checkpoint_dir,
        fingerprint=config_fingerprint(cfg, "manifest", "dataset", "root"),
    )
    tic = time.perf_counter()
    summary = fit(model, train_set, step, validate, loop, batch_sampler=batches)
    fit_seconds = time.perf_counter() - tic
    out = cfg.out_dir
    # weights.pt holds the embedder only; the loss's parameters stay in checkpoints/last.pt
    torch.save(model.embedder.state_dict(), out / "weights.pt")
    config = {
        "family": "fewshot",
        "kind": "embedder",
        "backbone": cfg.backbone,
        "dim": cfg.dim,
        "image_size": cfg.image_size,
        "loss": cfg.loss,
        "n_parameters": sum(p.numel() for p in model.embedder.parameters()),
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "labels.json").write_text(json.dumps(base, indent=2) + "\n")
    metrics = {"fit_seconds": round(fit_seconds, 3), "n_train": len(train_rows), "n_base_classes": len(base), **summary}
    (out / "train_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    record = lineage.collect(
        params={
            **{k: v for k, v in config.items() if k not in ("family", "kind", "n_parameters")},
            "weights": str(cfg.weights) if cfg.weights else None,
            "miner": cfg.miner,
            "shots": cfg.shots,
            "classes_per_batch": cfg.classes_per_batch,
            "per_class": cfg.per_class,
            "loop": {
                k: v
                for k, v in vars(loop).items()
                if k not in ("out_dir", "resume", "device", "checkpoint_dir", "fingerprint")
            },
            "split": dataset.get("split", {}),
        },
        seed=cfg.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("classes_per_split")},
        started=started,
    )
    (out / "lineage.json").write_text(json.dumps(record, indent=2) + "\n")
    return metrics
