"""``insectml pretrain train``: SimCLR on a handful of tiny images writes weights that the store,
``insectml weights import timm`` and the few-shot family take; the same seed gives the same
tensors; bad folders and weights of another architecture are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from insectml.weights import store

BACKBONE = "test_resnet"  # timm's smallest ResNet (0.4 M parameters)
SIZE = 32
TRAIN = ("--backbone", BACKBONE, "--image-size", SIZE, "--epochs", 2, "--batch-size", 4, "--seed", 5)


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


def one_line_error(code: int, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def write_images(folder, n: int = 8):
    """``n`` 32-px PNGs in two folders: red squares and blue discs at seeded places."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for i in range(n):
        image = Image.new("RGB", (SIZE, SIZE), "white")
        x, y = rng.integers(2, 14, size=2)
        box = (int(x), int(y), int(x) + 16, int(y) + 16)
        draw = ImageDraw.Draw(image)
        (draw.rectangle if i % 2 else draw.ellipse)(box, fill="red" if i % 2 else "blue")
        path = folder / ("squares" if i % 2 else "discs") / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    (folder / "notes.txt").write_text("not an image")
    return folder


def tensors(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / store.WEIGHTS_FILE))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def pretrained(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert cli("pretrain", "train", "--images", images, "--out", out, *TRAIN) == 0
    return out / "ssl"


def test_writes_weights_the_store_resolves(pretrained):
    weights = store.resolve(pretrained)
    manifest = weights.manifest
    assert (weights.kind, weights.model, weights.input_size) == ("timm", BACKBONE, SIZE)
    assert weights.sha256 == manifest["sha256"] == store.sha256_file(pretrained / "model.safetensors")
    assert manifest["source"]["method"] == "simclr" and manifest["source"]["images"] == 8
    assert manifest["lineage"]["seed"] == 5 and manifest["licence"].startswith("yours")
    assert not any(k.startswith("projector") for k in tensors(pretrained))


def test_history_has_a_finite_loss_per_epoch(pretrained):
    rows = [json.loads(line) for line in (pretrained / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in rows)


def test_leaves_no_working_folder(pretrained):
    assert sorted(p.name for p in pretrained.parent.iterdir()) == ["ssl"]


def test_same_seed_same_tensors(pretrained, images, tmp_path):
    assert cli("pretrain", "train", "--images", images, "--out", tmp_path, *TRAIN) == 0
    first, again = tensors(pretrained), tensors(tmp_path / "ssl")
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)


def test_weights_import_timm_takes_the_hub_layout(pretrained, tmp_path):
    assert cli("weights", "import", "timm", pretrained / "model.safetensors", "--name", "mine",
               "--root", tmp_path, "--no-dvc") == 0  # fmt: skip
    imported = store.resolve(tmp_path / "weights" / "mine")
    assert imported.sha256 == store.sha256_file(pretrained / store.WEIGHTS_FILE)
    assert (imported.model, imported.input_size) == (BACKBONE, SIZE)


def test_fewshot_embedder_starts_from_it(pretrained):
    from insectml.fewshot.model import create_embedder
    from insectml.weights.backbones import image_backbone

    backbone, features = image_backbone(store.resolve(pretrained), "resnet10t")
    saved = tensors(pretrained)
    assert all(torch.equal(v, saved[k]) for k, v in backbone.state_dict().items())
    embedder = create_embedder("resnet10t", 16, pretrained, mode="frozen").eval()
    assert embedder(torch.zeros(2, 3, SIZE, SIZE)).shape == (2, features)


def test_continues_from_weights(pretrained, images, tmp_path):
    assert cli("pretrain", "train", "--images", images, "--out", tmp_path, "--weights", pretrained, *TRAIN,
               "--epochs", 1, "--name", "more") == 0  # fmt: skip
    source = store.resolve(tmp_path / "more").manifest["source"]
    assert source["started_from"]["sha256"] == store.sha256_file(pretrained / store.WEIGHTS_FILE)


def test_truncated_image_is_skipped_with_a_warning(images, tmp_path, capsys):
    import logging
    import shutil

    folder = shutil.copytree(images, tmp_path / "images")
    good = (folder / "discs" / "0.png").read_bytes()
    (folder / "discs" / "cut.png").write_bytes(good[: len(good) // 2])
    # a handler on the module's own logger: caplog's, on the root, depends on what earlier
    # tests of the session did to logging
    warnings: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append
    logger = logging.getLogger("insectml.pretrain.ssl")
    logger.addHandler(handler)
    try:
        assert cli("pretrain", "train", "--images", folder, "--out", tmp_path / "w", *TRAIN, "--epochs", 1) == 0
    finally:
        logger.removeHandler(handler)
    summary = json.loads(capsys.readouterr().out)
    assert (summary["images"], summary["skipped"]) == (8, 1)
    assert any("cut.png" in r.getMessage() for r in warnings)


def test_existing_name_is_refused(pretrained, images, capsys):
    code = cli("pretrain", "train", "--images", images, "--out", pretrained.parent, *TRAIN)
    assert "already exists" in one_line_error(code, capsys.readouterr().err)


@pytest.mark.parametrize("content", ["none", "unreadable"])
def test_no_readable_image_is_one_line(tmp_path, capsys, content):
    folder = tmp_path / "images"
    folder.mkdir()
    if content == "unreadable":
        for name in ("a.jpg", "b.png"):
            (folder / name).write_bytes(b"not an image")
    code = cli("pretrain", "train", "--images", folder, "--out", tmp_path / "w", *TRAIN)
    assert ("no images" if content == "none" else "none of its 2 images") in one_line_error(
        code, capsys.readouterr().err
    )
    assert not (tmp_path / "w").exists()


def test_weights_of_another_architecture_are_one_line(images, tmp_path, capsys):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("resnet10t", num_classes=0).state_dict(), str(tmp_path / "r10.safetensors"))
    code = cli("pretrain", "train", "--images", images, "--out", tmp_path / "w", "--weights",
               tmp_path / "r10.safetensors", *TRAIN)  # fmt: skip
    assert f"does not load into timm {BACKBONE}" in one_line_error(code, capsys.readouterr().err)


def test_imported_weights_of_another_architecture_are_one_line(pretrained, images, tmp_path, capsys):
    code = cli("pretrain", "train", "--images", images, "--out", tmp_path, "--weights", pretrained, *TRAIN,
               "--backbone", "resnet10t")  # fmt: skip
    assert f"timm {BACKBONE} weights" in one_line_error(code, capsys.readouterr().err)


def test_nt_xent_is_low_when_the_views_agree():
    from insectml.pretrain.ssl import nt_xent

    z = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    matched = nt_xent(torch.cat([z, z]), 0.1)
    shuffled = nt_xent(torch.cat([z, z.roll(1, 0)]), 0.1)
    assert matched < shuffled
