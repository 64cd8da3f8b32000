"""Train the embedder with the shared loop on the classes of the task's role
(:mod:`insectml.fewshot.folds`): on the base classes with early stopping on novel-class
validation episodes (5-way 1-shot accuracy on classes never trained on) and the temperature
of the probabilities fitted on those classes; or, in cross-validation, for a fixed budget on
the other folds' classes (a held-out fold's scores in ``heldout.npz``) or on every non-test
class (the refit)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from insectml import lineage
from insectml.data.manifest import read_json, read_manifest
from insectml.errors import ConfigError
from insectml.fewshot.data import BalancedBatches, ImageSet
from insectml.fewshot.embed import embed, episode_accuracy
from insectml.fewshot.evaluate import prototype_classification
from insectml.fewshot.family import PARAMS
from insectml.fewshot.folds import Classes, score_heldout, select_classes, write_heldout
from insectml.fewshot.gallery import fit_cosine_temperature
from insectml.fewshot.losses import MetricLoss, Trainable
from insectml.fewshot.model import create_embedder
from insectml.modeldir import write_model_dir
from insectml.training.loop import LoopConfig, config_fingerprint, declared_loop, fit, lineage_settings


@dataclass(frozen=True)
class FewshotTrainConfig:
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    backbone: str = PARAMS.default("fewshot_backbone")
    dim: int = PARAMS.default("fewshot_dim")
    image_size: int = PARAMS.default("fewshot_image_size")
    weights: Path | None = None
    loss: str = PARAMS.default("fewshot_loss")
    miner: str = PARAMS.default("fewshot_miner")
    shots: int = PARAMS.default("fewshot_shots")  # prototypical loss: support images per class in a training episode
    classes_per_batch: int = PARAMS.default("fewshot_classes_per_batch")
    per_class: int = PARAMS.default("fewshot_per_class")
    val_episodes: int = PARAMS.default("fewshot_val_episodes")  # also: the episodes of a held-out fold
    folds: Path | None = None  # folds.json of 'insectml cv plan --unit class'
    fold: int | None = None  # the fold held out; None with folds: the refit on every non-test class
    # its batch_size is not used: a batch is classes_per_batch x per_class images
    loop: LoopConfig = field(default_factory=partial(declared_loop, PARAMS))


def train_fewshot(cfg: FewshotTrainConfig) -> dict:
    started = lineage.now()
    dataset = read_json(cfg.dataset, "dataset description")
    chosen = select_classes(read_manifest(cfg.manifest), cfg.manifest, cfg.folds, cfg.fold)
    base = sorted({r["label"] for r in chosen.train})
    train_rows = chosen.train
    if cfg.loss == "proto" and cfg.per_class <= cfg.shots:
        raise ConfigError(f"--per-class {cfg.per_class} must exceed --shots {cfg.shots} (queries are the rest)")
    train_set = ImageSet(train_rows, cfg.root, base, cfg.image_size, train=True)
    val_set = ImageSet(chosen.held, cfg.root, [], cfg.image_size, train=False)
    val_labels = [r["label"] for r in chosen.held]
    torch.manual_seed(cfg.loop.seed)
    embedder = create_embedder(cfg.backbone, cfg.dim, cfg.weights)
    model = Trainable(embedder, MetricLoss(cfg.loss, len(base), cfg.dim, cfg.miner, cfg.shots))

    def step(model, batch, device):
        images, targets = batch
        return model.loss(model.embedder(images.to(device)), targets.to(device))

    def validate(model, device):
        emb = embed(model.embedder, val_set, device)
        one = episode_accuracy(emb, val_labels, way=5, shot=1, episodes=cfg.val_episodes, seed=cfg.loop.seed)
        return {"episode_acc": one["mean"] or 0.0}

    def batches(generator):
        return BalancedBatches(train_set.targets, cfg.classes_per_batch, cfg.per_class, generator)

    loop = replace(
        cfg.loop,
        out_dir=cfg.out_dir,
        batch_size=cfg.classes_per_batch * cfg.per_class,
        monitor="episode_acc",
        # a fold or the refit: a fixed budget, so the folds estimate what the refit does
        keep="best" if chosen.role == "val" else "last",
        fingerprint=config_fingerprint(cfg, "manifest", "dataset", "root", "folds"),
    )
    tic = time.perf_counter()
    summary = fit(model, train_set, step, validate if chosen.role == "val" else None, loop, batch_sampler=batches)
    fit_seconds = time.perf_counter() - tic
    # weights.pt holds the embedder only; the loss's parameters stay in checkpoints/last.pt
    torch.save(model.embedder.state_dict(), cfg.out_dir / "weights.pt")
    config = {
        "family": "fewshot",
        "kind": "embedder",
        "backbone": cfg.backbone,
        "dim": cfg.dim,
        "image_size": cfg.image_size,
        "loss": cfg.loss,
        "n_parameters": sum(p.numel() for p in model.embedder.parameters()),
    }
    config |= _held_out(model.embedder, config, chosen, cfg, val_set, dataset)
    if chosen.role != "val":
        summary = {"epochs": loop.epochs}  # no validation: nothing was best
    metrics = {"fit_seconds": round(fit_seconds, 3), "n_train": len(train_rows), "n_base_classes": len(base), **summary}
    record = lineage.collect(
        params={
            **{k: v for k, v in config.items() if k not in ("family", "kind", "n_parameters")},
            "weights": str(cfg.weights) if cfg.weights else None,
            "miner": cfg.miner,
            "shots": cfg.shots,
            "classes_per_batch": cfg.classes_per_batch,
            "per_class": cfg.per_class,
            "loop": lineage_settings(loop),
            "split": dataset.get("split", {}),
            "rows": chosen.lineage(),
        },
        seed=loop.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("classes_per_split")},
        started=started,
    )
    write_model_dir(cfg.out_dir, config=config, labels=base, train_metrics=metrics, lineage=record)
    return metrics


def _held_out(
    embedder: torch.nn.Module,
    config: dict,
    chosen: Classes,
    cfg: FewshotTrainConfig,
    val_set: ImageSet,
    dataset: dict,
) -> dict:
    """config.json's calibration entries, after training: the temperature of the
    probabilities fitted on the val classes' nearest-prototype classification (``val``);
    none yet for a fold (its held-out scores written to ``heldout.npz``) or the refit
    (``insectml fewshot cv`` fits it on the folds)."""
    device = next(embedder.parameters()).device
    if chosen.role == "val":
        gallery, queries, truth = prototype_classification(embed(embedder, val_set, device), chosen.held)
        temperature = fit_cosine_temperature(gallery.similarities(queries), truth)
        return {
            "temperature": round(temperature, 6),
            "temperature_fitted_on": f"val classes ({len(gallery.classes)}, nearest prototype)",
        }
    if chosen.role == "fold":
        n_support = dataset.get("split", {}).get("support", PARAMS.default("fewshot_support"))
        arrays = score_heldout(
            embedder, config, chosen.held, cfg.root, n_support, cfg.val_episodes, cfg.loop.seed, device
        )
        write_heldout(cfg.out_dir, chosen, arrays)
        return {"temperature": None, "temperature_fitted_on": None}
    return {"temperature": None, "temperature_fitted_on": "pending: insectml fewshot cv"}
