"""The wingbeat front-end: log-mel spectrograms and engineered spectral features.

Training and serving both call :func:`engineered_features` and :func:`log_mel`
with the same :class:`~insectml.wingbeat.frontend.FrontendConfig`, which travels
inside every model directory.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from insectml.data.manifest import iter_manifest
from insectml.errors import InputFileError
from insectml.fileio import open_atomic
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


def log_spectrum(logmel: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """The mean log-mel power (dB) of each recording over its real frames: its log power
    spectrum on the mel scale, (n, n_mels). The baseline model's input."""
    real = np.arange(logmel.shape[2])[None, :] < np.asarray(frames)[:, None]
    return (logmel * real[:, None, :]).sum(2) / np.maximum(real.sum(1), 1)[:, None]


def classical_inputs(feats: dict, inputs: str) -> np.ndarray:
    """The rows a classical model reads from a features file: ``engineered`` features or
    the ``log_spectrum``."""
    if inputs == "engineered":
        return feats["engineered"]
    if inputs == "log_spectrum":
        if "logmel" not in feats:
            raise InputFileError(Path("features"), "has no log-mel spectrograms (made by an older 'features')")
        return log_spectrum(feats["logmel"], feats["frames"])
    raise ValueError(f"unknown classical inputs {inputs!r}")


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


def extract(rows: Iterable[dict], data_dir: Path, cfg: FrontendConfig, out: Path, dataset: dict) -> int:
    """Compute both front-ends for every manifest row (read as they come: a generator
    of a manifest, or of a chunk of it) and write them, with the dataset description, to
    ``out`` (npz, atomically). Log-mels come from the batched PyTorch front-end that
    serving uses too. Returns the number of rows.

    Extracting the chunks of a manifest one by one and joining the files with
    :func:`gather_features` gives the same arrays as extracting the whole manifest:
    every row's values depend on its recording alone."""
    from tqdm import tqdm

    from insectml.wingbeat.audio import decode_wav

    ids, labels, splits, groups = [], [], [], []
    engineered, mels, frames = [], [], []
    rows = iter(rows)
    with tqdm(desc="features", unit="rec", disable=None) as bar:
        while batch := list(itertools.islice(rows, 512)):
            audios = [
                decode_wav(data_dir / r["path"], cfg.sample_rate, name=r["path"], resample=cfg.resample) for r in batch
            ]
            for row, audio in zip(batch, audios, strict=True):
                ids.append(row["id"])
                labels.append(row["label"])
                splits.append(row["split"])
                groups.append(str(row.get("group", row["id"])))
                engineered.append(engineered_features(audio, cfg))
                bar.update()
            mel, n = batch_log_mel(audios, cfg)
            mels.append(mel)
            frames.append(n)
    with open_atomic(out, "wb") as fh:
        np.savez_compressed(
            fh,
            ids=np.asarray(ids),
            labels=np.asarray(labels),
            split=np.asarray(splits),
            groups=np.asarray(groups),
            engineered=np.stack(engineered),
            feature_names=np.asarray(feature_names()),
            logmel=np.concatenate(mels),
            frames=np.concatenate(frames).astype(np.int32),
            frontend=np.asarray(json.dumps(cfg.to_dict(), sort_keys=True)),
            dataset=np.asarray(json.dumps(dataset, sort_keys=True)),
        )
    return len(ids)


# The arrays of a features file with one entry per manifest row; the others (feature
# names, front-end, dataset) are the same in every chunk's file.
ROW_ARRAYS = ("ids", "labels", "split", "groups", "engineered", "logmel", "frames")


