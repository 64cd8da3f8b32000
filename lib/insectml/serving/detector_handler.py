"""Multi Model Server handler for insect detectors.

POST a JPEG/PNG body to ``/predictions/<name>``; the answer is a JSON list of
``{"label", "score", "box": [x1, y1, x2, y2]}`` (pixels of the posted image, best first,
scores at or above the archive's threshold). With MMS batching (``batch_size`` > 1 at
registration) the requests of a batch run through the model as one forward pass.
A body that is not an image (or one over 40 Mpx) gets HTTP 400 with ``{"error": ...}``, a
Content-Type other than image/* or application/octet-stream 415; the rest of the batch
is answered normally.

Prediction log (:mod:`insectml.serving.predlog`, when the server keeps one): each answered
image's line holds the global average of the backbone's last feature map, taken by a forward
hook in the forward pass that answers. A TorchScript model (the export inside a ``.mar``)
takes no hooks, so its lines hold the boxes and an empty summary.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class DetectorService:
    def __init__(self) -> None:
        self.predictor = None
        self.log = None
        self.model = ("", "")
        self.pooled = None  # (images, channels) from the last forward, with a hooked backbone

    def initialize(self, context) -> None:
        import torch

        from insectml.detector.predict import DetectorPredictor

        torch.set_num_threads(1)  # one worker per core; MMS scales by workers
        model_dir = Path(context.system_properties["model_dir"])
        self.predictor = DetectorPredictor(model_dir)
        log.info(
            "detector loaded from %s (%d classes, %s)",
            model_dir,
            len(self.predictor.classes),
            "TorchScript" if self.predictor.scripted else "eager",
        )
        self._start_log(model_dir)

    def _start_log(self, model_dir: Path) -> None:
        from insectml.serving.predlog import PredictionLog, identity

        self.log = PredictionLog.from_env()
        if self.log is None:
            return
        self.model = identity(model_dir)
        backbone = getattr(self.predictor.model, "backbone", None)
        if self.predictor.scripted or backbone is None:
            log.info("prediction log: %s model, so no backbone features in its summaries", type(self.predictor.model))
            return
        backbone.register_forward_hook(self._pool)

    def _pool(self, module, inputs, output) -> None:
        try:
            last = list(output.values())[-1] if isinstance(output, dict) else output
            self.pooled = last.mean(dim=(2, 3))
        except Exception as exc:  # inside the forward pass: a summary never fails the answer
            self.log.failed(exc)

    def handle(self, data: list[dict], context) -> list:
        from insectml.detector.predict import decode_image
        from insectml.serving.batch import answer_batch
        from insectml.serving.predlog import log_answers

        if self.log is None:
            return answer_batch(data, context, decode_image, self.predictor.predict, media="image")
        summaries: list[dict] = []
        answers = answer_batch(
            data, context, decode_image, lambda images: self._logged(images, summaries), media="image"
        )
        log_answers(self.log, "detector", self.model, data, context, answers, summaries, _scores)
        return answers

    def _logged(self, images: list, summaries: list[dict]) -> list[list[dict]]:
        """The predictor's answers; each image's pooled backbone features (or {}) appended to ``summaries``."""
        from insectml.serving.predlog import compact

        self.pooled = None
        answers = self.predictor.predict(images)
        pooled = self.pooled
        if pooled is not None and len(pooled) == len(images):
            summaries.extend({"embedding": compact(row)} for row in pooled.tolist())
        else:
            summaries.extend({} for _ in images)
        return answers


def _scores(answer: list[dict]) -> tuple[float | None, bool]:
    return max((box["score"] for box in answer), default=None), False


_service = DetectorService()


def handle(data, context):
    if _service.predictor is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
