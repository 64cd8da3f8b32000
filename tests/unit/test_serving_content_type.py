"""What MMS's worker hands the handlers and takes back from them, with MMS's own request
context: a Content-Type other than the model's media gets 415 for that item, and every
reason phrase is one the worker can frame."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf
from insectml.wingbeat.frontend import FrontendConfig
from mms.context import Context, RequestProcessor


class Predictor:
    classes = ["a", "b"]
    frontend = FrontendConfig()

    def predict_audio(self, audio):
        return {"a": 0.5, "b": 0.5}


def wav() -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(4000, dtype=np.float32), 8000, format="WAV")
    return buffer.getvalue()


def test_each_body_of_another_media_type_gets_its_own_415(monkeypatch):
    from insectml.serving import wingbeat_handler

    service = wingbeat_handler.WingbeatService()
    service.predictor = Predictor()
    monkeypatch.setattr(wingbeat_handler, "_service", service)
    declared = ["audio/wav", "application/octet-stream", "text/plain", "application/json", "", "Audio/X-WAV; q=1"]
    context = Context("wingbeat", ".", {}, len(declared), None, "1.1.11")
    context.request_processor = [RequestProcessor({"body": {"content-type": ct}}) for ct in declared]
    wingbeat_handler.handle([{"body": wav()} for _ in declared], context)
    codes = [context.get_response_status(i)[0] for i in range(len(declared))]
    assert codes == [200, 200, 415, 415, 200, 200]


def test_the_status_phrase_mms_frames_is_ascii_and_the_body_keeps_the_text():
    """MMS 1.1.11 frames the reason phrase by its length in characters but sends UTF-8
    bytes: a non-ASCII phrase corrupts the frame and kills the worker."""
    from insectml.errors import UserError
    from insectml.serving.batch import answer_batch

    def decode(body):
        raise UserError("request body: « naïve » recording")

    context = Context("m", ".", {}, 1, None, "1.1.11")
    context.request_processor = [RequestProcessor({"body": {"content-type": "audio/wav"}})]
    out = answer_batch([{"body": b"x"}], context, decode, lambda items: [])
    code, phrase = context.get_response_status(0)
    assert (code, phrase.isascii(), out[0]["error"]) == (400, True, "request body: « naïve » recording")
