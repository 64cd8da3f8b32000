"""One training loop for every neural family (wingbeat nets now; detector, few-shot later).

Read top to bottom: ``fit`` seeds, builds the optimiser and schedule, resumes if asked,
then for each epoch: ``train_one_epoch``, ``evaluate`` (eval mode, ``inference_mode``),
``_end_epoch`` (best weights, checkpoint, a JSONL history row), early stop. Family code
supplies the model, a ``step(model, batch, device) -> loss`` function and a
``validate(model, device) -> dict`` function whose ``cfg.monitor`` entry is maximised.
With ``keep="last"`` the loop trains a fixed budget instead: no early stopping, the last
epoch's weights kept (what cross-validation needs: the folds estimate the very procedure
that the refit on all data, with nothing to validate on, repeats); ``validate`` may then
be None, and when given only fills the history.
With ``swa_epochs = k`` (``keep="last"`` only): stochastic weight averaging (Izmailov et
al. 2018): the cosine schedule reaches ``SWA_LR_SHARE`` of the peak learning rate when
the last ``k`` epochs begin and holds it there, the weights at the end of each of those
epochs are averaged (``torch.optim.swa_utils.AveragedModel``, its state in every
checkpoint, so a resumed run averages the same epochs), and the average, with its batch
norm statistics recomputed on the training data, is the model kept.
A nan or infinite training loss stops training with :class:`TrainingDiverged`.

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
import pickle
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from insectml.errors import InputFileError, UserError
from insectml.fileio import copy_atomic, open_atomic, write_text_atomic
from insectml.runparams import GENERAL
from insectml.spec import Group

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    out_dir: Path | None = None  # set by the family's train function (``dataclasses.replace``)
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    patience: int = 8
    monitor: str = "macro_f1"
    keep: str = "best"  # "best": best monitored epoch + early stopping; "last": a fixed budget
    seed: int = GENERAL.default("seed")
    threads: int = 1
    resume: bool = False
    device: str = "auto"
    checkpoint_dir: Path | None = None
    fingerprint: str = ""
    swa_epochs: int = 0  # average the weights of the last N epochs (keep="last" only); 0: off


def declared_loop(group: Group) -> LoopConfig:
    """A ``LoopConfig`` with the defaults a family's params group declares for the loop
    (``<family>_epochs``, ``<family>_lr``, …), ``LoopConfig``'s own defaults for the rest:
    the default of a family config's ``loop`` field."""
    declared = {p.name for p in group.params}
    values = {
        f.name: group.default(f"{group.name}_{f.name}")
        for f in fields(LoopConfig)
        if f"{group.name}_{f.name}" in declared
    }
    return LoopConfig(**values)


# Settings that do not change what training computes: they stay out of the checkpoint key.
_NOT_IN_KEY = ("out_dir", "threads", "resume", "device", "checkpoint_dir")


def config_fingerprint(config, *input_fields: str) -> str:
    """``fingerprint`` of a family's config dataclass: its ``input_fields`` (paths) by
    content, every other field by value, minus the fields that do not change the result.
    A ``LoopConfig`` field is left out: :func:`checkpoint_key` hashes the loop settings."""
    skip = (*_NOT_IN_KEY, *input_fields)
    settings = {
        f.name: getattr(config, f.name)
        for f in fields(config)
        if f.name not in skip and not isinstance(getattr(config, f.name), LoopConfig)
    }
    return fingerprint(settings, *(getattr(config, f) for f in input_fields))


def lineage_settings(cfg: LoopConfig) -> dict:
    """The loop settings a model's ``lineage.json`` records (not where it ran or wrote)."""
    return {
        k: v for k, v in vars(cfg).items() if k not in ("out_dir", "resume", "device", "checkpoint_dir", "fingerprint")
    }


def fingerprint(settings: dict, *inputs: Path) -> str:
    """A digest of a family's training settings and its inputs, for ``LoopConfig.fingerprint``.

    Files are hashed by content; folders (image roots, feature folders) by the relative
    path, size and modification time of every file in them, so a large image tree is
    listed, not read.
    """
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for path in inputs:
        if path is None:  # an optional input not given
            continue
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


# Settings added after checkpoints existed: at their off value (0) they stay out of the
# key, so the checkpoints of runs that do not use them keep the key they had.
_KEY_WHEN_SET = ("swa_epochs",)


def checkpoint_key(cfg: LoopConfig) -> str:
    values = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_KEY and (v or k not in _KEY_WHEN_SET)}
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


