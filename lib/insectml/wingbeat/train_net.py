"""Train a neural wingbeat model (CNN, GRU, transformer) with the shared loop.

Besides the augmentation of every training spectrogram (:func:`augment`), three options
for few recording sessions, all off by default: mixup of batches (:func:`mixup`), a
random pitch shift in the augmentation (:func:`shift_pitch`, as a session's temperature
shifts the wingbeat frequency) and stochastic weight averaging of the last epochs
(``LoopConfig.swa_epochs``). ``benchmarks/wingbeat_small_data.py`` measures each.
"""

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
from insectml.training.weights import resolve_weights, weights_lineage
from insectml.wingbeat.family import PARAMS
from insectml.wingbeat.features import load_features
from insectml.wingbeat.folds import select_rows, write_heldout
from insectml.wingbeat.frontend import FrontendConfig
from insectml.wingbeat.nets import count_parameters, create_net
from insectml.wingbeat.train import calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetConfig:
    features: Path
    out_dir: Path
    model: str
    backbone: str = PARAMS.default("wingbeat_backbone")
    weights: Path | str | None = None  # a state-dict file, an imported folder or NAME
    loop: LoopConfig = field(default_factory=partial(declared_loop, PARAMS))
    augment: bool = True
    folds: Path | None = None  # folds.json of 'insectml cv plan'
    fold: int | None = None  # the fold held out; None with folds: the refit on all non-test data
    mixup: float = PARAMS.default("wingbeat_mixup")  # alpha of Beta(alpha, alpha); 0: off
    pitch_jitter: float = PARAMS.default("wingbeat_pitch_jitter")  # ± share of the frequency; 0: off
    swa: bool = PARAMS.default("wingbeat_swa")


# Stochastic weight averaging averages the last quarter of the epochs (at least 2).
SWA_SHARE = 0.25


def swa_epochs(epochs: int) -> int:
    """How many of the last of ``epochs`` epochs weight averaging averages."""
    return max(2, round(epochs * SWA_SHARE))


class SpectrogramSet(torch.utils.data.Dataset):
    """Log-mel spectrograms (dB) with their real-frame counts and labels; when
    ``augment`` is set each item gets :func:`augment`'s random pitch shift (with
    ``pitch_jitter``; ``band_hz``: the mel bands' centre frequencies), time shift, gain,
    noise floor and SpecAugment time/frequency masks, all drawn from torch's global generator."""

    def __init__(
        self,
        x: np.ndarray,
        frames: np.ndarray,
        y: np.ndarray,
        norm: tuple[float, float],
        augment: bool,
        pitch_jitter: float = 0.0,
        band_hz: np.ndarray | None = None,
    ):
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.frames = torch.as_tensor(frames, dtype=torch.long)
        self.y = torch.as_tensor(y, dtype=torch.long)
        self.mean, self.std = norm
        self.augment = augment
        self.pitch_jitter = pitch_jitter
        self.band_hz = None if band_hz is None else torch.as_tensor(band_hz, dtype=torch.float32)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x, n = self.x[i].clone(), int(self.frames[i])
        if self.augment:
            x = augment(x, n, self.pitch_jitter, self.band_hz)
        return (x - self.mean) / self.std, self.frames[i], self.y[i]


