"""Multi Model Server handler for wingbeat models.

POST a WAV body to ``/predictions/<name>``; the answer is a JSON object of species
probabilities, most likely first. The front-end is the one used in training
(:mod:`insectml.wingbeat.features` for the features model, :mod:`insectml.wingbeat.frontend`
for the spectrogram models), configured from the model's ``config.json``.
A body that is not a valid recording (unreadable, truncated, shorter than the ``min_seconds``
the model was validated with, …) gets HTTP 400 with ``{"error": ...}``; the rest of the batch
is answered normally.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class WingbeatService:
    def __init__(self) -> None:
        self.predictor = None

    def initialize(self, context) -> None:
        from insectml.wingbeat.predict import load_predictor

        model_dir = Path(context.system_properties["model_dir"])
        self.predictor = load_predictor(model_dir)
        log.info("wingbeat model loaded from %s (%d classes)", model_dir, len(self.predictor.classes))

    def handle(self, data: list[dict], context) -> list:
        from insectml.serving.batch import answer_batch

        return answer_batch(
            data,
            context,
            self.decode,
            lambda audios: [{"probabilities": self.predictor.predict_audio(audio)} for audio in audios],
        )

    def decode(self, body) -> np.ndarray:
        """A request body → the recording at the model's sample rate; a UserError if it is not
        one the model's validation would have accepted (truncated, shorter than its min_seconds, …)."""
        from insectml.errors import UserError
        from insectml.wingbeat.predict import decode_recording

        if not isinstance(body, (bytes, bytearray)):
            raise UserError("request body must be a WAV file (raw bytes)")
        return decode_recording(bytes(body), self.predictor.frontend, name="request body")


_service = WingbeatService()


def handle(data, context):
    if _service.predictor is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
