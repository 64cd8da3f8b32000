"""Deterministic demo data, small enough to ship, hard enough not to be trivial.

Wingbeat recordings are synthesised from species profiles whose fundamental
frequencies overlap (as real mosquito species do), with per-recording harmonic
jitter, an amplitude envelope from the insect crossing the sensor beam, and
sensor/day-specific background (noise colour, mains hum, gain). The recording
event is the grouping unit for splits: recordings from one event share that
background, so a split that ignores groups would leak it.

The hard set (:func:`write_wingbeat_hard_demo`) behaves like small real collections:
each recording session holds one species, and the session (temperature, sensor, noise)
moves a recording more than some species differ, so a grouped split is hard and one
validation split is a poor guide.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from insectml.fileio import open_atomic, write_text_atomic

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


def synthesise(
    profile: SpeciesProfile,
    background: dict[str, float],
    rng: np.random.Generator,
    duration_s: tuple[float, float] = (0.4, 1.2),
    response: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """One recording of an insect crossing the sensor, as float32 in [-1, 1].

    ``duration_s`` bounds its length; ``response`` (frequencies in Hz → amplitude gain)
    is the sensor's frequency response, applied to everything the sensor picks up.
    """
    duration = rng.uniform(*duration_s)
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
    if response is not None:
        mix = np.fft.irfft(np.fft.rfft(mix) * response(np.fft.rfftfreq(n, 1 / SAMPLE_RATE)), n)
    mix *= background["gain"] * 0.5 / (np.max(np.abs(mix)) + 1e-12)
    return mix.astype(np.float32)


def write_wingbeat_demo(out_dir: Path, per_class: int = 120, seed: int = 20240601) -> Path:
    """Write ``out_dir/labels.csv``, ``out_dir/classes.txt`` and ``out_dir/recordings/``.

    The same arguments always produce byte-identical files.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    backgrounds = [_event_background(i) for i in range(len(EVENTS))]
    rows = []
    jobs = [(s, i) for s in SPECIES for i in range(per_class)]
    for species, i in tqdm(jobs, desc="wingbeat demo", unit="rec", disable=None):
        rng = np.random.default_rng([seed, list(SPECIES).index(species), i])
        event_index = int(rng.integers(len(EVENTS)))
        audio = synthesise(SPECIES[species], backgrounds[event_index], rng)
        rel = Path("recordings") / species / f"{species}_{i:04d}.wav"
        _write_wav(out_dir / rel, audio)
        sensor, day = EVENTS[event_index].split("_")
        rows.append({"path": rel.as_posix(), "species": species, "sensor": sensor, "event": EVENTS[event_index]})
    _write_labels(out_dir, ["path", "species", "sensor", "event"], rows, list(SPECIES))
    log.info("wrote %d recordings to %s", len(rows), out_dir)
    return out_dir


