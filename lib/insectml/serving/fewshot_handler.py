"""Multi Model Server handler for few-shot identification.

POST a JPEG/PNG body to ``/predictions/<name>``; the answer is
``{"label", "score", "threshold", "temperature", "top_k": [{"label", "score", "probability"}, …]}``
where ``label`` is ``"unknown"`` when the best cosine similarity (``score``) is below the
gallery's threshold, and ``probability`` is the calibrated probability of the class among
every class of the gallery (``softmax(cosine / temperature)``, the model's temperature;
absent for a model without one). It is :class:`~insectml.fewshot.predict.FewshotPredictor`'s
answer, the one ``insectml fewshot predict`` prints. The
gallery (``gallery/`` in the archive) is what `insectml fewshot enrol` extends; a new
archive with the new gallery is registered next to the old one, then the old one is
unregistered, without restarting the server. A bad body gets HTTP 400 with
``{"error": ...}`` (415 for a Content-Type other than image/* or application/octet-stream);
with MMS batching the good images of a batch share one forward pass.

Prediction log (:mod:`insectml.serving.predlog`, when the server keeps one): each answered
image's line holds its unit embedding, the one the gallery answer was computed from.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)


class FewshotService:
    def __init__(self) -> None:
        self.predictor = None
        self.top_k = 5
        self.log = None
        self.model = ("", "")

    def initialize(self, context) -> None:
        import torch

        from insectml.fewshot.predict import FewshotPredictor
        from insectml.serving.predlog import PredictionLog, identity

        torch.set_num_threads(1)
        model_dir = Path(context.system_properties["model_dir"])
        self.predictor = FewshotPredictor(model_dir)
        self.log = PredictionLog.from_env()
        if self.log is not None:
            self.model = identity(model_dir)
        serving = model_dir / "serving.json"
        self.top_k = json.loads(serving.read_text()).get("top_k", 5) if serving.is_file() else 5
        log.info(
            "few-shot model loaded from %s (%d classes in the gallery)", model_dir, len(self.predictor.gallery.classes)
        )

    def handle(self, data: list[dict], context) -> list:
        from insectml.data.images import open_image
        from insectml.serving.batch import answer_batch
        from insectml.serving.predlog import log_answers

        if self.log is None:
            return answer_batch(
                data, context, open_image, lambda images: self.predictor.predict(images, self.top_k), media="image"
            )
        summaries: list[dict] = []
        answers = answer_batch(data, context, open_image, lambda images: self._logged(images, summaries), media="image")
        log_answers(self.log, "fewshot", self.model, data, context, answers, summaries, _scores)
        return answers

    def _logged(self, images: list, summaries: list[dict]) -> list[dict]:
        """:meth:`FewshotPredictor.predict`'s answers; each image's embedding appended to ``summaries``."""
        from insectml.serving.predlog import compact

        embeddings = self.predictor.embed_images(images)
        summaries.extend({"embedding": compact(e)} for e in embeddings)
        return [self.predictor.gallery.answer(e, self.top_k) for e in embeddings]


def _scores(answer: dict) -> tuple[float | None, bool]:
    from insectml.fewshot.gallery import UNKNOWN

    return answer.get("score"), answer.get("label") == UNKNOWN


_service = FewshotService()


def handle(data, context):
    if _service.predictor is None:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