def gather_features(parts: Sequence[Path], manifest: Path, out: Path) -> int:
    """Join the features files of a manifest's chunks (:func:`extract` over each) into
    ``out``: rows in the order of ``manifest``, whatever the order of ``parts``, and the
    same arrays as :func:`extract` over the whole manifest. Every manifest row must be in
    exactly one part, and the parts must share front-end and dataset, else
    :class:`InputFileError`. Holds one part's array at a time (the output is written
    array by array, part by part). Returns the number of rows."""
    import zipfile

    headers = [_npz_headers(part) for part in parts]
    first = parts[0]
    shared = _load(first, *(k for k in headers[0] if k not in ROW_ARRAYS))
    for part, header in zip(parts[1:], headers[1:], strict=True):
        if set(header) != set(headers[0]):
            raise InputFileError(part, f"holds other arrays than {first}")
        for key, value in _load(part, *shared).items():
            if not np.array_equal(value, shared[key]):
                raise InputFileError(part, f"its {key} differs from that of {first}: made with other settings")
    order = _manifest_order(parts, manifest)
    n_rows = sum(headers[i]["ids"][1][0] for i in order)

    with open_atomic(out, "wb") as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
        for key in headers[0]:
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                if key not in ROW_ARRAYS:
                    np.lib.format.write_array(member, shared[key], allow_pickle=False)
                    continue
                # Strings take the longest part's width, as one array of all rows would.
                dtypes = [headers[i][key][0] for i in order]
                dtype = np.result_type(*dtypes)
                if dtype.kind != "U" and any(d != dtype for d in dtypes):
                    raise InputFileError(
                        manifest, f"the parts' {key} arrays differ in type ({sorted(set(map(str, dtypes)))})"
                    )
                shape = (n_rows, *headers[order[0]][key][1][1:])
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
                np.lib.format.write_array_header_1_0(member, header)
                for i in order:
                    array = _load(parts[i], key)[key]
                    member.write(np.ascontiguousarray(array.astype(dtype, copy=False)).data)
    return n_rows


def _npz_headers(path: Path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Each array of a features file: (dtype, shape), from the .npy headers alone."""
    import zipfile

    if not path.is_file():
        raise InputFileError(path, "features file not found")
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                with archive.open(name) as fh:
                    version = np.lib.format.read_magic(fh)
                    read = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read(fh)
                out[name.removesuffix(".npy")] = (dtype, shape)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputFileError(path, f"not a features file ({exc})") from None
    missing = set(ROW_ARRAYS) - set(out)
    if missing:
        raise InputFileError(path, f"features file lacks {', '.join(sorted(missing))}")
    return out


def _load(path: Path, *keys: str) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in keys}


def _manifest_order(parts: Sequence[Path], manifest: Path) -> list[int]:
    """The indices of ``parts`` in manifest order, checked: the parts' ids, joined in that
    order, are exactly the manifest's ids."""
    ids = [_load(part, "ids")["ids"] for part in parts]
    starts: dict[str, int] = {}
    for i, part_ids in enumerate(ids):
        if str(part_ids[0]) in starts:
            raise InputFileError(parts[i], f"holds the rows of {parts[starts[str(part_ids[0])]]} (given twice)")
        starts[str(part_ids[0])] = i
    position = {starts[row["id"]]: n for n, row in enumerate(iter_manifest(manifest)) if row["id"] in starts}
    strays = [part for i, part in enumerate(parts) if i not in position]
    if strays:
        raise InputFileError(strays[0], f"its rows are not in {manifest}")
    order = sorted(position, key=position.__getitem__)
    joined = itertools.chain.from_iterable(ids[i] for i in order)
    for n, (row, part_id) in enumerate(itertools.zip_longest(iter_manifest(manifest), joined), start=1):
        if row is None or part_id is None or row["id"] != part_id:
            expected = repr(row["id"]) if row is not None else "the end"
            found = repr(str(part_id)) if part_id is not None else "no more rows"
            raise InputFileError(
                manifest, f"row {n} is {expected}, the parts hold {found} there: a chunk is missing or repeated"
            )
    return order


def load_features(path: Path) -> dict:
    """Load a features file written by :func:`extract` or :func:`gather_features`."""
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
    if "groups" not in out:  # written before groups were kept: each recording its own group
        out["groups"] = out["ids"].astype(str)
    return out
