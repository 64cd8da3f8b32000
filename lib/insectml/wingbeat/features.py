"""The wingbeat front-end: log-mel spectrograms and engineered spectral features.

Training and serving both call :func:`engineered_features` and :func:`log_mel`
with the same :class:`~insectml.wingbeat.frontend.FrontendConfig`, which travels
inside every model directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insectml.wingbeat.frontend import FrontendConfig, batch_log_mel, fit_length

N_HARMONICS = 5
N_MFCC = 13


def feature_names() -> list[str]:
    names = ["f0_hz", "f0_spread"]
    names += [f"h{k}_over_h1_db" for k in range(2, N_HARMONICS + 1)]
    for stat in ("mean", "std"):
        names += [f"centroid_{stat}", f"bandwidth_{stat}", f"flatness_{stat}"]
    names += [f"mfcc{i}_{stat}" for stat in ("mean", "std") for i in range(N_MFCC)]
    names += ["rms", "duration_s"]
    return names


def log_mel(audio: np.ndarray, cfg: FrontendConfig) -> tuple[np.ndarray, int]:
    """Log-mel spectrogram (dB, ``n_mels`` × ``max_frames``) of the recording cropped or
    padded to ``max_seconds``, and the number of frames that hold signal."""
    import librosa

    fixed, real = fit_length(audio, cfg.max_samples)
    mel = librosa.feature.melspectrogram(
        y=fixed,
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_length,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        power=2.0,
    )
    frames = min(mel.shape[1], 1 + real // cfg.hop_length)
    return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).astype(np.float32), frames


def engineered_features(audio: np.ndarray, cfg: FrontendConfig) -> np.ndarray:
    """Fundamental frequency, harmonic amplitude ratios, spectral shape and MFCC
    statistics of one recording (the full recording, not the cropped one)."""
    import librosa

    sr = cfg.sample_rate
    y = audio.astype(np.float32)
    if len(y) < 1024:
        y = np.pad(y, (0, 1024 - len(y)))
    f0_track = librosa.yin(y, fmin=cfg.f0_min, fmax=cfg.f0_max, sr=sr, frame_length=512, hop_length=128)
    f0 = float(np.median(f0_track))
    f0_spread = float(np.subtract(*np.percentile(f0_track, [75, 25])))

    spectrum = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / sr)
    peaks = []
    for k in range(1, N_HARMONICS + 1):
        band = (freqs > k * f0 * 0.96) & (freqs < k * f0 * 1.04)
        peaks.append(spectrum[band].max() if band.any() else 1e-10)
    ratios = [20 * np.log10((p + 1e-10) / (peaks[0] + 1e-10)) for p in peaks[1:]]

    stft = np.abs(librosa.stft(y, n_fft=cfg.n_fft, hop_length=cfg.hop_length))
    centroid = librosa.feature.spectral_centroid(S=stft, sr=sr)[0]
    bandwidth = librosa.feature.spectral_bandwidth(S=stft, sr=sr)[0]
    flatness = librosa.feature.spectral_flatness(S=stft)[0]
    mel = librosa.feature.melspectrogram(S=stft**2, sr=sr, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=N_MFCC)
    values = [f0, f0_spread, *ratios]
    for stat in (np.mean, np.std):
        values += [stat(centroid), stat(bandwidth), stat(flatness)]
    values += list(mfcc.mean(axis=1)) + list(mfcc.std(axis=1))
    values += [float(np.sqrt(np.mean(audio**2))), len(audio) / sr]
    return np.asarray(values, dtype=np.float32)


def extract(rows: list[dict], data_dir: Path, cfg: FrontendConfig, out: Path, dataset: dict) -> None:
    """Compute both front-ends for every manifest row and write them, with the
    dataset description, to ``out`` (npz). Log-mels come from the batched PyTorch
    front-end that serving uses too."""
    from tqdm import tqdm

    from insectml.wingbeat.audio import decode_wav

    engineered, mels, frames = [], [], []
    chunk = 512
    with tqdm(total=len(rows), desc="features", unit="rec", disable=None) as bar:
        for start in range(0, len(rows), chunk):
            audios = [
                decode_wav(data_dir / r["path"], cfg.sample_rate, name=r["path"], resample=cfg.resample)
                for r in rows[start : start + chunk]
            ]
            for audio in audios:
                engineered.append(engineered_features(audio, cfg))
                bar.update()
            mel, n = batch_log_mel(audios, cfg)
            mels.append(mel)
            frames.append(n)
    np.savez_compressed(
        out,
        ids=np.asarray([r["id"] for r in rows]),
        labels=np.asarray([r["label"] for r in rows]),
        split=np.asarray([r["split"] for r in rows]),
        engineered=np.stack(engineered),
        feature_names=np.asarray(feature_names()),
        logmel=np.concatenate(mels),
        frames=np.concatenate(frames).astype(np.int32),
        frontend=np.asarray(json.dumps(cfg.to_dict(), sort_keys=True)),
        dataset=np.asarray(json.dumps(dataset, sort_keys=True)),
    )


def load_features(path: Path) -> dict:
    """Load a features file written by :func:`extract`."""
    from insectml.errors import InputFileError

    if not path.is_file():
        raise InputFileError(path, "features file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            out = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputFileError(path, f"not a features file ({exc})") from None
    missing = {"ids", "labels", "split", "engineered", "frontend"} - set(out)
    if missing:
        raise InputFileError(path, f"features file lacks {', '.join(sorted(missing))}")
    out["frontend"] = FrontendConfig.from_dict(json.loads(str(out["frontend"])))
    return out
