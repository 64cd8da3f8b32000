"""The wingbeat front-end's configuration and its batched log-mel in PyTorch
(torch.stft + librosa's mel filterbank).

:class:`FrontendConfig` travels inside every model directory; training and serving build
their inputs from it and nothing else. :func:`batch_log_mel` is numerically the same
transform as :func:`librosa.feature.melspectrogram` followed by
``power_to_db(ref=1, amin=1e-10, top_db=None)`` with ``center=True``, constant padding
and a periodic Hann window. Training (the features step) and serving both call it, so
a model never sees spectrograms made another way. ``tests/unit/test_frontend.py``
bounds the difference to librosa (float32: 1e-3 dB; float64: 1e-4 dB).

torch is imported on first use, not with this module: the features model, which never
needs it, reads its :class:`FrontendConfig` from here too.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from insectml.wingbeat.family import PARAMS as P

if TYPE_CHECKING:
    import torch

AMIN = 1e-10


@dataclass(frozen=True)
class FrontendConfig:
    sample_rate: int = P.default("wingbeat_sample_rate")
    n_fft: int = 256
    hop_length: int = 64
    n_mels: int = P.default("wingbeat_n_mels")
    fmin: float = 50.0
    fmax: float = 4000.0
    max_seconds: float = P.default("wingbeat_max_seconds")
    f0_min: float = 150.0
    f0_max: float = 1200.0
    resample: bool = P.default("wingbeat_resample")  # resample other rates to sample_rate instead of refusing them
    # Validation's minimum length; prediction and serving refuse shorter recordings with it.
    # Model folders written before it existed get the declared default.
    min_seconds: float = P.default("wingbeat_min_seconds")

    @property
    def max_samples(self) -> int:
        return int(round(self.max_seconds * self.sample_rate))

    @property
    def max_frames(self) -> int:
        return 1 + self.max_samples // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FrontendConfig:
        return cls(**values)


def fit_length(audio: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Centre-crop or zero-pad to exactly ``n`` samples; returns the samples and
    how many of them are real (not padding)."""
    if len(audio) >= n:
        start = (len(audio) - n) // 2
        return audio[start : start + n], n
    return np.pad(audio, (0, n - len(audio))), len(audio)


@functools.cache
def _log_mel_class() -> type:
    # Defined on first use because its base class is torch's (see the module docstring).
    import librosa
    import torch

    class LogMel(torch.nn.Module):
        def __init__(self, cfg: FrontendConfig, dtype: torch.dtype = torch.float32) -> None:
            super().__init__()
            self.cfg = cfg
            fb = librosa.filters.mel(
                sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax
            )
            self.register_buffer("filterbank", torch.as_tensor(fb, dtype=dtype), persistent=False)
            self.register_buffer("window", torch.hann_window(cfg.n_fft, periodic=True, dtype=dtype), persistent=False)

        def forward(self, audio: torch.Tensor) -> torch.Tensor:
            """``audio`` (batch × samples) → log-mel in dB (batch × n_mels × frames)."""
            half = self.cfg.n_fft // 2
            padded = torch.nn.functional.pad(audio, (half, half), mode="constant")
            spec = torch.stft(
                padded,
                n_fft=self.cfg.n_fft,
                hop_length=self.cfg.hop_length,
                window=self.window,
                center=False,
                return_complex=True,
            )
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(self.filterbank, power)
            return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))

    LogMel.__module__, LogMel.__qualname__ = __name__, "LogMel"
    return LogMel


def __getattr__(name: str):
    # ``LogMel``, the torch module behind batch_log_mel, exists once torch is imported.
    if name == "LogMel":
        return _log_mel_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def batch_log_mel(
    audios: list[np.ndarray], cfg: FrontendConfig, batch_size: int = 256, dtype: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel of every recording, each centre-cropped or zero-padded to ``max_seconds``;
    returns (n × n_mels × max_frames float32, frames holding signal per recording).

    float32 (the default, used by training and serving) stays within 1e-3 dB of librosa
    (4e-4 measured on the demo): the float32 FFT's rounding moves the quietest bins.
    float64 stays within 1e-4 dB (8e-6 measured) but is several times slower
    (benchmarks/wingbeat_frontend.py)."""
    import torch

    dtype = torch.float32 if dtype is None else dtype
    module = _log_mel_class()(cfg, dtype=dtype)
    n = len(audios)
    out = np.full((n, cfg.n_mels, cfg.max_frames), 10 * np.log10(AMIN), dtype=np.float32)
    fixed = [fit_length(a, cfg.max_samples) for a in audios]
    frames = np.asarray([min(cfg.max_frames, 1 + real // cfg.hop_length) for _, real in fixed], dtype=np.int32)
    # Frames whose window lies wholly in the zero padding are silent (exactly the dB
    # floor), so each batch (sorted by length) computes only the frames that can hold signal.
    order = np.argsort([real for _, real in fixed], kind="stable")
    with torch.no_grad():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            longest = max(fixed[i][1] for i in idx)
            needed = min(cfg.max_frames, -(-(longest + cfg.n_fft // 2) // cfg.hop_length) + 1)
            length = min(cfg.max_samples, (needed - 1) * cfg.hop_length)
            batch = torch.as_tensor(np.stack([fixed[i][0][:length] for i in idx]), dtype=dtype)
            mel = module(batch).to(torch.float32).numpy()
            out[idx, :, : mel.shape[2]] = mel
    return out, frames
