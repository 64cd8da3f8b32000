"""What a served model refuses for its size, each as a 400 for that request only: an image
declaring more pixels than ``MAX_PIXELS`` (a decompression bomb), and a recording longer
than ``MAX_FEATURE_SECONDS`` for the model that computes features on the whole clip."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from insectml.errors import UserError
from insectml.wingbeat.frontend import FrontendConfig
from insectml.wingbeat.predict import ClassicalPredictor, NetPredictor
from PIL import Image


class Context:
    system_properties = {"model_dir": "."}

    def __init__(self):
        self.statuses = {}

    def set_response_status(self, code, phrase, idx=0):
        self.statuses[idx] = code


def png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG")
    return buffer.getvalue()


BOMB = png((8000, 6000), mode="1")  # a few kB that decode to 48 Mpx: under PIL's own limit


def test_an_image_over_the_pixel_cap_is_refused_before_decoding():
    from insectml.data.images import open_image

    with pytest.raises(UserError, match=r"^request body: image is 8000x6000 px \(48\.0 Mpx\); at most 40 Mpx"):
        open_image(BOMB)


def test_a_bomb_gets_a_400_for_its_item_and_the_batch_is_answered(monkeypatch):
    from insectml.serving import fewshot_handler

    class Predictor:
        def predict(self, images, top_k):
            return [{"label": "a", "size": image.size} for image in images]

    service = fewshot_handler.FewshotService()
    service.predictor = Predictor()
    monkeypatch.setattr(fewshot_handler, "_service", service)
    context = Context()
    out = fewshot_handler.handle([{"body": png((32, 24))}, {"body": BOMB}, {"body": png((16, 16))}], context)
    assert (context.statuses, out[0]["size"], out[2]["size"]) == ({1: 400}, (32, 24), (16, 16))


# -- recording length ----------------------------------------------------------------------


class FeaturesModel(ClassicalPredictor):
    def __init__(self):  # noqa: D107 - the real class's kind and inputs, no estimator
        self.classes, self.frontend, self.inputs = ["a", "b"], FrontendConfig(), "engineered"

    def _audio_probs(self, audio):
        return np.array([0.5, 0.5])


class SpectrogramModel(NetPredictor):
    def __init__(self):  # noqa: D107
        self.classes, self.frontend = ["a", "b"], FrontendConfig()

    def _audio_probs(self, audio):
        return np.array([0.5, 0.5])


def wav(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.full(int(seconds * 8000), 0.1, dtype=np.float32), 8000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def serve(monkeypatch, predictor, *bodies):
    from insectml.serving import wingbeat_handler

    service = wingbeat_handler.WingbeatService()
    service.predictor = predictor
    monkeypatch.setattr(wingbeat_handler, "_service", service)
    context = Context()
    return context.statuses, wingbeat_handler.handle([{"body": b} for b in bodies], context)


def test_the_features_model_refuses_a_recording_over_the_cap(monkeypatch):
    statuses, out = serve(monkeypatch, FeaturesModel(), wav(1), wav(31))
    assert statuses == {1: 400} and out[1]["error"] == (
        "request body: recording is 31 s; this model computes its features on the whole recording "
        "and serves at most 30 s: send a shorter clip"
    )


def test_a_spectrogram_model_serves_a_long_recording_cropped_as_in_training(monkeypatch):
    statuses, out = serve(monkeypatch, SpectrogramModel(), wav(31))
    assert statuses == {} and set(out[0]["probabilities"]) == {"a", "b"}
