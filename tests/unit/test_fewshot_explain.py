"""Few-shot explanations: the spatial layer found for CNNs (and none for transformers),
Grad-CAM of the cosine to the nearest prototype, the evaluation's grids, and
``insectml fewshot explain``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from insectml.fewshot.explain import RESULTS, explain_evaluation, similarity_maps, spatial_layer
from insectml.fewshot.gallery import Gallery
from insectml.fewshot.model import create_embedder
from PIL import Image

SIZE = 32
COLOURS = {"red": (200, 30, 40), "green": (30, 180, 60), "blue": (40, 60, 200)}


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


def picture(path: Path, colour: tuple[int, int, int], seed: int) -> Path:
    """A grey noisy square with a coloured blob somewhere."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(90, 160, size=(48, 48, 3)).astype(np.uint8)
    y, x = rng.integers(4, 28, size=2)
    pixels[y : y + 16, x : x + 16] = colour
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Three classes × three images (one support, two queries) as test rows below a root."""
    root = tmp_path_factory.mktemp("fs_images")
    rows = []
    for c, (name, colour) in enumerate(COLOURS.items()):
        for k in range(3):
            picture(root / f"{name}_{k}.png", colour, seed=10 * c + k)
            rows.append(
                {"path": f"{name}_{k}.png", "label": name, "split": "test", "subset": ("support", "query")[k > 0]}
            )
    return root, rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, images) -> Path:
    """An untrained model folder and a gallery of the three classes (from their support images)."""
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import embed, load_embedder

    root, rows = images
    folder = tmp_path_factory.mktemp("fs_model")
    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), folder / "weights.pt")
    (folder / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": SIZE}))
    support = [r for r in rows if r["subset"] == "support"]
    emb = embed(load_embedder(folder)[0], ImageSet(support, root, [], SIZE, False), torch.device("cpu"))
    Gallery.from_embeddings(emb, [r["label"] for r in support]).save(folder / "gallery")
    return folder


def test_the_spatial_layer_of_a_timm_cnn_is_its_last_stage_with_a_useful_map():
    model = create_embedder("resnet10t", 16)
    layer = spatial_layer(model, 64)
    assert (layer.name, layer.shape) == ("layer3", (4, 4))  # layer4 would be 2 × 2


def test_a_vision_transformer_has_no_spatial_layer():
    model = create_embedder("vit_tiny_patch16_224", 16)
    assert spatial_layer(model, 224) is None


def test_the_evaluation_says_when_the_backbone_cannot_be_explained(tmp_path):
    model = create_embedder("vit_tiny_patch16_224", 16)
    config = {"backbone": "vit_tiny_patch16_224", "image_size": 224}
    explained = explain_evaluation(model, config, [], tmp_path, np.zeros((0, 16)), tmp_path)
    assert not explained.figures and "no spatial feature layer" in explained.text[0]


def test_maps_cover_the_input_and_their_target_is_the_cosine_to_the_prototype():
    torch.manual_seed(1)
    model = create_embedder("resnet10t", 16).eval()
    images = torch.randn(3, 3, SIZE, SIZE)
    protos = torch.nn.functional.normalize(torch.randn(3, 16), dim=1).numpy()
    maps, cosines = similarity_maps(model, spatial_layer(model, SIZE), images, protos, batch_size=2)
    with torch.no_grad():
        expected = (model(images).numpy() * protos).sum(1)
    assert maps.shape == (3, SIZE, SIZE) and (maps >= 0).all()
    assert np.allclose(cosines, expected, atol=1e-5)


def test_a_frozen_backbone_still_gets_a_map():
    torch.manual_seed(2)
    model = create_embedder("resnet10t", 16, mode="probe").eval()
    images = torch.randn(4, 3, SIZE, SIZE)
    protos = torch.nn.functional.normalize(torch.randn(4, 16), dim=1).numpy()
    maps, _ = similarity_maps(model, spatial_layer(model, SIZE), images, protos)
    assert maps.max() > 0


def test_the_evaluation_draws_the_class_grid_and_names_its_layer(images, model_dir, tmp_path):
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import embed, load_embedder

    root, rows = images
    model, config = load_embedder(model_dir)
    emb = embed(model, ImageSet(rows, root, [], SIZE, False), torch.device("cpu"))
    explained = explain_evaluation(model, config, rows, root, emb, tmp_path)
    assert (tmp_path / "explanations_classes.png").is_file()
    assert explained.summary["layer"] == "layer2" and len(explained.summary["classes_shown"]) == 3
    drawn_pairs = (tmp_path / "explanations_pairs.png").is_file()
    assert drawn_pairs == bool(explained.summary["confused_pairs"])


def test_cli_explains_each_image_against_its_nearest_prototype(images, model_dir, tmp_path, capsys):
    root, _ = images
    files = [root / "red_1.png", root / "blue_2.png"]
    assert (
        cli("fewshot", "explain", "--model", model_dir, "--gallery", model_dir / "gallery", "--out", tmp_path, *files)
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    listed = json.loads((tmp_path / RESULTS).read_text())
    assert [r["map"] for r in listed["images"]] == ["red_1_explain.png", "blue_2_explain.png"]
    assert all((tmp_path / r["map"]).is_file() for r in listed["images"]) and lines == listed["images"]

    from insectml.fewshot.predict import FewshotPredictor

    served = FewshotPredictor(model_dir, model_dir / "gallery").predict([Image.open(f) for f in files], k=1)
    assert [(r["nearest"], round(r["similarity"], 4)) for r in lines] == [
        (a["top_k"][0]["label"], a["top_k"][0]["score"]) for a in served
    ]


def test_cli_keeps_existing_outputs_unless_forced(images, model_dir, tmp_path, capsys):
    root, _ = images
    kept = tmp_path / "red_1_explain.png"
    kept.write_bytes(b"mine")
    args = ["fewshot", "explain", "--model", model_dir, "--gallery", model_dir / "gallery", "--out", tmp_path]
    assert cli(*args, root / "red_1.png") == 2
    err = capsys.readouterr().err.strip()
    assert "exists; give --force" in err and len(err.splitlines()) == 1 and kept.read_bytes() == b"mine"
    assert cli(*args, "--force", root / "red_1.png") == 0 and kept.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    "problem, expected",
    [("unreadable", "not a readable image"), ("missing", "image not found"), ("same stem", "rename one")],
)
def test_cli_bad_input_is_one_line_and_exit_2(images, model_dir, tmp_path, capsys, problem, expected):
    root, _ = images
    if problem == "unreadable":
        bad = [tmp_path / "bad.png"]
        bad[0].write_bytes(b"not a png")
    elif problem == "missing":
        bad = [tmp_path / "nope.png"]
    else:
        (tmp_path / "again").mkdir()
        bad = [root / "red_1.png", picture(tmp_path / "again" / "red_1.png", (1, 2, 3), 0)]
    out = tmp_path / "out"
    code = cli("fewshot", "explain", "--model", model_dir, "--gallery", model_dir / "gallery", "--out", out, *bad)
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1 and not out.exists()
