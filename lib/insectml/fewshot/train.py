"""Train the embedder with the shared loop on the classes of the task's role
(:mod:`insectml.fewshot.folds`): on the base classes with early stopping on novel-class
validation episodes (5-way 1-shot accuracy on classes never trained on) and the temperature
of the probabilities fitted on those classes; or, in cross-validation, for a fixed budget on
the other folds' classes (a held-out fold's scores in ``heldout.npz``) or on every non-test
class (the refit)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import torch

from insectml import lineage
from insectml.data.manifest import read_json, read_manifest
from insectml.errors import ConfigError
from insectml.fewshot.data import BalancedBatches, ImageSet, normalisation
from insectml.fewshot.embed import embed, episode_accuracy
from insectml.fewshot.family import PARAMS
from insectml.fewshot.folds import Classes, score_heldout, select_classes, write_heldout
from insectml.fewshot.gallery import fit_cosine_temperature, prototype_classification
from insectml.fewshot.losses import MetricLoss, Trainable
from insectml.fewshot.model import create_embedder
from insectml.fileio import open_atomic
from insectml.modeldir import write_model_dir
from insectml.training.loop import (
    LoopConfig,
    config_fingerprint,
    declared_loop,
    fit,
    lineage_settings,
    pick_device,
)
from insectml.weights.backbones import architecture
from insectml.weights.store import Weights

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FewshotTrainConfig:
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    backbone: str = PARAMS.default("fewshot_backbone")
    dim: int = PARAMS.default("fewshot_dim")
    image_size: int = PARAMS.default("fewshot_image_size")
    weights: Weights | None = None  # store.resolve of --weights
    mode: str = PARAMS.default("fewshot_mode")
    backbone_lr_scale: float = PARAMS.default("fewshot_backbone_lr_scale")
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
    if cfg.mode == "frozen" and cfg.weights is None:
        raise ConfigError("--mode frozen needs --weights: an untrained backbone embeds nothing useful")
    started = lineage.now()
    dataset = read_json(cfg.dataset, "dataset description")
    chosen = select_classes(read_manifest(cfg.manifest), cfg.manifest, cfg.folds, cfg.fold)
    base = sorted({r["label"] for r in chosen.train})
    train_rows = chosen.train
    if cfg.loss == "proto" and cfg.per_class <= cfg.shots and cfg.mode != "frozen":
        raise ConfigError(f"--per-class {cfg.per_class} must exceed --shots {cfg.shots} (queries are the rest)")
    arch = architecture(cfg.weights, cfg.backbone)
    norm = normalisation(cfg.weights.manifest if cfg.weights else {})  # the weights' mean and std
    _check_settings(cfg, arch.model)
    train_set = ImageSet(train_rows, cfg.root, base, cfg.image_size, train=True, **norm)
    val_set = ImageSet(chosen.held, cfg.root, [], cfg.image_size, train=False, **norm)
    val_labels = [r["label"] for r in chosen.held]
    torch.manual_seed(cfg.loop.seed)
    embedder = create_embedder(cfg.backbone, cfg.dim, cfg.weights, cfg.mode, cfg.backbone_lr_scale)
    _check_image_size(embedder, cfg.image_size, arch.model)

    def validate(embedder, device):
        emb = embed(embedder, val_set, device)
        one = episode_accuracy(emb, val_labels, way=5, shot=1, episodes=cfg.val_episodes, seed=cfg.loop.seed)
        return {"episode_acc": one["mean"] or 0.0}

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
    if cfg.mode == "frozen":
        log.info("frozen: no training")
        summary = _frozen(embedder, validate if chosen.role == "val" else None, loop)
    else:
        model = Trainable(embedder, MetricLoss(cfg.loss, len(base), embedder.dim, cfg.miner, cfg.shots))

        def step(model, batch, device):
            images, targets = batch
            return model.loss(model.embedder(images.to(device)), targets.to(device))

        def batches(generator):
            return BalancedBatches(train_set.targets, cfg.classes_per_batch, cfg.per_class, generator)

        def validate_trainable(model, device):
            return validate(model.embedder, device)

        val = validate_trainable if chosen.role == "val" else None
        summary = fit(model, train_set, step, val, loop, batch_sampler=batches)
    fit_seconds = time.perf_counter() - tic
    # weights.pt holds the embedder only; the loss's parameters stay in checkpoints/last.pt
    with open_atomic(cfg.out_dir / "weights.pt", "wb") as fh:
        torch.save(embedder.state_dict(), fh)
    config = {
        "family": "fewshot",
        "kind": "embedder",
        **arch.config(),
        "head": embedder.head is not None,
        "mode": cfg.mode,
        "dim": embedder.dim,
        "image_size": cfg.image_size,
        **norm,
        "loss": cfg.loss,
        "n_parameters": sum(p.numel() for p in embedder.parameters()),
    }
    config |= _held_out(embedder, config, chosen, cfg, val_set, dataset)
    if chosen.role != "val":
        summary = {"epochs": 0 if cfg.mode == "frozen" else loop.epochs}  # no validation: nothing was best
    trained = 0 if cfg.mode == "frozen" else sum(p.numel() for p in embedder.parameters() if p.requires_grad)
    metrics = {
        "fit_seconds": round(fit_seconds, 3),
        "n_train": len(train_rows),
        "n_base_classes": len(base),
        "n_trained_parameters": trained,
        **summary,
    }
    record = lineage.collect(
        params={
            **{k: v for k, v in config.items() if k not in ("family", "kind", "n_parameters")},
            "weights": cfg.weights.lineage() if cfg.weights else None,
            "backbone_lr_scale": getattr(embedder.backbone, "lr_scale", None),
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
        source=dataset.get("source"),
    )
    write_model_dir(cfg.out_dir, config=config, labels=base, train_metrics=metrics, lineage=record)
    return metrics


def _check_settings(cfg: FewshotTrainConfig, model: str) -> None:
    """Warn about settings the weights override or advise against."""
    if cfg.weights is not None and cfg.weights.kind is not None and cfg.backbone != model:
        log.info("backbone: %s from the weights (--backbone %s not used)", model, cfg.backbone)
    size = cfg.weights.input_size if cfg.weights else None
    if size is not None and size != cfg.image_size:
        log.warning("--image-size %d: the weights were trained on %d-pixel images", cfg.image_size, size)
    if cfg.mode == "probe" and cfg.weights is None:
        log.warning("--mode probe without --weights: the head learns on a random backbone's features")


def _check_image_size(embedder: torch.nn.Module, size: int, model: str) -> None:
    """One line, not a traceback, when the backbone takes fixed-size images of another size
    (a vision transformer's position embeddings)."""
    embedder.eval()
    try:
        with torch.no_grad():
            embedder.backbone(torch.zeros(1, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--image-size {size}: the {model} backbone does not take {size}-pixel images ({reason})"
        ) from None


def _frozen(embedder: torch.nn.Module, validate, loop: LoopConfig) -> dict:
    """The summary ``fit`` would give, with no training: the one embedder scored once."""
    torch.set_num_threads(loop.threads)
    embedder.to(pick_device(loop.device)).eval()
    loop.out_dir.mkdir(parents=True, exist_ok=True)
    if validate is None:
        return {}
    score = validate(embedder, next(embedder.parameters()).device)[loop.monitor]
    return {"epochs": 0, "best_epoch": 0, f"best_val_{loop.monitor}": score, "stopped_early": False}


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
