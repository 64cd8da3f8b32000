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
    assert context.statuses == {idx: (400, out[idx]["error"]) for idx in (1, 3, 4)}