def mel_band_hz(frontend: FrontendConfig) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of ``frontend``'s filterbank (librosa's
    Slaney mel scale, as :mod:`.frontend` builds it)."""
    import librosa

    return librosa.mel_frequencies(frontend.n_mels + 2, fmin=frontend.fmin, fmax=frontend.fmax)[1:-1]


def shift_pitch(x: torch.Tensor, ratio: float, band_hz: torch.Tensor) -> torch.Tensor:
    """The log-mel spectrogram ``x`` (n_mels × frames, dB) of the same sound with every
    frequency multiplied by ``ratio``, resampled along the mel axis.

    A temperature change scales a wingbeat's fundamental and harmonics by one factor: a
    shift on a log-frequency axis. The mel axis is only approximately that: librosa's
    (Slaney) mel scale is logarithmic above 1 kHz but linear below, where the
    fundamentals lie, so a shift by a fixed number of bands would move low and high bands
    by different factors. Instead each band takes the value at its centre frequency
    divided by ``ratio``, interpolated linearly (in dB) between the two bands around it.
    What stays approximate: a band's value is interpolated from its neighbours' instead
    of recomputed from the spectrum (a harmonic between two bands is smeared over both,
    and the filters' widths are not rescaled with the content); content shifted in from
    beyond the lowest or highest band repeats that edge band. ``ratio`` 1 returns ``x``.
    """
    source = band_hz / ratio
    upper = torch.searchsorted(band_hz, source).clamp(1, len(band_hz) - 1)
    lower = upper - 1
    w = ((source - band_hz[lower]) / (band_hz[upper] - band_hz[lower])).clamp(0, 1)[:, None]
    return x[lower] * (1 - w) + x[upper] * w


def augment(x: torch.Tensor, n: int, pitch_jitter: float = 0.0, band_hz: torch.Tensor | None = None) -> torch.Tensor:
    """With ``pitch_jitter`` > 0, first a pitch shift by a factor drawn uniformly from
    1 ± ``pitch_jitter`` (:func:`shift_pitch`; ``band_hz``: the bands' centre
    frequencies); then a time shift (circular, within the real frames), gain (±6 dB), an
    additive noise floor (half the time), and one frequency and one time mask."""
    if pitch_jitter:
        x = shift_pitch(x, 1 + pitch_jitter * (2 * float(torch.rand(())) - 1), band_hz)
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


def mixup(
    x: torch.Tensor, frames: torch.Tensor, y: torch.Tensor, n_classes: int, alpha: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018) of a batch: each recording mixed with another of the batch
    (a random permutation) in the proportion lam ~ Beta(``alpha``, ``alpha``), one lam per
    batch. The spectrograms are mixed as they are, log-mel in dB (as PANNs do): a geometric
    mean of the two powers, not the sum of two sounds. Returns the mixed spectrograms, the
    real frames (the longer of the two) and the soft targets (the one-hot labels mixed
    alike: every row sums to one)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.randperm(len(y)).to(y.device)
    target = torch.nn.functional.one_hot(y, n_classes).to(x.dtype)
    return lam * x + (1 - lam) * x[perm], torch.maximum(frames, frames[perm]), lam * target + (1 - lam) * target[perm]


def predict_logits(
    model: torch.nn.Module, data: SpectrogramSet, device: torch.device, batch: int = 128
) -> torch.Tensor:
    loader = torch.utils.data.DataLoader(data, batch_size=batch, shuffle=False)
    out = [model(x.to(device), f.to(device)).float().cpu() for x, f, _ in loader]
    return torch.cat(out)


def check_options(cfg: NetConfig) -> None:
    """Refuse settings of the few-data options that cannot work (one line, exit 2)."""
    if cfg.mixup < 0:
        raise ConfigError(f"--mixup {cfg.mixup}: the alpha of Beta(alpha, alpha) must be positive (0 = off)")
    if not 0 <= cfg.pitch_jitter < 0.5:
        raise ConfigError(f"--pitch-jitter {cfg.pitch_jitter}: expected a share in [0, 0.5), e.g. 0.08 for ±8%")
    if cfg.swa and cfg.loop.epochs <= swa_epochs(cfg.loop.epochs):
        raise ConfigError(
            f"--swa averages the weights of the last {swa_epochs(cfg.loop.epochs)} epochs: "
            f"needs more than that many --epochs (got {cfg.loop.epochs})"
        )


def train_net(cfg: NetConfig) -> dict:
    """Fit on the rows of the task's role (:mod:`.folds`) and write a model directory:
    ``weights.pt``, ``config.json``, ``labels.json``, ``lineage.json``,
    ``train_metrics.json``, ``history.jsonl``, ``checkpoints/last.pt`` (and ``heldout.npz``
    for a fold). Without folds: early stopping on the val split's macro-F1, the temperature
    fitted on its logits. In a fold or the refit: a fixed budget of ``epochs`` (the last
    epoch's weights), so the folds estimate what the refit does. With ``swa`` every role
    trains the full budget and keeps the average of the last :func:`swa_epochs` epochs."""
    from insectml.stats import fit_temperature

    check_options(cfg)
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
    band_hz = mel_band_hz(feats["frontend"])
    train_set = SpectrogramSet(x[tr], frames[tr], y[tr], norm, cfg.augment, cfg.pitch_jitter, band_hz)
    val_set = SpectrogramSet(x[va], frames[va], y[va], norm, augment=False)

    torch.manual_seed(cfg.loop.seed)
    options = {"backbone": cfg.backbone} if cfg.model == "cnn" else {}
    n_mels = int(x.shape[1])
    weights = resolve_weights(cfg.weights) if cfg.weights else None
    model = create_net(cfg.model, len(classes), n_mels, weights=weights, **options)
    if cfg.model == "cnn":  # imported timm weights bring their architecture
        options = {"backbone": model.backbone}
    loss_fn = torch.nn.CrossEntropyLoss()

    def step(model, batch, device):
        xb, fb, yb = (t.to(device) for t in batch)
        if cfg.mixup:
            xb, fb, target = mixup(xb, fb, yb, len(classes), cfg.mixup)
            return loss_fn(model(xb, fb), target)  # soft targets: cross-entropy against probabilities
        return loss_fn(model(xb, fb), yb)

    def validate(model, device) -> dict:
        logits = predict_logits(model, val_set, device)
        m = classification_metrics(y[va], logits.argmax(1).numpy(), classes)
        return {
            "macro_f1": m["macro_f1"],
            "accuracy": m["accuracy"],
            "loss": float(loss_fn(logits, torch.as_tensor(y[va]))),
        }

    # an average of the last epochs has no best epoch to pick: the full budget is trained
    keep = "best" if rows.role == "val" and not cfg.swa else "last"
    loop = replace(
        cfg.loop,
        out_dir=cfg.out_dir,
        monitor="macro_f1",
        keep=keep,
        # the weights by content: a NAME re-imported with other tensors is other weights
        fingerprint=config_fingerprint(replace(cfg, weights=weights and weights.sha256), "features", "folds"),
        swa_epochs=swa_epochs(cfg.loop.epochs) if cfg.swa else 0,
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
            "weights": weights_lineage(weights),
            "loop": lineage_settings(loop),
            "augment": cfg.augment,
            "mixup": cfg.mixup,
            "pitch_jitter": cfg.pitch_jitter,
            "swa": cfg.swa,
            "frontend": feats["frontend"].to_dict(),
            "split": dataset.get("split", {}),
            "rows": rows.lineage(),
        },
        seed=loop.seed,
        data={"dataset_version": dataset.get("version"), "counts": dataset.get("counts")},
        started=started,
        source=dataset.get("source"),
    )
    write_model_dir(cfg.out_dir, config=config, labels=classes, train_metrics=train_metrics, lineage=record)
    return train_metrics
