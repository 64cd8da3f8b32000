"""Truncated and too-short inputs are refused everywhere: wingbeat validation lists them,
a trained wingbeat model refuses them with the minimum length it was validated with (CLI:
exit 2, one line naming the file; few-shot and wingbeat handlers: HTTP 400 for that item),
and images cut short are refused by the few-shot CLI and handler."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from insectml.errors import UserError
from PIL import Image

MIN_SECONDS = 0.3  # above the default, so the model's own value is what refuses


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def write_wav(path: Path, seconds: float) -> Path:
    rng = np.random.default_rng(0)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * 8000))).astype(np.float32), 8000, subtype="PCM_16")
    return path


def cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


# -- wingbeat ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tiny_wingbeat, tmp_path_factory):
    """A features model validated with --min-seconds 0.3 (6 recordings per species)."""
    out = tmp_path_factory.mktemp("minimum")
    labels, data = tiny_wingbeat / "labels.csv", tiny_wingbeat
    steps = (
        ["wingbeat", "validate", "--labels", labels, "--min-seconds", MIN_SECONDS, "--max-per-class", 6, "--out", out],
        ["wingbeat", "features", "--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json",
         "--data", data, "--out", out / "features.npz"],
        ["wingbeat", "train", "--features", out / "features.npz", "--set", "n_estimators=10", "--out", out / "model"],
    )  # fmt: skip
    for args in steps:
        assert cli(*args) == 0
    return out / "model"


def test_the_model_carries_the_minimum_it_was_validated_with(model):
    assert json.loads((model / "config.json").read_text())["frontend"]["min_seconds"] == MIN_SECONDS


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda p: cut(write_wav(p, 1.0), 300), "truncated WAV: header promises 8000 frames, file holds 128"),
        (lambda p: write_wav(p, 0.2), "recording is 0.2 s; at least 0.3 s required (--wingbeat_min_seconds)"),
    ],
    ids=["truncated", "too-short"],
)
def test_predict_refuses_in_one_line_naming_the_file(model, tmp_path, capsys, make, fragment):
    bad = make(tmp_path / "bad.wav")
    good = write_wav(tmp_path / "good.wav", 0.5)
    code = cli("wingbeat", "predict", "--model", model, good, bad)
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.err, f"{bad}: {fragment}")
    assert captured.out == ""  # every file is checked before any answer is printed


def test_a_model_from_before_min_seconds_gets_the_default(model, tmp_path, capsys):
    old = tmp_path / "old"
    shutil.copytree(model, old)
    config = json.loads((old / "config.json").read_text())
    del config["frontend"]["min_seconds"]
    (old / "config.json").write_text(json.dumps(config))
    assert cli("wingbeat", "predict", "--model", old, write_wav(tmp_path / "a.wav", 0.2)) == 0  # 0.3 no longer applies
    code = cli("wingbeat", "predict", "--model", old, write_wav(tmp_path / "b.wav", 0.05))
    assert_one_line_error(code, capsys.readouterr().err, "at least 0.1 s required")


def test_validation_lists_truncated_and_short_recordings(tiny_wingbeat, tmp_path):
    from insectml.errors import ValidationFailed
    from insectml.wingbeat.validate import ValidateConfig, validate_and_split

    root = tmp_path / "data"
    shutil.copytree(tiny_wingbeat, root)
    rows = list(csv.DictReader((root / "labels.csv").open()))
    cut(root / rows[0]["path"], 300)
    write_wav(root / rows[1]["path"], 0.05)
    cfg = ValidateConfig(labels=root / "labels.csv", data_dir=root, out_dir=tmp_path / "out", classes=None)
    with pytest.raises(ValidationFailed) as info:
        validate_and_split(cfg)
    assert info.value.problems == [
        f"{rows[0]['path']}: truncated WAV: header promises {_frames(tiny_wingbeat / rows[0]['path'])} frames, "
        "file holds 128",
        f"{rows[1]['path']}: recording is 0.05 s; at least 0.1 s required (--wingbeat_min_seconds)",
    ]
    assert json.loads((tmp_path / "out" / "validation_report.json").read_text())["problems"] == info.value.problems


def _frames(path: Path) -> int:
    return sf.info(path).frames


# -- images ------------------------------------------------------------------------------


def image_bytes(fmt: str, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3)).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def half(body: bytes) -> bytes:
    return body[: len(body) // 2]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_an_image_cut_in_half_is_refused(fmt):
    from insectml.data.images import open_image

    with pytest.raises(UserError, match=r"^photo: not a readable image \(OSError: image file is truncated"):
        open_image(half(image_bytes(fmt)), name="photo")


def test_a_decompression_bomb_is_refused_not_a_crash():
    from insectml.data.images import open_image

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # 48 kB that decode to 400 Mpx
    with pytest.raises(UserError, match="^request body: image too large to decode"):
        open_image(buffer.getvalue())


@pytest.fixture(scope="module")
def fewshot_model(tmp_path_factory):
    """An untrained few-shot embedder with a three-class gallery."""
    import torch
    from insectml.fewshot.gallery import Gallery
    from insectml.fewshot.model import create_embedder

    out = tmp_path_factory.mktemp("fewshot")
    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), out / "weights.pt")
    (out / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": 32}))
    protos = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    Gallery(["a", "b", "c"], protos / np.linalg.norm(protos, axis=1, keepdims=True), [3, 3, 3], 0.5).save(
        out / "gallery"
    )
    return out


def test_fewshot_handler_answers_each_truncated_image_with_its_own_400(fewshot_model, monkeypatch):
    from insectml.serving import fewshot_handler

    class Context:
        system_properties = {"model_dir": str(fewshot_model)}

        def __init__(self):
            self.statuses = {}

        def set_response_status(self, code, phrase, idx=0):
            self.statuses[idx] = code

    monkeypatch.setattr(fewshot_handler, "_service", fewshot_handler.FewshotService())
    context = Context()
    batch = [{"body": image_bytes("PNG")}, {"body": half(image_bytes("JPEG"))}, {"body": half(image_bytes("PNG"))}]
    out = fewshot_handler.handle(batch, context)
    assert context.statuses == {1: 400, 2: 400}
    assert all("image file is truncated" in out[i]["error"] for i in (1, 2)) and out[0]["label"]


def test_fewshot_predict_refuses_a_truncated_image_in_one_line(fewshot_model, tmp_path, capsys):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(half(image_bytes("JPEG")))
    code = cli("fewshot", "predict", "--model", fewshot_model, "--gallery", fewshot_model / "gallery", bad)
    assert_one_line_error(code, capsys.readouterr().err, str(bad), "image file is truncated")
