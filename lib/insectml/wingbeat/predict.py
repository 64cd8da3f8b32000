"""Load any wingbeat model directory and predict species, from features or raw audio.

Two kinds share one interface: ``classical`` (scikit-learn on engineered features)
and ``net`` (a PyTorch model on log-mel spectrograms from :mod:`.frontend`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError
from insectml.wingbeat.features import engineered_features
from insectml.wingbeat.frontend import FrontendConfig


class Predictor:
    classes: list[str]
    frontend: FrontendConfig
    kind: str

    def predict_features(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        """Class probabilities (rows of ``mask`` × classes) from a features file."""
        raise NotImplementedError

    def predict_audio(self, audio: np.ndarray) -> dict[str, float]:
        """Species → probability for one decoded recording, most likely first."""
        probs = self._audio_probs(audio)
        order = np.argsort(-probs)
        return {self.classes[i]: round(float(probs[i]), 6) for i in order}

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ClassicalPredictor(Predictor):
    kind = "classical"

    def __init__(self, model_dir: Path, config: dict, classes: list[str]) -> None:
        import joblib

        self.estimator = joblib.load(model_dir / "model.joblib")
        self.classes = classes
        self.frontend = FrontendConfig.from_dict(config["frontend"])

    def predict_features(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(feats["engineered"][mask])

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        return self.estimator.predict_proba(engineered_features(audio, self.frontend)[None, :])[0]


class NetPredictor(Predictor):
    kind = "net"

    def __init__(self, model_dir: Path, config: dict, classes: list[str]) -> None:
        import torch

        from insectml.wingbeat.nets import create_net

        self.classes = classes
        self.frontend = FrontendConfig.from_dict(config["frontend"])
        self.mean, self.std = config["norm"]["mean"], config["norm"]["std"]
        self.model = create_net(config["model"], len(classes), self.frontend.n_mels, **config.get("options", {}))
        self.model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
        self.model.eval()

    def _probs(self, x: np.ndarray, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            xt = (torch.as_tensor(x, dtype=torch.float32) - self.mean) / self.std
            logits = self.model(xt, torch.as_tensor(frames, dtype=torch.long))
            return torch.softmax(logits, dim=1).numpy()

    def predict_features(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return np.concatenate(
            [self._probs(feats["logmel"][c], feats["frames"][c]) for c in np.array_split(idx, max(1, len(idx) // 128))]
        )

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        from insectml.wingbeat.frontend import batch_log_mel

        mel, frames = batch_log_mel([audio], self.frontend)
        return self._probs(mel, frames)[0]


KINDS = {"classical": ClassicalPredictor, "net": NetPredictor}


def decode_recording(source: Path | bytes, frontend: FrontendConfig, name: str | None = None) -> np.ndarray:
    """A recording (a file, or a request's bytes) → its samples as the model's training data
    were read; an :class:`InputFileError` naming ``name`` (or the path) for what validation
    refused at training time: truncated, unreadable, another rate (unless the model
    resamples), shorter than the model's ``min_seconds``, ….
    """
    from insectml.wingbeat.audio import decode_wav

    return decode_wav(
        source, frontend.sample_rate, name=name, resample=frontend.resample, min_seconds=frontend.min_seconds
    )


def load_predictor(model_dir: Path) -> Predictor:
    for name in ("config.json", "labels.json"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = json.loads((model_dir / "config.json").read_text())
    classes = json.loads((model_dir / "labels.json").read_text())
    kind = config.get("kind", "classical")
    if kind not in KINDS:
        raise InputFileError(model_dir / "config.json", f"unknown model kind '{kind}'")
    weights = model_dir / ("model.joblib" if kind == "classical" else "weights.pt")
    if not weights.is_file():
        raise InputFileError(weights, "missing from the model directory")
    return KINDS[kind](model_dir, config, classes)