def _write_wav(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    with open_atomic(path, "wb") as fh:
        sf.write(fh, audio, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _write_labels(out_dir: Path, columns: list[str], rows: list[dict[str, str]], classes: list[str]) -> None:
    """``labels.csv`` and ``classes.txt``."""
    with open_atomic(out_dir / "labels.csv") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_text_atomic(out_dir / "classes.txt", "".join(f"{c}\n" for c in classes))


# The hard set: two pairs of sibling species whose fundamentals lie within 5 % of each
# other and whose harmonic profiles are alike, and an easier pair (10 % apart, unlike
# harmonics). A session's temperature moves the fundamental by up to 8 %.
HARD_SPECIES: dict[str, SpeciesProfile] = {
    "aedes_aegypti": SpeciesProfile(480.0, 15.0, (1.0, 0.60, 0.25, 0.12)),
    "aedes_albopictus": SpeciesProfile(530.0, 16.0, (1.0, 0.35, 0.45, 0.10)),
    "anopheles_gambiae": SpeciesProfile(420.0, 13.0, (1.0, 0.78, 0.18, 0.18)),
    "anopheles_arabiensis": SpeciesProfile(438.0, 13.0, (1.0, 0.68, 0.24, 0.22)),
    "culex_quinquefasciatus": SpeciesProfile(352.0, 11.0, (1.0, 0.40, 0.50, 0.24)),
    "culex_pipiens": SpeciesProfile(338.0, 11.0, (1.0, 0.50, 0.42, 0.30)),
}
SESSIONS_PER_SPECIES = 4


@dataclass(frozen=True)
class Session:
    """One recording session: one species' colony on one day, on one sensor."""

    name: str
    species: str
    background: dict[str, float]  # what :func:`synthesise` reads
    f0_shift: float  # relative shift of the wingbeat frequency (temperature)
    tilt_db_per_octave: float  # the sensor's frequency response: a tilt about 500 Hz …
    bump_hz: float  # … and one broad resonance
    bump_db: float
    bump_octaves: float

    def response(self, freqs: np.ndarray) -> np.ndarray:
        """The sensor's amplitude gain at ``freqs`` (Hz): smooth, within ±10 dB over 100–4000 Hz."""
        octaves = np.log2(np.maximum(freqs, 50.0) / 500.0)
        bump = np.log2(np.maximum(freqs, 50.0) / self.bump_hz) / self.bump_octaves
        db = self.tilt_db_per_octave * octaves + self.bump_db * np.exp(-0.5 * bump**2)
        return 10 ** (db / 20)


def hard_sessions(seed: int) -> list[Session]:
    """The sessions of the hard set, ``s01``…: species take turns, as colonies recorded on
    successive days do; each session's conditions are drawn from ``seed``."""
    species = list(HARD_SPECIES)
    sessions = []
    for index in range(len(species) * SESSIONS_PER_SPECIES):
        rng = np.random.default_rng([seed, 1, index])
        background = {
            "noise_colour": float(rng.uniform(0.0, 1.5)),  # 0 white .. 1 pink .. 2 brown
            "hum_hz": float(rng.choice([50.0, 60.0])),
            "hum_level": float(rng.uniform(0.0, 0.06)),
            "gain": float(rng.uniform(0.5, 1.0)),
            "snr_db": float(rng.uniform(0.0, 12.0)),
        }
        sessions.append(
            Session(
                name=f"s{index + 1:02d}",
                species=species[index % len(species)],
                background=background,
                f0_shift=float(rng.uniform(-0.08, 0.08)),
                tilt_db_per_octave=float(rng.uniform(-2.0, 2.0)),
                bump_hz=float(np.exp(rng.uniform(np.log(200.0), np.log(3000.0)))),
                bump_db=float(rng.uniform(-4.0, 4.0)),
                bump_octaves=float(rng.uniform(0.3, 1.0)),
            )
        )
    return sessions


def write_wingbeat_hard_demo(out_dir: Path, per_session: int = 30, seed: int = 20240601) -> Path:
    """Write the hard wingbeat set: ``out_dir/labels.csv`` (``path,species,session``),
    ``classes.txt``, ``README.md`` and ``recordings/<species>/<session>_<i>.wav``.

    Six species, four sessions each (:func:`hard_sessions`), ``per_session`` recordings
    of about 1 s per session.
    The same arguments always produce byte-identical files.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    sessions = hard_sessions(seed)
    rows = []
    jobs = [(index, i) for index in range(len(sessions)) for i in range(per_session)]
    for index, i in tqdm(jobs, desc="wingbeat hard demo", unit="rec", disable=None):
        session = sessions[index]
        base = HARD_SPECIES[session.species]
        profile = replace(
            base, f0_mean=base.f0_mean * (1 + session.f0_shift), f0_sd=base.f0_sd * (1 + session.f0_shift)
        )
        rng = np.random.default_rng([seed, 2, index, i])
        audio = synthesise(profile, session.background, rng, duration_s=(0.9, 1.1), response=session.response)
        rel = Path("recordings") / session.species / f"{session.name}_{i:03d}.wav"
        _write_wav(out_dir / rel, audio)
        rows.append({"path": rel.as_posix(), "species": session.species, "session": session.name})
    _write_labels(out_dir, ["path", "species", "session"], rows, list(HARD_SPECIES))
    write_text_atomic(out_dir / "README.md", _HARD_README)
    log.info("wrote %d recordings to %s", len(rows), out_dir)
    return out_dir


_HARD_README = """\
# Hard wingbeat demo (synthetic)

Six mosquito species, four recording sessions each; every session records one species.
Sessions differ (temperature shifts the wingbeat frequency by up to 8 %; sensor response, noise,
hum, gain) more than two pairs of sibling species (within 5 %) do: it is synthetic and hard on purpose.
Split by session: `--wingbeat_input data/wingbeat_hard --wingbeat_group_by session`.
"""
