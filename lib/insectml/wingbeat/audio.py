"""Reading wingbeat recordings, with the checks that keep bad audio out of training."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError


def decode_wav(source: Path | bytes, sample_rate: int, name: str | None = None, resample: bool = False) -> np.ndarray:
    """Decode a mono WAV at ``sample_rate`` into float32 samples (with ``resample``,
    another rate is converted instead of refused).

    Raises :class:`InputFileError` naming ``name`` (or the path) for anything that
    must not reach a model: a missing, empty or undecodable file, more than one
    channel, another sample rate, no samples, NaN or infinite samples.
    """
    import soundfile as sf

    label = name or str(source)
    if isinstance(source, Path):
        if not source.is_file():
            raise InputFileError(label, "file not found")
        if source.stat().st_size == 0:
            raise InputFileError(label, "empty file (0 bytes)")
        handle: object = source
    else:
        if len(source) == 0:
            raise InputFileError(label, "empty body (0 bytes)")
        handle = io.BytesIO(source)
    try:
        audio, rate = sf.read(handle, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise InputFileError(label, f"not a readable WAV file ({_short(exc)})") from None
    if audio.shape[1] != 1:
        raise InputFileError(label, f"has {audio.shape[1]} channels; a mono recording is required")
    if rate != sample_rate and not resample:
        raise InputFileError(label, f"sample rate is {rate} Hz; {sample_rate} Hz is required")
    samples = audio[:, 0]
    if samples.size == 0:
        raise InputFileError(label, "contains no samples")
    if np.isnan(samples).any():
        raise InputFileError(label, f"contains {int(np.isnan(samples).sum())} NaN sample(s)")
    if np.isinf(samples).any():
        raise InputFileError(label, f"contains {int(np.isinf(samples).sum())} infinite sample(s)")
    if rate != sample_rate:
        import librosa

        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return samples.astype(np.float32, copy=False)


def _short(exc: Exception) -> str:
    text = re.sub(r"^Error opening .*?: ", "", " ".join(str(exc).split()))
    return text[:120] or type(exc).__name__
