"""The prediction log the MMS handlers write: its line schema, rotation, several processes
appending at once, the cap on kept inputs, and that logging never fails a request."""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from insectml.serving.predlog import LOG_NAME, LogSettings, PredictionLog, identity
from insectml.wingbeat.frontend import FrontendConfig

KEYS = {"time", "family", "model", "version", "input", "answer", "summary", "top_score", "unknown", "input_file"}


def lines(folder: Path, name: str = LOG_NAME) -> list[dict]:
    path = folder / name
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def append(plog: PredictionLog, body: bytes = b"RIFF....WAVEfmt ", n: int = 0, **kw) -> bool:
    args = {
        "family": "wingbeat",
        "model": "wingbeat",
        "version": "abc123def456",
        "body": body,
        "media_type": "audio/wav",
        "answer": {"probabilities": {"culex": 0.75, "aedes": 0.25}, "n": n},
        "summary": {"features": {"f0_hz": 500.0}},
        "top_score": 0.75,
        "unknown": False,
    }
    return plog.append(**{**args, **kw})


def wav_bytes(seconds: float = 0.5, rate: int = 8000, hz: float = 450.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    sf.write(buffer, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate, format="WAV")
    return buffer.getvalue()


def test_a_line_has_the_contract_schema(tmp_path):
    body = b"RIFF\x00\x00\x00\x00WAVE and the rest"
    assert append(PredictionLog(tmp_path), body, media_type="")
    (line,) = lines(tmp_path)
    assert set(line) == KEYS
    assert datetime.fromisoformat(line["time"]).utcoffset().total_seconds() == 0
    assert line["input"] == {"sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body), "media_type": "audio/wav"}
    assert (line["family"], line["model"], line["version"], line["top_score"], line["unknown"], line["input_file"]) == (
        "wingbeat",
        "wingbeat",
        "abc123def456",
        0.75,
        False,
        None,
    )


def test_the_log_rotates_by_size_and_keeps_n_older_files(tmp_path):
    plog = PredictionLog(tmp_path, max_bytes=1000, files=2)
    for n in range(40):
        assert append(plog, n=n)
    names = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    sizes = [(tmp_path / name).stat().st_size for name in names]
    kept = [
        line["answer"]["n"] for name in (f"{LOG_NAME}.2", f"{LOG_NAME}.1", LOG_NAME) for line in lines(tmp_path, name)
    ]
    assert (names, max(sizes) <= 1000, kept) == (
        [LOG_NAME, f"{LOG_NAME}.1", f"{LOG_NAME}.2"],
        True,
        list(range(40 - len(kept), 40)),
    )


def _append_many(plog: PredictionLog, worker: int, count: int) -> None:
    for n in range(count):
        append(plog, body=f"{worker}-{n}".encode(), n=worker * 1000 + n, summary={"embedding": [0.1] * 200})


def test_processes_appending_at_once_lose_and_tear_no_line(tmp_path):
    """Four processes (forked with the parent's log object, as a pre-forking server would)
    append 150 lines each through rotations: every line is kept, whole, exactly once."""
    plog = PredictionLog(tmp_path, max_bytes=60_000, files=50)
    append(plog, n=-1)  # the parent opens its lock file before the fork
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_append_many, args=(plog, w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    names = [p.name for p in tmp_path.iterdir() if p.name.startswith(LOG_NAME)]
    seen = sorted(line["answer"]["n"] for name in names for line in lines(tmp_path, name))
    assert len(names) > 2 and seen == [-1, *sorted(w * 1000 + n for w in range(4) for n in range(150))]


def test_inputs_are_kept_once_each_until_the_cap_then_not_at_all(tmp_path):
    plog = PredictionLog(tmp_path, inputs_folder=tmp_path / "inputs", inputs_max_bytes=250)
    bodies = [bytes([i]) * 100 for i in range(3)]
    for body in [*bodies, bodies[0]]:
        assert append(plog, body)
    kept = [line["input_file"] for line in lines(tmp_path)]
    first = f"inputs/{hashlib.sha256(bodies[0]).hexdigest()}.wav"
    assert (kept, (tmp_path / first).read_bytes()) == (
        [first, f"inputs/{hashlib.sha256(bodies[1]).hexdigest()}.wav", None, first],
        bodies[0],
    )


@pytest.mark.parametrize("problem", ["folder is a file", "answer is not JSON"])
def test_a_logging_error_is_counted_not_raised(tmp_path, problem):
    folder = tmp_path / "log"
    if problem == "folder is a file":
        folder.write_text("")
    plog = PredictionLog(folder)
    answer = object() if problem == "answer is not JSON" else {}
    assert (append(plog, answer=answer), append(plog, answer=answer), plog.failures) == (False, False, 2)


def test_the_environment_configures_the_log(tmp_path):
    settings = LogSettings(max_bytes=123, files=3, inputs=True, inputs_max_bytes=456, summary_share=0.5)
    plog = PredictionLog.from_env(settings.env(tmp_path))
    got = (plog.folder, plog.max_bytes, plog.files, plog.inputs_folder, plog.inputs_max_bytes, plog.summary_share)
    assert (PredictionLog.from_env({}), got) == (None, (tmp_path, 123, 3, tmp_path / "inputs", 456, 0.5))


def test_version_is_the_recorded_weights_sha256(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model": "features"}))
    (tmp_path / "lineage.json").write_text(json.dumps({"sha256": {"model.joblib": "0123456789abcdef" * 4}}))
    assert identity(tmp_path) == ("features", "0123456789ab")


# -- the handlers -----------------------------------------------------------------------------


def mms_context(model_dir: Path, content_types: list[str]):
    from mms.context import Context, RequestProcessor

    context = Context("m", str(model_dir), {"model_dir": str(model_dir)}, len(content_types), None, "1.1.11")
    context.request_processor = [RequestProcessor({"body": {"content-type": ct}}) for ct in content_types]
    return context


class FakeNet:
    """A wingbeat model that does not read engineered features (like the nets)."""

    kind = "net"
    classes = ["aedes", "culex"]
    frontend = FrontendConfig()

    def predict_audio(self, audio):
        return {"culex": 0.75, "aedes": 0.25}


@pytest.mark.parametrize("share", [1.0, 0.0])
def test_wingbeat_handler_logs_answered_items_with_features_within_the_share(tmp_path, monkeypatch, share):
    """A 400 and a 415 item get no line; a model not trained on the features gets them within
    the summary share of serving time (all at 1, none at 0)."""
    from insectml.serving import wingbeat_handler
    from insectml.wingbeat import predict
    from insectml.wingbeat.features import feature_names

    monkeypatch.setattr(predict, "load_predictor", lambda model_dir: FakeNet())
    monkeypatch.setattr(wingbeat_handler, "_service", wingbeat_handler.WingbeatService())
    for key, value in LogSettings(summary_share=share).env(tmp_path / "log").items():
        monkeypatch.setenv(key, value)
    context = mms_context(tmp_path, ["audio/wav", "audio/wav", "text/plain"])
    out = wingbeat_handler.handle([{"body": wav_bytes()}, {"body": b"not a wav"}, {"body": wav_bytes()}], context)
    (line,) = lines(tmp_path / "log")
    names = list(line["summary"].get("features", {}))
    assert (line["answer"], names, line["top_score"]) == (out[0], feature_names() if share else [], 0.75)


def test_the_features_model_answers_as_without_the_log_and_logs_its_inputs(tmp_path, monkeypatch):
    from insectml.serving import wingbeat_handler
    from insectml.wingbeat.features import engineered_features, feature_names
    from insectml.wingbeat.predict import ClassicalPredictor
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    predictor = object.__new__(ClassicalPredictor)
    predictor.classes, predictor.frontend, predictor.inputs, predictor.temperature = (
        ["a", "b", "c"],
        FrontendConfig(),
        "engineered",
        1.7,
    )
    predictor.estimator = LogisticRegression().fit(rng.normal(size=(30, len(feature_names()))), np.arange(30) % 3)
    service = wingbeat_handler.WingbeatService()
    service.predictor = predictor
    service.log = PredictionLog(tmp_path, summary_share=0)
    monkeypatch.setattr(wingbeat_handler, "_service", service)
    body = wav_bytes(hz=600.0)
    out = wingbeat_handler.handle([{"body": body}], mms_context(tmp_path, ["audio/wav"]))
    audio = wingbeat_handler._service.decode(body)
    expected = engineered_features(audio, predictor.frontend)
    (line,) = lines(tmp_path)
    assert out == [{"probabilities": predictor.predict_audio(audio)}]
    assert list(line["summary"]["features"].values()) == pytest.approx(expected.tolist(), rel=1e-5, abs=1e-9)


def test_fewshot_handler_logs_the_unit_embedding_and_unknown(tmp_path, monkeypatch):
    import torch
    from insectml.fewshot.gallery import Gallery
    from insectml.fewshot.model import create_embedder
    from insectml.serving import fewshot_handler
    from PIL import Image

    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": 32}))
    protos = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    Gallery(["a", "b", "c"], protos / np.linalg.norm(protos, axis=1, keepdims=True), [3, 3, 3], 0.999).save(
        tmp_path / "gallery"
    )
    monkeypatch.setattr(fewshot_handler, "_service", fewshot_handler.FewshotService())
    monkeypatch.setenv("INSECTML_PREDICTION_LOG", str(tmp_path / "log"))
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, format="PNG")
    out = fewshot_handler.handle([{"body": buf.getvalue()}], mms_context(tmp_path, [""]))
    (line,) = lines(tmp_path / "log")
    embedding = np.asarray(line["summary"]["embedding"])
    assert (line["answer"], line["unknown"], line["input"]["media_type"], line["top_score"]) == (
        out[0],
        out[0]["label"] == "unknown",
        "image/png",
        out[0]["score"],
    )
    assert embedding.shape == (16,) and np.linalg.norm(embedding) == pytest.approx(1, abs=1e-4)


def test_eager_detector_logs_pooled_backbone_features_from_its_forward(tmp_path, monkeypatch):
    import torch
    from insectml.detector.models import create_detector
    from insectml.serving import detector_handler
    from PIL import Image

    torch.manual_seed(0)
    torch.save(create_detector("ssdlite320_mobilenet_v3_large", 2).state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps({"model": "ssdlite320_mobilenet_v3_large", "image_size": 320}))
    (tmp_path / "labels.json").write_text(json.dumps(["bee", "stink_bug"]))
    (tmp_path / "lineage.json").write_text("{}")
    monkeypatch.setattr(detector_handler, "_service", detector_handler.DetectorService())
    monkeypatch.setenv("INSECTML_PREDICTION_LOG", str(tmp_path / "log"))
    bodies = []
    rng = np.random.default_rng(0)
    for _ in range(2):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (150, 200, 3), dtype=np.uint8)).save(buf, format="JPEG")
        bodies.append({"body": buf.getvalue()})
    detector_handler.handle(bodies, mms_context(tmp_path, ["image/jpeg", "image/jpeg"]))
    logged = lines(tmp_path / "log")
    embeddings = [line["summary"]["embedding"] for line in logged]
    assert len(embeddings) == 2 and len(embeddings[0]) == len(embeddings[1]) > 0 and embeddings[0] != embeddings[1]


# -- the server -------------------------------------------------------------------------------


def test_serve_start_flags_reach_the_workers_environment(tmp_path, monkeypatch):
    """The flags become the workers' environment; a log variable in the caller's
    environment never leaks into a server started with --no-prediction-log."""
    from insectml.cli import main
    from insectml.serving import mms

    launched = []

    class Popen:
        def __init__(self, args, cwd=None, env=None, **kwargs):
            launched.append(env)
            self.pid = 0

        def poll(self):
            return 1

    monkeypatch.setattr(mms.subprocess, "Popen", Popen)
    monkeypatch.setenv("INSECTML_PREDICTION_LOG", "/somewhere/else")
    original = mms.start
    monkeypatch.setattr(mms, "start", lambda cfg, probe=None, timeout=0: original(cfg, probe, timeout=0.1))
    store = tmp_path / "store"
    store.mkdir()
    for flags in (["--log-max-bytes", "1000", "--log-files", "2", "--log-inputs"], ["--no-prediction-log"]):
        code = main(["serve", "start", "--model-store", str(store), "--state", str(tmp_path / "state"), *flags])
        assert code == 2  # the fake MMS 'exits' at once
    on, off = (PredictionLog.from_env(env) for env in launched)
    state = (tmp_path / "state").resolve()
    assert (on.folder, on.max_bytes, on.files, on.inputs_folder, off) == (
        state / "predictions",
        1000,
        2,
        state / "predictions" / "inputs",
        None,
    )
