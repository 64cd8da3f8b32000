"""Multi Model Server handler for insect detectors.

POST a JPEG/PNG body to ``/predictions/<name>``; the answer is a JSON list of
``{"label", "score", "box": [x1, y1, x2, y2]}`` (pixels of the posted image, best first,
scores at or above the archive's threshold). With MMS batching (``batch_size`` > 1 at
registration) the requests of a batch run through the model as one forward pass.
A body that is not an image (or one over 40 Mpx) gets HTTP 400 with ``{"error": ...}``, a
Content-Type other than image/* or application/octet-stream 415; the rest of the batch
is answered normally.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)


class DetectorService:
    def __init__(self) -> None:
        self.predictor = None

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

    def handle(self, data: list[dict], context) -> list:
        from insectml.detector.predict import decode_image
        from insectml.serving.batch import answer_batch

        return answer_batch(data, context, decode_image, self.predictor.predict, media="image")


_service = DetectorService()


def handle(data, context):
    if _service.predictor is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