# Stochastic weight averaging: the learning rate over the averaged epochs, as a share of the peak.
SWA_LR_SHARE = 0.25


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int, floor: float = 0.0):
    """Linear warm-up, then a cosine from the peak down to ``floor`` × peak at
    ``total_steps``, held there after (the averaging phase of weight averaging)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class TrainingDiverged(UserError):
    """The training loss became nan or infinite: the weights are lost, training on is pointless."""

    def __init__(self, loss: float, epoch: int, step: int, steps: int, lr: float) -> None:
        super().__init__(
            f"training loss is {loss} at epoch {epoch}, step {step}/{steps} (learning rate {lr:.3g}): "
            "the model diverged; train again with a lower --lr (or a longer --warmup-epochs)"
        )


def param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """The optimiser's parameter groups: the parameters of a submodule with an ``lr_scale``
    attribute (a backbone finetuned from pretrained weights) train at ``lr * lr_scale``,
    the others at ``lr`` (the first group: the learning rate the history logs)."""
    scale = {}
    for module in model.modules():  # parents before children: the innermost scale wins
        if hasattr(module, "lr_scale"):
            scale |= {id(p): module.lr_scale for p in module.parameters()}
    groups: dict[float, list] = {1.0: []}
    for p in model.parameters():
        groups.setdefault(scale.get(id(p), 1.0), []).append(p)
    return [{"params": params, "lr": lr * s} for s, params in groups.items() if params]


@dataclass
class _Optimisation:
    """What updates the weights: AdamW, its per-step schedule, the AMP gradient scaler and,
    with ``swa_epochs``, the running average of the weights."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    average: torch.optim.swa_utils.AveragedModel | None = None

    @classmethod
    def create(cls, model: torch.nn.Module, cfg: LoopConfig, steps_per_epoch: int, use_amp: bool) -> _Optimisation:
        optimizer = torch.optim.AdamW(param_groups(model, cfg.lr), lr=cfg.lr, weight_decay=cfg.weight_decay)
        warmup, total = int(cfg.warmup_epochs * steps_per_epoch), (cfg.epochs - cfg.swa_epochs) * steps_per_epoch
        floor = SWA_LR_SHARE if cfg.swa_epochs else 0.0
        return cls(
            optimizer,
            cosine_with_warmup(optimizer, warmup, total, floor),
            torch.amp.GradScaler("cuda", enabled=use_amp),
            torch.optim.swa_utils.AveragedModel(model) if cfg.swa_epochs else None,
        )

    def state_dict(self) -> dict:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.average is not None:
            state["average"] = self.average.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.average is not None:
            self.average.load_state_dict(state["average"])


@dataclass
class _Progress:
    """Where training stands after ``epoch`` finished epochs (0: not started)."""

    epoch: int = 0
    best: float = -math.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    history: list[dict] = field(default_factory=list)


def fit(
    model: torch.nn.Module,
    train_set: torch.utils.data.Dataset,
    step: Callable[[torch.nn.Module, object, torch.device], torch.Tensor],
    validate: Callable[[torch.nn.Module, torch.device], dict] | None,
    cfg: LoopConfig,
    collate: Callable | None = None,
    batch_sampler: Callable[[torch.Generator], torch.utils.data.Sampler] | None = None,
) -> dict:
    """Train ``model`` in place (it ends holding the best weights, the last, or with
    ``cfg.swa_epochs`` their average); returns a summary.

    Writes into ``cfg.out_dir``: ``history.jsonl`` (one row per epoch),
    ``checkpoints/last.pt`` (everything needed to resume; in ``cfg.checkpoint_dir/<key>/``
    when that is set) and ``weights.pt`` (the weights kept).
    ``batch_sampler(generator)``: batches of indices instead of shuffled ``batch_size``
    chunks (class-balanced batches, episodes), drawn from the epoch's generator.
    Raises :class:`TrainingDiverged` when the training loss becomes nan or infinite.
    """
    if cfg.out_dir is None:
        raise ValueError("LoopConfig.out_dir is not set")
    if cfg.keep not in ("best", "last") or (validate is None and cfg.keep == "best"):
        raise ValueError(f"LoopConfig.keep={cfg.keep!r} (a validate function is needed to keep the best)")
    if cfg.swa_epochs and (cfg.keep != "last" or not 0 < cfg.swa_epochs < cfg.epochs):
        raise ValueError(f"LoopConfig.swa_epochs={cfg.swa_epochs} needs keep='last' and fewer than {cfg.epochs}")
    torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    use_amp = device.type == "cuda"
    model.to(device)
    if use_amp:
        model.to(memory_format=torch.channels_last)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    ckdir = _checkpoint_folder(cfg)
    if batch_sampler is not None:
        steps_per_epoch = len(batch_sampler(torch.Generator()))
    else:
        steps_per_epoch = math.ceil(len(train_set) / cfg.batch_size)
    optim = _Optimisation.create(model, cfg, steps_per_epoch, use_amp)
    progress = _start_or_resume(model, optim, cfg, ckdir, device)

    stopped_early = False
    for epoch in range(progress.epoch + 1, cfg.epochs + 1):
        if cfg.keep == "best" and progress.bad_epochs >= cfg.patience:
            stopped_early = True
            break
        loader = _epoch_loader(train_set, cfg, epoch, collate, batch_sampler)
        tic = time.perf_counter()
        train_loss = train_one_epoch(model, loader, step, optim, device, epoch, cfg.epochs, use_amp)
        if optim.average is not None and epoch > cfg.epochs - cfg.swa_epochs:
            optim.average.update_parameters(model)
        metrics = evaluate(model, validate, device) if validate is not None else {}
        _end_epoch(model, optim, progress, cfg, ckdir, epoch, train_loss, metrics, time.perf_counter() - tic)
    if optim.average is not None:
        loader = _epoch_loader(train_set, cfg, cfg.epochs + 1, collate, batch_sampler)
        keep_average(model, optim.average, loader, step, device, cfg.out_dir / "weights.pt")
    model.load_state_dict(torch.load(cfg.out_dir / "weights.pt", map_location=device, weights_only=True))
    summary = {"best_epoch": progress.best_epoch, f"best_val_{cfg.monitor}": progress.best}
    return summary | {"stopped_early": stopped_early, **({"swa_epochs": cfg.swa_epochs} if cfg.swa_epochs else {})}


