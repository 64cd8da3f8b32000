"""Reading wingbeat recordings, with the checks that keep bad audio out of training."""

from __future__ import annotations

import io
import re
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from insectml.errors import InputFileError


def decode_wav(
    source: Path | bytes,
    sample_rate: int,
    name: str | None = None,
    resample: bool = False,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Decode a mono WAV at ``sample_rate`` into float32 samples (with ``resample``,
    another rate is converted instead of refused).

    Raises :class:`InputFileError` naming ``name`` (or the path) for anything that
    must not reach a model: a missing, empty, truncated (the header promises more audio
    than the file holds) or undecodable file, more than one channel, another sample
    rate, no samples, NaN or infinite samples, or a recording shorter than
    ``min_seconds``.
    """
    import soundfile as sf

    label = name or (str(source) if isinstance(source, Path) else "audio bytes")
    if isinstance(source, Path):
        if not source.is_file():
            raise InputFileError(label, "file not found")
        size = source.stat().st_size
        if size == 0:
            raise InputFileError(label, "empty file (0 bytes)")
        with source.open("rb") as fh:
            shortfall = _truncation(fh, size)
        handle: object = source
    else:
        if len(source) == 0:
            raise InputFileError(label, "empty body (0 bytes)")
        shortfall = _truncation(io.BytesIO(source), len(source))
        handle = io.BytesIO(source)
    if shortfall:
        raise InputFileError(label, shortfall)
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
    seconds = samples.size / rate
    if seconds < min_seconds:
        raise InputFileError(
            label, f"recording is {seconds:.4g} s; at least {min_seconds:g} s required (--wingbeat_min_seconds)"
        )
    if rate != sample_rate:
        import librosa

        samples = librosa.resample(samples, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return samples.astype(np.float32, copy=False)


# A data chunk of this size in a plain RIFF file means "up to the end of the file" (a
# recorder that streams); in RF64/BW64 it means "see the ds64 chunk".
_UNKNOWN_SIZE = 0xFFFFFFFF


def _truncation(fh: BinaryIO, total: int) -> str | None:
    """The problem with a RIFF/RIFX/RF64/BW64 WAVE file whose data chunk declares more
    bytes than follow it, or None: for a complete file, another format, or a header this
    walk cannot follow (libsndfile then judges the file).

    libsndfile itself reads such a file without complaint: it clamps the frame count to
    what is there, so a 300-byte cut of a one-second recording decodes as 0.016 s.
    """
    head = fh.read(12)
    if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64", b"BW64"):
        return None
    order = ">" if head[:4] == b"RIFX" else "<"
    ds64_data_size = None
    block_align = frame_bytes = 0
    pos = 12
    while pos + 8 <= total:
        fh.seek(pos)
        chunk_id, size = struct.unpack(order + "4sI", fh.read(8))
        body = fh.read(16) if chunk_id in (b"ds64", b"fmt ") else b""
        if chunk_id == b"ds64" and len(body) == 16:
            ds64_data_size = struct.unpack("<Q", body[8:16])[0]
        elif chunk_id == b"fmt " and len(body) == 16:
            channels, block_align, bits = struct.unpack(order + "2xH8xHH", body)
            frame_bytes = channels * ((bits + 7) // 8)
        elif chunk_id == b"data":
            if size == _UNKNOWN_SIZE:
                if ds64_data_size is None:
                    return None
                size = ds64_data_size
            held = total - (pos + 8)
            if size <= held or block_align == 0:
                return None
            if block_align == frame_bytes:  # PCM and float: one block is one frame
                return f"truncated WAV: header promises {size // block_align} frames, file holds {held // block_align}"
            return f"truncated WAV: header promises {size} bytes of audio, file holds {held}"
        pos += 8 + size + (size & 1)  # chunks are word-aligned
    return None


def _short(exc: Exception) -> str:
    text = re.sub(r"^Error opening .*?: ", "", " ".join(str(exc).split()))
    return text[:120] or type(exc).__name__
