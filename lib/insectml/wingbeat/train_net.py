"""Train a neural wingbeat model (CNN, GRU, transformer) with the shared loop."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from insectml import lineage
from insectml.errors import ConfigError
from insectml.metrics import classification_metrics
from insectml.modeldir import write_model_dir
from insectml.training.loop import LoopConfig, config_fingerprint, declared_loop, fit, lineage_settings
from insectml.wingbeat.family import PARAMS
from insectml.wingbeat.features import load_features
from insectml.wingbeat.folds import select_rows, write_heldout
from insectml.wingbeat.nets import count_parameters, create_net
from insectml.wingbeat.train import calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetConfig:
    features: Path
    out_dir: Path
    model: str
    backbone: str = PARAMS.default("wingbeat_backbone")
    weights: Path | None = None
    loop: LoopConfig = field(default_factory=partial(declared_loop, PARAMS))
    augment: bool = True
    folds: Path | None = None  # folds.json of 'insectml cv plan'
    fold: int | None = None  # the fold held out; None with folds: the refit on all non-test data


class SpectrogramSet(torch.utils.data.Dataset):
    """Log-mel spectrograms (dB) with their real-frame counts and labels; when
    ``augment`` is set each item gets a random time shift, gain, noise floor and
    SpecAugment time/frequency masks, all drawn from torch's global generator."""

    def __init__(self, x: np.ndarray, frames: np.ndarray, y: np.ndarray, norm: tuple[float, float], augment: bool):
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.frames = torch.as_tensor(frames, dtype=torch.long)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.mean, self.std = norm
        self.augment = augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x, n = self.x[i].clone(), int(self.frames[i])
        if self.augment:
            x = augment(x, n)
        return (x - self.mean) / self.std, self.frames[i], self.y[i]


def augment(x: torch.Tensor, n: int) -> torch.Tensor:
    """Time shift (circular, within the real frames), gain (±6 dB), an additive noise
    floor (half the time), and one frequency and one time mask."""
    r = torch.rand(6)
    x[:, :n] = torch.roll(x[:, :n], shifts=int(r[0] * n), dims=1)
    x[:, :n] += r[1] * 12 - 6
    if r[2] < 0.5:
        floor_db = -60 + 30 * r[3]
        x[:, :n] = 10 * torch.log10(10 ** (x[:, :n] / 10) + 10 ** (floor_db / 10) * torch.rand(x.shape[0], n))
    fill = x[:, :n].mean()
    width = int(r[4] * 8)
    start = int(torch.randint(0, max(1, x.shape[0] - width), (1,)))
    x[start : start + width, :n] = fill
    width = int(r[5] * 0.1 * n)
    start = int(torch.randint(0, max(1, n - width), (1,)))
    x[:, start : start + width] = fill
    return x


def predict_logits(
    model: torch.nn.Module, data: SpectrogramSet, device: torch.device, batch: int = 128
) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False)
    out = [model(x.to(device), f.to(device)).float().cpu() for x, f, _ in loader]
    return torch.cat(out)


def train_net(cfg: NetConfig) -> dict:
    """Fit on the rows of the task's role (:mod:`.folds`) and write a model directory:
    ``weights.pt``, ``config.json``, ``labels.json``, ``lineage.json``,
    ``train_metrics.json``, ``history.jsonl``, ``checkpoints/last.pt`` (and ``heldout.npz``
    for a fold). Without folds: early stopping on the val split's macro-F1, the temperature
    fitted on its logits. In a fold or the refit: a fixed budget of ``epochs`` (the last
    epoch's weights), so the folds estimate what the refit does."""
    from insectml.stats import fit_temperature

    started = lineage.now()
    feats = load_features(cfg.features)
    if "logmel" not in feats:
        raise ConfigError(f"{cfg.features}: has no log-mel spectrograms (made by an older 'features')")
    dataset = json.loads(str(feats["dataset"])) if "dataset" in feats else {}
    classes = dataset.get("classes") or sorted(set(feats["labels"].tolist()))
    index = {c: i for i, c in enumerate(classes)}
    y = np.asarray([index[label] for label in feats["labels"]])
    x, frames = feats["logmel"], feats["frames"]
    rows = select_rows(feats, cfg.features, cfg.folds, cfg.fold)
    tr, va = rows.train, rows.held
    real = np.concatenate([x[i, :, : frames[i]].ravel() for i in np.flatnonzero(tr)])
    norm = (float(real.mean()), float(real.std() + 1e-6))
    train_set = SpectrogramSet(x[tr], frames[tr], y[tr], norm, augment=cfg.augment)
    val_set = SpectrogramSet(x[va], frames[va], y[va], norm, augment=False)

    torch.manual_seed(cfg.loop.seed)
    options = {"backbone": cfg.backbone} if cfg.model == "cnn" else {}
    n_mels = int(x.shape[1])
    model = create_net(cfg.model, len(classes), n_mels, weights=cfg.weights, **options)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(model, batch, device):
        xb, fb, yb = (t.to(device) for t in batch)
        return loss_fn(model(xb, fb), yb)

    def validate(model, device) -> dict:
        logits = predict_logits(model, val_set, device)
        m = classification_metrics(y[va], logits.argmax(1).numpy(), classes)
        return {
            "macro_f1": m["macro_f1"],
            "accuracy": m["accuracy"],
            "loss": float(loss_fn(logits, torch.as_tensor(y[va]))),
        }

    keep = "best" if rows.role == "val" else "last"
    loop = replace(
        cfg.loop,
        out_dir=cfg.out_dir,
        monitor="macro_f1",
        keep=keep,
        fingerprint=config_fingerprint(cfg, "features", "folds"),
    )
    tic = time.perf_counter()
    summary = fit(model, train_set, step, validate if va.any() else None, loop)
    fit_seconds = time.perf_counter() - tic
    model.eval()
    val, temperature = None, 1.0
    if va.any():
        with torch.no_grad():
            logits = predict_logits(model, val_set, next(model.parameters()).device).numpy()
        val = classification_metrics(y[va], logits.argmax(1), classes)
        if rows.role == "val":
            temperature = fit_temperature(logits, y[va])
        else:
            write_heldout(cfg.out_dir, feats, rows, y, logits, logits=True)

    config = {
        "family": "wingbeat",
        "kind": "net",
        "model": cfg.model,
        "options": options,
        "frontend": feats["frontend"].to_dict(),
        "norm": {"mean": norm[0], "std": norm[1]},
        "n_parameters": count_parameters(model),
        **calibration(rows.role, temperature),
    }
    train_metrics = {"val": val, "fit_seconds": round(fit_seconds, 3), "n_train": int(tr.sum()), **summary}
    record = lineage.collect(
        params={
            "model": cfg.model,
            "options": options,
            "weights": str(cfg.weights) if cfg.weights else None,
            "loop": lineage_settings(loop),
            "augment": cfg.augment,
            "frontend": feats["frontend"].to_dict(),
            "split": dataset.get("split", {}),
            "rows": rows.lineage(),
        },
        seed=loop.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
    )
    write_model_dir(cfg.out_dir, config=config, labels=classes, train_metrics=train_metrics, lineage=record)
    return train_metrics
