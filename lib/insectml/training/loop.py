"""One training loop for every neural family (wingbeat nets now; detector, few-shot later).

Read top to bottom: seed → build optimiser and schedule → (resume) → for each epoch:
train one pass, validate, log a JSONL row, checkpoint, early-stop. Family code
supplies the model, a ``step(model, batch) -> loss`` function and a
``validate(model) -> dict`` function whose ``cfg.monitor`` entry is maximised.

Determinism: every random draw comes from torch's global generator (restored on
resume) or from a per-epoch data-order generator seeded from ``seed`` and the epoch, so a
run killed after epoch k and resumed ends with the same weights as one that never
stopped (on CPU, same thread count).

Retries on a cluster: with ``checkpoint_dir`` set (shared storage, outside the task's
work folder) the checkpoint lives in ``checkpoint_dir/<key>/`` where the key hashes the
loop settings and the family's ``fingerprint`` (model options, input data). A task that
was cancelled, pre-empted or timed out and is started again with the same settings and
data continues from its last epoch; anything else starts fresh. The checkpoint is kept
after the last epoch: a task killed after training but before its outputs were complete
(a time limit during packaging) is retried without training again; it goes with the
work folder (``nextflow clean``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    out_dir: Path
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    patience: int = 8
    monitor: str = "macro_f1"
    seed: int = 42
    threads: int = 1
    resume: bool = False
    device: str = "auto"
    checkpoint_dir: Path | None = None
    fingerprint: str = ""


# Settings that do not change what training computes: they stay out of the checkpoint key.
_NOT_IN_KEY = ("out_dir", "threads", "resume", "device", "checkpoint_dir")


def config_fingerprint(config, *input_fields: str) -> str:
    """``fingerprint`` of a family's config dataclass: its ``input_fields`` (paths) by
    content, every other field by value, minus the fields that do not change the result."""
    skip = (*_NOT_IN_KEY, *input_fields)
    settings = {k: v for k, v in asdict(config).items() if k not in skip}
    return fingerprint(settings, *(getattr(config, f) for f in input_fields))


def fingerprint(settings: dict, *inputs: Path) -> str:
    """A digest of a family's training settings and its inputs, for ``LoopConfig.fingerprint``.

    Files are hashed by content; folders (image roots, feature folders) by the relative
    path, size and modification time of every file in them, so a large image tree is
    listed, not read.
    """
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        path = Path(path)
        if path.is_dir():
            for f in sorted(p for p in path.rglob("*") if p.is_file()):
                st = f.stat()
                h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        elif path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def checkpoint_key(cfg: LoopConfig) -> str:
    values = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_KEY}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def fit(
    model: torch.nn.Module,
    train_set: torch.utils.data.Dataset,
    step: Callable[[torch.nn.Module, object, torch.device], torch.Tensor],
    validate: Callable[[torch.nn.Module, torch.device], dict],
    cfg: LoopConfig,
    collate: Callable | None = None,
    batch_sampler: Callable[[torch.Generator], torch.utils.data.Sampler] | None = None,
) -> dict:
    """Train ``model`` in place (it ends holding the best weights); returns a summary.

    Writes into ``cfg.out_dir``: ``history.jsonl`` (one row per epoch),
    ``checkpoints/last.pt`` (everything needed to resume; in ``cfg.checkpoint_dir/<key>/``
    when that is set) and ``weights.pt`` (best).
    ``batch_sampler(generator)``: batches of indices instead of shuffled ``batch_size``
    chunks (class-balanced batches, episodes), drawn from the epoch's generator.
    """
    from tqdm import tqdm

    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    use_amp = device.type == "cuda"
    model.to(device)
    if use_amp:
        model.to(memory_format=torch.channels_last)
    out = cfg.out_dir
    out.mkdir(parents=True, exist_ok=True)
    external = cfg.checkpoint_dir is not None
    ckdir = Path(cfg.checkpoint_dir) / checkpoint_key(cfg) if external else out / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    if batch_sampler is not None:
        steps_per_epoch = len(batch_sampler(torch.Generator()))
    else:
        steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = cosine_with_warmup(optimizer, int(cfg.warmup_epochs * steps_per_epoch), cfg.epochs * steps_per_epoch)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_epoch, best, best_epoch, bad_epochs = 1, -math.inf, 0, 0
    last = ckdir / "last.pt"
    history_path = out / "history.jsonl"
    history: list[dict] = []
    if (cfg.resume or external) and last.is_file():
        state = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        np.random.set_state(state["numpy_rng"])
        random.setstate(state["python_rng"])
        start_epoch, best, best_epoch, bad_epochs = (
            state["epoch"] + 1,
            state["best"],
            state["best_epoch"],
            state["bad_epochs"],
        )
        history = state.get("history", [])[: state["epoch"]]
        history_path.write_text("".join(json.dumps(r) + "\n" for r in history))
        if external and (ckdir / "best.pt").is_file():
            shutil.copyfile(ckdir / "best.pt", out / "weights.pt")
        log.info("resumed from checkpoint at epoch %d (%s; best %s %.4f)", state["epoch"], last, cfg.monitor, best)
    else:
        if history_path.is_file():
            history_path.unlink()
        if external:
            log.info("no checkpoint for these settings in %s: starting at epoch 1", ckdir)

    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        if bad_epochs >= cfg.patience:
            stopped_early = True
            break
        model.train()
        order = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        if batch_sampler is not None:
            loader = torch.utils.data.DataLoader(train_set, batch_sampler=batch_sampler(order), collate_fn=collate)
        else:
            loader = torch.utils.data.DataLoader(
                train_set, batch_size=cfg.batch_size, shuffle=True, generator=order, collate_fn=collate
            )
        tic, total, seen = time.perf_counter(), 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", leave=False, disable=None)
        for batch in bar:
            with torch.autocast(device.type, enabled=use_amp):
                loss = step(model, batch, device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += float(loss.detach()) * len(batch[-1])
            seen += len(batch[-1])
            bar.set_postfix(loss=f"{total / seen:.4f}")
        model.eval()
        with torch.no_grad():
            metrics = validate(model, device)
        score = float(metrics[cfg.monitor])
        improved = score > best
        if improved:
            best, best_epoch, bad_epochs = score, epoch, 0
            torch.save(model.state_dict(), out / "weights.pt")
            if external:
                shutil.copyfile(out / "weights.pt", ckdir / "best.pt")
        else:
            bad_epochs += 1
        row = {
            "epoch": epoch,
            "train_loss": total / max(1, seen),
            "lr": scheduler.get_last_lr()[0],
            "seconds": round(time.perf_counter() - tic, 3),
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        history.append(row)
        # checkpoint first: a history row on disk means its epoch can be resumed
        _save_atomic(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "numpy_rng": np.random.get_state(),
                "python_rng": random.getstate(),
                "epoch": epoch,
                "best": best,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "history": history,
                "config": _jsonable(asdict(cfg)),
            },
            last,
        )
        with history_path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        log.info(
            "epoch %d: loss %.4f, val %s %.4f%s",
            epoch,
            row["train_loss"],
            cfg.monitor,
            score,
            " (best)" if improved else "",
        )
    model.load_state_dict(torch.load(out / "weights.pt", map_location=device, weights_only=True))
    return {"best_epoch": best_epoch, f"best_val_{cfg.monitor}": best, "stopped_early": stopped_early}


def _jsonable(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
