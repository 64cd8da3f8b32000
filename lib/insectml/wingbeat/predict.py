"""Load any wingbeat model directory and predict species, from features or raw audio.

Two kinds share one interface: ``classical`` (scikit-learn on engineered features, or on
the log spectrum for the baseline) and ``net`` (a PyTorch model on log-mel spectrograms
from :mod:`.frontend`). Probabilities are calibrated: divided by the model's temperature
(config.json, fitted on validation or out-of-fold predictions) before the softmax, here,
in ``predict`` and in the MMS handler alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from insectml.errors import InputFileError
from insectml.wingbeat.features import classical_inputs, engineered_features, log_spectrum
from insectml.wingbeat.frontend import FrontendConfig


class Predictor:
    classes: list[str]
    frontend: FrontendConfig
    kind: str
    temperature: float = 1.0

    def predict_features(self, feats: dict, mask: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Class probabilities (rows of ``mask`` × classes) from a features file;
        ``calibrated=False``: before temperature scaling."""
        probs = self._feature_probs(feats, mask)
        return self.calibrate(probs) if calibrated else probs

    def predict_audio(self, audio: np.ndarray) -> dict[str, float]:
        """Species → calibrated probability for one decoded recording, most likely first."""
        probs = self.calibrate(self._audio_probs(audio))
        order = np.argsort(-probs)
        return {self.classes[i]: round(float(probs[i]), 6) for i in order}

    def calibrate(self, probs: np.ndarray) -> np.ndarray:
        from insectml.stats import apply_temperature

        return apply_temperature(probs, self.temperature)

    def _feature_probs(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class ClassicalPredictor(Predictor):
    kind = "classical"

    def __init__(self, model_dir: Path, config: dict, classes: list[str]) -> None:
        import joblib

        self.estimator = joblib.load(model_dir / "model.joblib")
        self.classes = classes
        self.frontend = FrontendConfig.from_dict(config["frontend"])
        self.inputs = config.get("inputs", "engineered")
        self.temperature = float(config.get("temperature", 1.0))

    def _feature_probs(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        if self.inputs == "log_spectrum":
            return self.estimator.predict_proba(log_spectrum(feats["logmel"][mask], feats["frames"][mask]))
        return self.estimator.predict_proba(classical_inputs(feats, self.inputs)[mask])

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        if self.inputs == "log_spectrum":
            from insectml.wingbeat.frontend import batch_log_mel

            mel, frames = batch_log_mel([audio], self.frontend)
            return self.estimator.predict_proba(log_spectrum(mel, frames))[0]
        return self.estimator.predict_proba(engineered_features(audio, self.frontend)[None, :])[0]


class NetPredictor(Predictor):
    kind = "net"

    def __init__(self, model_dir: Path, config: dict, classes: list[str]) -> None:
        import torch

        from insectml.wingbeat.nets import create_net

        self.classes = classes
        self.frontend = FrontendConfig.from_dict(config["frontend"])
        self.mean, self.std = config["norm"]["mean"], config["norm"]["std"]
        self.temperature = float(config.get("temperature", 1.0))
        self.model = create_net(config["model"], len(classes), self.frontend.n_mels, **config.get("options", {}))
        self.model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
        self.model.eval()

    def _probs(self, x: np.ndarray, frames: np.ndarray) -> np.ndarray:
        import torch

        with torch.no_grad():
            xt = (torch.as_tensor(x, dtype=torch.float32) - self.mean) / self.std
            logits = self.model(xt, torch.as_tensor(frames, dtype=torch.long))
            return torch.softmax(logits, dim=1).numpy()

    def _feature_probs(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(mask)
        return np.concatenate(
            [self._probs(feats["logmel"][c], feats["frames"][c]) for c in np.array_split(idx, max(1, len(idx) // 128))]
        )

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        from insectml.wingbeat.frontend import batch_log_mel

        mel, frames = batch_log_mel([audio], self.frontend)
        return self._probs(mel, frames)[0]


class RocketPredictor(ClassicalPredictor):
    """MiniRocket features of the centred log-mel frames → the logistic-regression head."""

    kind = "rocket"

    def __init__(self, model_dir: Path, config: dict, classes: list[str]) -> None:
        from insectml.wingbeat.rocket import ROCKET_STATE, load_transform

        super().__init__(model_dir, config, classes)
        self.transform = load_transform(model_dir / ROCKET_STATE)

    def _rocket_probs(self, mel: np.ndarray, frames: np.ndarray) -> np.ndarray:
        from insectml.wingbeat.rocket import centre_channels

        return self.estimator.predict_proba(self.transform.transform(centre_channels(mel, frames), frames))

    def _feature_probs(self, feats: dict, mask: np.ndarray) -> np.ndarray:
        return self._rocket_probs(feats["logmel"][mask], feats["frames"][mask])

    def _audio_probs(self, audio: np.ndarray) -> np.ndarray:
        from insectml.wingbeat.frontend import batch_log_mel

        mel, frames = batch_log_mel([audio], self.frontend)
        return self._rocket_probs(mel, frames)[0]


KINDS = {"classical": ClassicalPredictor, "net": NetPredictor, "rocket": RocketPredictor}


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


# What each kind reads besides config.json, labels.json and the weights, from config.json.
_CONFIG_KEYS = {"classical": ("frontend",), "rocket": ("frontend",), "net": ("frontend", "norm", "model")}


def load_predictor(model_dir: Path) -> Predictor:
    """The model in ``model_dir``, its weights checked against the sha256 its lineage.json
    records (:func:`insectml.modeldir.verify_weights`) before they are loaded. Loading runs
    the weights' code (joblib unpickles): load only models from a trusted source."""
    from insectml.modeldir import read_json, verify_weights

    for name in ("config.json", "labels.json"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = read_json(model_dir / "config.json", "model config")
    classes = read_json(model_dir / "labels.json", "class list", kind=list)
    kind = config.get("kind", "classical")
    if kind not in KINDS:
        raise InputFileError(model_dir / "config.json", f"unknown model kind '{kind}'")
    missing = [k for k in _CONFIG_KEYS[kind] if k not in config]
    if missing:
        raise InputFileError(model_dir / "config.json", f"a {kind} model config with no {', '.join(missing)}")
    weights = [model_dir / ("weights.pt" if kind == "net" else "model.joblib")]
    if kind == "rocket":
        from insectml.wingbeat.rocket import ROCKET_STATE

        weights.append(model_dir / ROCKET_STATE)
    for path in weights:
        if not path.is_file():
            raise InputFileError(path, "missing from the model directory")
        verify_weights(path)
    return KINDS[kind](model_dir, config, classes)
