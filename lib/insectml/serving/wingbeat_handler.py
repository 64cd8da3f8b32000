"""Multi Model Server handler for wingbeat models.

POST a WAV body to ``/predictions/<name>``; the answer is a JSON object of species
probabilities, most likely first. The front-end is the one used in training
(:mod:`insectml.wingbeat.features` for the features model, :mod:`insectml.wingbeat.frontend`
for the spectrogram models), configured from the model's ``config.json``.
A body that is not a valid recording (unreadable, truncated, shorter than the ``min_seconds``
the model was validated with, …) gets HTTP 400 with ``{"error": ...}``, a Content-Type other
than audio/* or application/octet-stream 415; the rest of the batch is answered normally.

Length: the spectrogram models centre-crop every recording to the model's ``max_seconds``,
as training did, so a long one costs no more than a short one. The engineered-features
model reads the whole recording (training did too, and ``duration_s`` is one of its
features), so it answers a recording longer than :data:`MAX_FEATURE_SECONDS` with a 400
instead of cropping it into features it was never trained on.

Prediction log (:mod:`insectml.serving.predlog`, when the server keeps one): each answered
recording's line holds its engineered features by name (:func:`~insectml.wingbeat.features.feature_names`).
The engineered-features model computes them to answer anyway; for every other model they are
extra work, done for as many recordings as fit in the log's summary share of serving time
(the other lines get an empty summary).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# The longest recording the engineered-features model serves; its cost grows with length.
MAX_FEATURE_SECONDS = 30.0


class WingbeatService:
    def __init__(self) -> None:
        self.predictor = None
        self.log = None
        self.model = ("", "")
        self.budget = None

    def initialize(self, context) -> None:
        from insectml.serving.predlog import Budget, PredictionLog, identity
        from insectml.wingbeat.predict import load_predictor

        model_dir = Path(context.system_properties["model_dir"])
        self.predictor = load_predictor(model_dir)
        self.log = PredictionLog.from_env()
        if self.log is not None:
            self.model = identity(model_dir)
            self.budget = Budget(self.log.summary_share)
        log.info("wingbeat model loaded from %s (%d classes)", model_dir, len(self.predictor.classes))

    def handle(self, data: list[dict], context) -> list:
        from insectml.serving.batch import answer_batch
        from insectml.serving.predlog import log_answers

        if self.log is None:
            return answer_batch(
                data,
                context,
                self.decode,
                lambda audios: [{"probabilities": self.predictor.predict_audio(audio)} for audio in audios],
                media="audio",
            )
        summaries: list[dict] = []
        answers = answer_batch(
            data, context, self.decode, lambda audios: self._logged(audios, summaries), media="audio"
        )
        log_answers(self.log, "wingbeat", self.model, data, context, answers, summaries, _scores)
        return answers

    def _logged(self, audios: list[np.ndarray], summaries: list[dict]) -> list[dict]:
        """The answers, as without the log; the features of each recording appended to
        ``summaries`` (or {} beyond the budget)."""
        from insectml.serving.predlog import compact
        from insectml.wingbeat.features import engineered_features, feature_names

        names = feature_names()
        answers = []
        for audio in audios:
            features = None
            if _reads_engineered(self.predictor):
                features = engineered_features(audio, self.predictor.frontend)
                probs = self.predictor.predict_features({"engineered": features[None]}, np.ones(1, bool))[0]
                answers.append({"probabilities": _ranked(self.predictor.classes, probs)})
            else:
                tic = time.perf_counter()
                answers.append({"probabilities": self.predictor.predict_audio(audio)})
                self.budget.served += time.perf_counter() - tic
                if self.budget.allows():
                    tic = time.perf_counter()
                    try:
                        features = engineered_features(audio, self.predictor.frontend)
                    except Exception as exc:  # a summary never fails the answer
                        self.log.failed(exc)
                    self.budget.spent += time.perf_counter() - tic
            summaries.append({} if features is None else {"features": dict(zip(names, compact(features), strict=True))})
        return answers

    def decode(self, body) -> np.ndarray:
        """A request body → the recording at the model's sample rate; a UserError if it is not
        one the model's validation would have accepted (truncated, shorter than its min_seconds, …)."""
        from insectml.errors import UserError
        from insectml.wingbeat.predict import decode_recording

        if not isinstance(body, (bytes, bytearray)):
            raise UserError("request body must be a WAV file (raw bytes)")
        audio = decode_recording(bytes(body), self.predictor.frontend, name="request body")
        seconds = len(audio) / self.predictor.frontend.sample_rate
        if seconds > MAX_FEATURE_SECONDS and _reads_whole_recording(self.predictor):
            raise UserError(
                f"request body: recording is {seconds:.4g} s; this model computes its features on the whole "
                f"recording and serves at most {MAX_FEATURE_SECONDS:g} s: send a shorter clip"
            )
        return audio


def _reads_whole_recording(predictor) -> bool:
    """The engineered-features model; every other kind crops to its front-end's max_seconds."""
    return _reads_engineered(predictor)


def _reads_engineered(predictor) -> bool:
    """The model whose inputs are the engineered features of the whole recording."""
    return getattr(predictor, "kind", None) == "classical" and getattr(predictor, "inputs", None) == "engineered"


def _ranked(classes: list[str], probs: np.ndarray) -> dict[str, float]:
    """Species → probability, most likely first, as :meth:`Predictor.predict_audio` answers."""
    return {classes[i]: round(float(probs[i]), 6) for i in np.argsort(-probs)}


def _scores(answer: dict) -> tuple[float | None, bool]:
    probabilities = answer.get("probabilities") or {}
    return (max(probabilities.values()) if probabilities else None), False


_service = WingbeatService()


def handle(data, context):
    if _service.predictor is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
