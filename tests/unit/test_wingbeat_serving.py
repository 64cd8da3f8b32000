"""The wingbeat MMS handler, called as MMS calls it, with a stand-in model."""

import io

import numpy as np
import pytest
import soundfile as sf
from insectml.wingbeat.frontend import FrontendConfig


class FakeContext:
    def __init__(self, model_dir):
        self.system_properties = {"model_dir": str(model_dir)}
        self.statuses = {}

    def set_response_status(self, code, phrase, idx=0):
        self.statuses[idx] = (code, phrase)


class FakePredictor:
    classes = ["aedes", "culex"]
    frontend = FrontendConfig()

    def __init__(self):
        self.lengths = []

    def predict_audio(self, audio):
        self.lengths.append(len(audio))
        return {"culex": 0.75, "aedes": 0.25}


def wav_bytes(samples: int, rate: int = 8000) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(samples, dtype=np.float32), rate, format="WAV")
    return buffer.getvalue()


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(predictor, context, answers) for one MMS batch of good and bad bodies."""
    from insectml.serving import wingbeat_handler
    from insectml.wingbeat import predict

    predictor = FakePredictor()
    monkeypatch.setattr(predict, "load_predictor", lambda model_dir: predictor)
    monkeypatch.setattr(wingbeat_handler, "_service", wingbeat_handler.WingbeatService())
    context = FakeContext(tmp_path)
    assert wingbeat_handler.handle(None, context) is None  # MMS's initialisation call
    batch = [
        {"body": wav_bytes(800)},
        {"body": b"definitely not a wav"},
        {"data": wav_bytes(1600)},
        {"body": "a string, not bytes"},
        {"body": wav_bytes(800, rate=16000)},
        {"body": wav_bytes(8000)[:300]},  # cut short: the header promises 8000 frames
        {"body": wav_bytes(400)},  # 0.05 s, below the model's min_seconds
    ]
    return predictor, context, wingbeat_handler.handle(batch, context)


def test_good_bodies_get_probabilities(served):
    predictor, _, out = served
    answer = {"probabilities": {"culex": 0.75, "aedes": 0.25}}
    assert (out[0], out[2], predictor.lengths) == (answer, answer, [800, 1600])


def test_each_bad_body_gets_its_own_400(served):
    _, context, out = served
    assert out[1]["error"].startswith("request body: not a readable WAV file (")
    assert (out[3], out[4]) == (
        {"error": "request body must be a WAV file (raw bytes)"},
        {"error": "request body: sample rate is 16000 Hz; 8000 Hz is required"},
    )
    assert context.statuses == {idx: (400, out[idx]["error"]) for idx in (1, 3, 4, 5, 6)}


def test_truncated_and_short_bodies_get_their_own_400(served):
    _, _, out = served
    assert (out[5], out[6]) == (
        {"error": "request body: truncated WAV: header promises 8000 frames, file holds 128"},
        {"error": "request body: recording is 0.05 s; at least 0.1 s required (--wingbeat_min_seconds)"},
    )


def test_the_models_own_minimum_applies(tmp_path, monkeypatch):
    """A model validated with min_seconds 0.5 refuses 0.2 s, which the default would accept."""
    from insectml.serving import wingbeat_handler
    from insectml.wingbeat import predict

    predictor = FakePredictor()
    predictor.frontend = FrontendConfig(min_seconds=0.5)
    monkeypatch.setattr(predict, "load_predictor", lambda model_dir: predictor)
    monkeypatch.setattr(wingbeat_handler, "_service", wingbeat_handler.WingbeatService())
    context = FakeContext(tmp_path)
    out = wingbeat_handler.handle([{"body": wav_bytes(1600)}, {"body": wav_bytes(4000)}], context)
    assert out[0] == {"error": "request body: recording is 0.2 s; at least 0.5 s required (--wingbeat_min_seconds)"}
    assert out[1] == {"probabilities": {"culex": 0.75, "aedes": 0.25}} and predictor.lengths == [4000]


def test_model_folders_from_before_min_seconds_get_the_default():
    from insectml.wingbeat.family import PARAMS

    old = {k: v for k, v in FrontendConfig().to_dict().items() if k != "min_seconds"}
    assert FrontendConfig.from_dict(old).min_seconds == PARAMS.default("wingbeat_min_seconds")
