"""The served detector's code path: exports match the model, the handler batches and
answers a bad body with 400 while the rest of the batch gets boxes."""

import io
import json

import pytest
import torch
from insectml.detector.export import export_detector
from insectml.detector.models import create_detector
from insectml.detector.predict import TORCHSCRIPT, DetectorPredictor, decode_image
from insectml.errors import UserError
from PIL import Image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """An untrained SSDlite with its box-score floor at 0, so it always returns boxes."""
    out = tmp_path_factory.mktemp("det")
    torch.manual_seed(0)
    model = create_detector("ssdlite320_mobilenet_v3_large", 2)
    torch.save(model.state_dict(), out / "weights.pt")
    (out / "config.json").write_text(json.dumps({"model": "ssdlite320_mobilenet_v3_large", "image_size": 320}))
    (out / "labels.json").write_text(json.dumps(["bee", "stink_bug"]))
    (out / "lineage.json").write_text("{}")
    return out


def image_bytes(fmt: str, size=(200, 150), color=(120, 80, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


def test_decode_rejects_what_is_not_an_image():
    assert decode_image(image_bytes("PNG")).shape == (3, 150, 200)
    assert decode_image(image_bytes("JPEG")).dtype == torch.float32
    for body, message in [(b"", "empty"), (b"GIF89a not really", "not a readable image"), (None, "empty")]:
        with pytest.raises(UserError, match=message):
            decode_image(body)
    with pytest.raises(UserError, match="not a readable image"):
        decode_image(image_bytes("PNG")[:200])  # truncated
    with pytest.raises(UserError, match="at least 8x8"):
        decode_image(image_bytes("PNG", size=(4, 4)))


def test_torchscript_export_predicts_like_the_eager_model(model_dir, tmp_path):
    written = export_detector(model_dir, tmp_path, "det")
    assert written["torchscript_max_abs_diff"] < 1e-3
    served = tmp_path / "served"
    served.mkdir()
    for name in ("config.json", "labels.json", "weights.pt"):
        (served / name).write_bytes((model_dir / name).read_bytes())
    (served / TORCHSCRIPT).write_bytes((tmp_path / "det.torchscript.pt").read_bytes())
    eager, scripted = DetectorPredictor(model_dir, 0.0), DetectorPredictor(served, 0.0)
    assert scripted.scripted and not eager.scripted
    images = [decode_image(image_bytes("PNG")), decode_image(image_bytes("JPEG", size=(320, 240)))]
    a, b = eager.predict(images), scripted.predict(images)
    assert [[d["label"] for d in x] for x in a] == [[d["label"] for d in x] for x in b]
    for x, y in zip(a, b, strict=True):
        for d, e in zip(x, y, strict=True):
            assert d["score"] == pytest.approx(e["score"], abs=1e-3)
            assert d["box"] == pytest.approx(e["box"], abs=0.5)


def test_unknown_export_format_is_a_user_error(model_dir, tmp_path):
    with pytest.raises(UserError, match="unknown format"):
        export_detector(model_dir, tmp_path, "det", ("torchscript", "tflite"))


class FakeContext:
    def __init__(self, model_dir):
        self.system_properties = {"model_dir": str(model_dir)}
        self.statuses = {}

    def set_response_status(self, code, phrase, idx=0):
        self.statuses[idx] = (code, phrase)


def test_handler_batches_and_isolates_a_bad_body(model_dir, monkeypatch):
    from insectml.serving import detector_handler

    monkeypatch.setattr(detector_handler, "_service", detector_handler.DetectorService())
    context = FakeContext(model_dir)
    calls = []
    batch = [{"body": image_bytes("PNG")}, {"body": b"not an image"}, {"data": image_bytes("JPEG")}]
    detector_handler.handle(None, context)  # MMS's initialisation call
    real = detector_handler._service.predictor.predict
    detector_handler._service.predictor.score_threshold = 0.0
    monkeypatch.setattr(detector_handler._service.predictor, "predict", lambda ims: calls.append(len(ims)) or real(ims))
    out = detector_handler.handle(batch, context)
    assert calls == [2]  # one forward pass for the two good images
    assert context.statuses == {1: (400, out[1]["error"])} and "not a readable image" in out[1]["error"]
    for answer in (out[0], out[2]):
        assert answer and {"label", "score", "box"} == set(answer[0]) and len(answer[0]["box"]) == 4
        assert answer[0]["label"] in ("bee", "stink_bug")


def test_onnx_export_matches_the_model(model_dir, tmp_path):
    pytest.importorskip("onnxruntime")
    written = export_detector(model_dir, tmp_path, "det", ("torchscript", "onnx"))
    assert (tmp_path / "det.onnx").is_file() and written["onnx_max_abs_diff"] < 1e-2
    assert json.loads((tmp_path / "det.export.json").read_text())["onnx"].endswith("det.onnx")


def half(body: bytes) -> bytes:
    return body[: len(body) // 2]


def noisy_image_bytes(fmt: str) -> bytes:
    """An image whose compressed data fill the file, so half of it is half of the pixels."""
    rng = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 255, (150, 200, 3), dtype=torch.uint8, generator=rng).numpy()
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def test_handler_answers_each_image_cut_in_half_with_its_own_400(model_dir, monkeypatch):
    from insectml.serving import detector_handler

    monkeypatch.setattr(detector_handler, "_service", detector_handler.DetectorService())
    context = FakeContext(model_dir)
    batch = [
        {"body": half(noisy_image_bytes("JPEG"))},
        {"body": image_bytes("PNG")},
        {"body": half(noisy_image_bytes("PNG"))},
    ]
    out = detector_handler.handle(batch, context)
    assert set(context.statuses) == {0, 2} and all(code == 400 for code, _ in context.statuses.values())
    assert all("image file is truncated" in out[i]["error"] for i in (0, 2)) and isinstance(out[1], list)


def test_cli_predict_refuses_an_image_cut_in_half_in_one_line(model_dir, tmp_path, capsys):
    from insectml.cli import main

    bad = tmp_path / "cut.jpg"
    bad.write_bytes(half(noisy_image_bytes("JPEG")))
    code = main(["detector", "predict", "--model", str(model_dir), str(bad)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"{bad}: not a readable image" in lines[0], lines


def test_packed_torchscript_is_verified_when_loaded(model_dir, tmp_path):
    """'package' records the sha256 of the TorchScript it packs beside the model folder, so a
    changed file in the served folder is refused rather than run."""
    from insectml.serving.package import _record_sha256

    export_detector(model_dir, tmp_path, "det")
    served = tmp_path / "served"
    served.mkdir()
    for name in ("config.json", "labels.json", "weights.pt", "lineage.json"):
        (served / name).write_bytes((model_dir / name).read_bytes())
    (served / TORCHSCRIPT).write_bytes((tmp_path / "det.torchscript.pt").read_bytes())
    _record_sha256(served, [TORCHSCRIPT])
    assert DetectorPredictor(served, 0.0).scripted
    (served / TORCHSCRIPT).write_bytes((served / TORCHSCRIPT).read_bytes() + b"\0")
    with pytest.raises(UserError, match="sha256"):
        DetectorPredictor(served, 0.0)
