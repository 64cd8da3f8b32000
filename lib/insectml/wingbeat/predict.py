"""Load a wingbeat model directory and predict species from raw recordings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError
from insectml.wingbeat.features import FrontendConfig, engineered_features


@dataclass
class WingbeatPredictor:
    estimator: object
    classes: list[str]
    frontend: FrontendConfig

    @classmethod
    def load(cls, model_dir: Path) -> WingbeatPredictor:
        import joblib

        for name in ("model.joblib", "config.json", "labels.json"):
            if not (model_dir / name).is_file():
                raise InputFileError(model_dir / name, "missing from the model directory")
        config = json.loads((model_dir / "config.json").read_text())
        return cls(
            estimator=joblib.load(model_dir / "model.joblib"),
            classes=json.loads((model_dir / "labels.json").read_text()),
            frontend=FrontendConfig.from_dict(config["frontend"]),
        )

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (n × classes) for engineered feature rows."""
        return self.estimator.predict_proba(features)

    def predict_audio(self, audio: np.ndarray) -> dict[str, float]:
        """Species → probability for one decoded recording, most likely first."""
        probs = self.predict_features(engineered_features(audio, self.frontend)[None, :])[0]
        order = np.argsort(-probs)
        return {self.classes[i]: round(float(probs[i]), 6) for i in order}