def keep_average(
    model: torch.nn.Module,
    average: torch.optim.swa_utils.AveragedModel,
    loader: torch.utils.data.DataLoader,
    step: Callable,
    device: torch.device,
    path: Path,
) -> None:
    """Load the averaged weights into ``model``, recompute its batch norm statistics on
    ``loader`` and save them to ``path``.

    The averaged weights never ran forward together, so the running statistics of any
    epoch do not fit them. ``torch.optim.swa_utils.update_bn`` recomputes them but calls
    ``model(batch[0])``; families' models take more than one input, so the family's own
    ``step`` runs the forward passes instead (train mode, no gradients, momentum None: an
    equal-weight mean over the batches). A model without batch norm is only loaded.
    """
    model.load_state_dict(average.module.state_dict())
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        with torch.no_grad():
            for batch in loader:
                step(model, batch, device)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
    _save_atomic(model.state_dict(), path)


def _epoch_loader(train_set, cfg: LoopConfig, epoch: int, collate, batch_sampler) -> torch.utils.data.DataLoader:
    """The epoch's batches, in an order drawn from a generator seeded by ``seed`` and ``epoch``."""
    order = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
    if batch_sampler is not None:
        return torch.utils.data.DataLoader(train_set, batch_sampler=batch_sampler(order), collate_fn=collate)
    # A last batch of one sample fails batch norm in training mode ("Expected more than 1
    # value per channel"): with n % batch_size == 1 (any real data size can be), drop it.
    lone = len(train_set) % cfg.batch_size == 1 and len(train_set) > 1
    return torch.utils.data.DataLoader(
        train_set, batch_size=cfg.batch_size, shuffle=True, generator=order, collate_fn=collate, drop_last=lone
    )


def train_one_epoch(
    model: torch.nn.Module,
    loader: torch.utils.data.DataLoader,
    step: Callable,
    optim: _Optimisation,
    device: torch.device,
    epoch: int,
    epochs: int,
    use_amp: bool,
) -> float:
    """One pass over ``loader`` with an optimiser step per batch; returns the mean loss per sample."""
    from tqdm import tqdm

    model.train()
    total, seen = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", leave=False, disable=None)
    for i, batch in enumerate(bar, start=1):
        with torch.autocast(device.type, enabled=use_amp):
            loss = step(model, batch, device)
        lr = optim.scheduler.get_last_lr()[0]
        optim.optimizer.zero_grad(set_to_none=True)
        optim.scaler.scale(loss).backward()
        optim.scaler.step(optim.optimizer)
        optim.scaler.update()
        optim.scheduler.step()
        value = float(loss.detach())  # after the step, so the GPU is not waited for earlier
        if not math.isfinite(value):
            raise TrainingDiverged(value, epoch, i, len(loader), lr)
        total += value * len(batch[-1])
        seen += len(batch[-1])
        bar.set_postfix(loss=f"{total / seen:.4f}")
    return total / max(1, seen)


def evaluate(model: torch.nn.Module, validate: Callable, device: torch.device) -> dict:
    """The family's validation metrics, in eval mode and without autograd."""
    model.eval()
    with torch.inference_mode():
        return validate(model, device)


