"""Deterministic demo data, small enough to ship, hard enough not to be trivial.

Wingbeat recordings are synthesised from species profiles whose fundamental
frequencies overlap (as real mosquito species do), with per-recording harmonic
jitter, an amplitude envelope from the insect crossing the sensor beam, and
sensor/day-specific background (noise colour, mains hum, gain). The recording
event is the grouping unit for splits: recordings from one event share that
background, so a split that ignores groups would leak it.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
EVENTS = [f"sensor{s}_day{d}" for s in range(1, 5) for d in range(1, 4)]


@dataclass(frozen=True)
class SpeciesProfile:
    f0_mean: float
    f0_sd: float
    harmonics: tuple[float, ...]  # relative amplitude of harmonics 1..n


SPECIES: dict[str, SpeciesProfile] = {
    "aedes_aegypti": SpeciesProfile(470.0, 35.0, (1.0, 0.60, 0.25, 0.10)),
    "aedes_albopictus": SpeciesProfile(530.0, 40.0, (1.0, 0.35, 0.40, 0.10)),
    "anopheles_gambiae": SpeciesProfile(430.0, 35.0, (1.0, 0.80, 0.15, 0.20)),
    "culex_quinquefasciatus": SpeciesProfile(380.0, 30.0, (1.0, 0.40, 0.50, 0.25)),
    "culex_pipiens": SpeciesProfile(345.0, 30.0, (1.0, 0.55, 0.30, 0.35)),
}


def _event_background(event_index: int) -> dict[str, float]:
    rng = np.random.default_rng(10_000 + event_index)
    return {
        "noise_colour": float(rng.uniform(0.0, 1.0)),  # 0 white .. 1 pink
        "hum_hz": float(rng.choice([50.0, 60.0])),
        "hum_level": float(rng.uniform(0.0, 0.08)),
        "gain": float(rng.uniform(0.6, 1.0)),
        "snr_db": float(rng.uniform(4.0, 16.0)),
    }


def _coloured_noise(rng: np.random.Generator, n: int, colour: float) -> np.ndarray:
    white = rng.standard_normal(n)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1] if n > 1 else 1.0
    spectrum = spectrum / freqs ** (0.5 * colour)
    noise = np.fft.irfft(spectrum, n)
    return noise / (np.std(noise) + 1e-12)


def synthesise(profile: SpeciesProfile, background: dict[str, float], rng: np.random.Generator) -> np.ndarray:
    """One recording of an insect crossing the sensor, as float32 in [-1, 1]."""
    duration = rng.uniform(0.4, 1.2)
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.normal(profile.f0_mean, profile.f0_sd)
    vibrato = 0.012 * np.sin(2 * np.pi * rng.uniform(3, 12) * t + rng.uniform(0, 2 * np.pi))
    drift = rng.uniform(-0.03, 0.03) * (t / duration)
    phase = 2 * np.pi * np.cumsum(f0 * (1 + vibrato + drift)) / SAMPLE_RATE
    signal = np.zeros(n)
    for k, amplitude in enumerate(profile.harmonics, start=1):
        jitter = rng.lognormal(0.0, 0.25)
        signal += amplitude * jitter * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    centre = rng.uniform(0.3, 0.7) * duration
    width = rng.uniform(0.12, 0.3) * duration
    signal *= np.exp(-0.5 * ((t - centre) / width) ** 2)
    signal /= np.sqrt(np.mean(signal**2)) + 1e-12

    snr_db = background["snr_db"] + rng.normal(0.0, 3.0)
    noise = _coloured_noise(rng, n, background["noise_colour"]) * 10 ** (-snr_db / 20)
    hum = background["hum_level"] * 10 * sum(np.sin(2 * np.pi * h * background["hum_hz"] * t) / h for h in (1, 2, 3))
    mix = signal + noise + hum
    mix *= background["gain"] * 0.5 / (np.max(np.abs(mix)) + 1e-12)
    return mix.astype(np.float32)


def write_wingbeat_demo(out_dir: Path, per_class: int = 120, seed: int = 20240601) -> Path:
    """Write ``out_dir/labels.csv``, ``out_dir/classes.txt`` and ``out_dir/recordings/``.

    The same arguments always produce byte-identical files.
    """
    import soundfile as sf
    from tqdm import tqdm

    out_dir = Path(out_dir)
    (out_dir / "recordings").mkdir(parents=True, exist_ok=True)
    backgrounds = [_event_background(i) for i in range(len(EVENTS))]
    rows = []
    jobs = [(s, i) for s in SPECIES for i in range(per_class)]
    for species, i in tqdm(jobs, desc="wingbeat demo", unit="rec", disable=None):
        rng = np.random.default_rng([seed, list(SPECIES).index(species), i])
        event_index = int(rng.integers(len(EVENTS)))
        audio = synthesise(SPECIES[species], backgrounds[event_index], rng)
        rel = Path("recordings") / species / f"{species}_{i:04d}.wav"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(out_dir / rel, audio, SAMPLE_RATE, subtype="PCM_16")
        sensor, day = EVENTS[event_index].split("_")
        rows.append({"path": rel.as_posix(), "species": species, "sensor": sensor, "event": EVENTS[event_index]})
    with open(out_dir / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "species", "sensor", "event"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    (out_dir / "classes.txt").write_text("".join(f"{s}\n" for s in SPECIES))
    log.info("wrote %d recordings to %s", len(rows), out_dir)
    return out_dir