def _end_epoch(
    model: torch.nn.Module,
    optim: _Optimisation,
    progress: _Progress,
    cfg: LoopConfig,
    ckdir: Path,
    epoch: int,
    train_loss: float,
    metrics: dict,
    seconds: float,
) -> None:
    """Keep the weights if they are the best so far, checkpoint, write the history with its new row, log."""
    out = cfg.out_dir
    score = float(metrics.get(cfg.monitor, math.nan))
    improved = score > progress.best
    if improved:
        progress.best, progress.best_epoch, progress.bad_epochs = score, epoch, 0
    else:
        progress.bad_epochs += 1
    if improved or cfg.keep == "last":
        _save_atomic(model.state_dict(), out / "weights.pt")
        if cfg.checkpoint_dir is not None:
            copy_atomic(out / "weights.pt", ckdir / "best.pt")
    row = {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": optim.scheduler.get_last_lr()[0],
        "seconds": round(seconds, 3),
        **{f"val_{k}": v for k, v in metrics.items()},
    }
    progress.epoch = epoch
    progress.history.append(row)
    # checkpoint first: a history row on disk means its epoch can be resumed
    save_checkpoint(ckdir / "last.pt", model, optim, progress, cfg)
    _write_history(out / "history.jsonl", progress.history)
    if metrics:
        log.info(
            "epoch %d: loss %.4f, val %s %.4f%s", epoch, train_loss, cfg.monitor, score, " (best)" if improved else ""
        )
    else:
        log.info("epoch %d: loss %.4f", epoch, train_loss)


def _checkpoint_folder(cfg: LoopConfig) -> Path:
    """``checkpoint_dir/<key>`` when set (shared across retries), else ``out_dir/checkpoints``."""
    if cfg.checkpoint_dir is not None:
        folder = Path(cfg.checkpoint_dir) / checkpoint_key(cfg)
    else:
        folder = cfg.out_dir / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_checkpoint(
    path: Path, model: torch.nn.Module, optim: _Optimisation, progress: _Progress, cfg: LoopConfig
) -> None:
    """Everything a resumed run needs, as tensors and plain values (loadable with ``weights_only``)."""
    _save_atomic(
        {
            "model": model.state_dict(),
            **optim.state_dict(),
            **_rng_state(),
            "epoch": progress.epoch,
            "best": progress.best,
            "best_epoch": progress.best_epoch,
            "bad_epochs": progress.bad_epochs,
            "history": progress.history,
            "config": _jsonable(asdict(cfg)),
        },
        path,
    )


def _start_or_resume(
    model: torch.nn.Module, optim: _Optimisation, cfg: LoopConfig, ckdir: Path, device: torch.device
) -> _Progress:
    """Restore model, optimiser, RNGs and history from ``ckdir/last.pt`` when resuming
    (``resume``, or always with ``checkpoint_dir``) and it exists; else a fresh start."""
    out, last, external = cfg.out_dir, ckdir / "last.pt", cfg.checkpoint_dir is not None
    history_path = out / "history.jsonl"
    if not ((cfg.resume or external) and last.is_file()):
        history_path.unlink(missing_ok=True)
        if external:
            log.info("no checkpoint for these settings in %s: starting at epoch 1", ckdir)
        return _Progress()
    try:
        state = torch.load(last, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        raise InputFileError(last, "checkpoint from an older insectml; delete it to start again") from e
    if ("average" in state) != (optim.average is not None):
        raise InputFileError(last, "checkpoint of a run with other weight-averaging settings; delete it to start again")
    model.load_state_dict(state["model"])
    optim.load_state_dict(state)
    _set_rng_state(state)
    epoch = state["epoch"]
    progress = _Progress(epoch, state["best"], state["best_epoch"], state["bad_epochs"], state["history"][:epoch])
    _write_history(history_path, progress.history)
    if external and (ckdir / "best.pt").is_file():
        copy_atomic(ckdir / "best.pt", out / "weights.pt")
    log.info("resumed from checkpoint at epoch %d (%s; best %s %.4f)", epoch, last, cfg.monitor, progress.best)
    return progress


def _rng_state() -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": [name, keys.tolist(), pos, has_gauss, cached],
        "python_rng": [version, list(internal), gauss_next],
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    name, keys, pos, has_gauss, cached = state["numpy_rng"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state["python_rng"]
    random.setstate((version, tuple(internal), gauss_next))


def _save_atomic(obj: dict, path: Path) -> None:
    """``torch.save`` through a uniquely named temporary file beside ``path``: a kill
    leaves the previous file, and two tasks sharing a checkpoint folder never write into
    the same temporary file."""
    with open_atomic(path, "wb") as fh:
        torch.save(obj, fh)


def _write_history(path: Path, rows: list[dict]) -> None:
    """The whole history, rewritten each epoch (a few rows): never a half-written row."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows))


def _jsonable(values: dict) -> dict:
    return {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
