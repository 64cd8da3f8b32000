"""``insectml weights import|list|show`` on randomly initialised models of real architectures,
saved the way their publishers ship them (timm hub layout, torchvision .pth, open_clip as
BioCLIP ships it), and on checkpoints that do not fit."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from insectml.weights import store

DETECTOR = "fasterrcnn_mobilenet_v3_large_320_fpn"
CLIP = "ViT-S-16-alt"  # the smallest architecture open_clip ships a config for
TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
}


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    assert all(f in lines[0] for f in fragments), lines[0]


def save_timm(folder: Path, classes: int = 1000) -> Path:
    """resnet10t as the Hugging Face hub ships timm weights: model.safetensors + config.json."""
    import timm
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file(
        timm.create_model("resnet10t", pretrained=False, num_classes=classes).state_dict(), folder / "model.safetensors"
    )
    pretrained_cfg = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "input_size": [3, 160, 160]}
    config = {"architecture": "resnet10t", "num_classes": classes, "pretrained_cfg": pretrained_cfg}
    (folder / "config.json").write_text(json.dumps(config))
    return folder / "model.safetensors"


def save_open_clip(folder: Path, model_cfg: dict) -> Path:
    """An open_clip model as BioCLIP ships it: open_clip_pytorch_model.bin + open_clip_config.json."""
    import open_clip

    folder.mkdir(parents=True)
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {"mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}})
    )
    model = open_clip.create_model(f"local-dir:{folder}", load_weights=False, pretrained_text=False)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return folder / "open_clip_pytorch_model.bin"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, tuple[str, Path, list[str]]]:
    """Per weights NAME: the source, the publisher's file and the extra import arguments."""
    import open_clip
    import torchvision

    top = tmp_path_factory.mktemp("published")
    detector = torchvision.models.get_model(DETECTOR, weights=None, weights_backbone=None, num_classes=91)
    (top / "torchvision").mkdir()
    torch.save(detector.state_dict(), top / "torchvision" / f"{DETECTOR}_coco-0000.pth")
    return {
        "r10": ("timm", save_timm(top / "timm"), []),
        "frcnn": ("torchvision", top / "torchvision" / f"{DETECTOR}_coco-0000.pth", ["--model", DETECTOR]),
        "clip": ("open_clip", save_open_clip(top / "clip", open_clip.get_model_config(CLIP)), []),
        "tiny-clip": ("open_clip", save_open_clip(top / "tiny-clip", TINY_CLIP_CFG), []),
    }


@pytest.fixture(scope="module")
def imported(published, tmp_path_factory) -> Path:
    """A project folder into which every published checkpoint was imported."""
    root = tmp_path_factory.mktemp("project")
    for name, (source, file, extra) in published.items():
        assert cli("weights", "import", source, file, "--name", name, "--root", root, *extra) == 0
    return root


@pytest.fixture
def weights_of(imported, monkeypatch):
    monkeypatch.setenv(store.SEARCH_ENV, str(imported / "weights"))
    return store.resolve


@pytest.mark.parametrize("name", ["r10", "frcnn", "clip", "tiny-clip"])
def test_imported_weights_resolve_by_name_to_the_source_tensors(weights_of, published, name):
    stored, source = store.load_state(weights_of(name)), store.load_state(published[name][1])
    assert stored.keys() == source.keys() and all(torch.equal(stored[k], source[k]) for k in source)


@pytest.mark.parametrize(
    "name, kind, model", [("r10", "timm", "resnet10t"), ("frcnn", "torchvision", DETECTOR), ("clip", "open_clip", CLIP)]
)
def test_manifest_names_the_architecture(weights_of, name, kind, model):
    weights = weights_of(name)
    assert (weights.kind, weights.model) == (kind, model)


@pytest.mark.parametrize("name", ["r10", "frcnn", "clip"])
def test_manifest_records_the_hashes_of_source_and_store(weights_of, published, name):
    weights = weights_of(name)
    source = {"file": published[name][1].name, "sha256": store.sha256_file(published[name][1])}
    assert (weights.manifest["source"], weights.manifest["sha256"]) == (source, weights.sha256)


def test_timm_normalisation_comes_from_config_json(weights_of):
    weights = weights_of("r10")
    assert (weights.mean, weights.std, weights.input_size) == ((0.5,) * 3, (0.25,) * 3, 160)


def test_torchvision_detector_classes_come_from_its_head(weights_of):
    manifest = weights_of("frcnn").manifest
    assert (manifest["architecture"]["num_classes"], manifest["head_mismatch"]) == (91, [])


def test_open_clip_normalisation_and_size_come_from_its_config(weights_of):
    weights = weights_of("clip")
    assert (weights.mean, weights.std, weights.input_size) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6), 224)


def test_a_custom_open_clip_architecture_is_kept_in_the_manifest(weights_of):
    architecture = weights_of("tiny-clip").manifest["architecture"]
    assert architecture == {"kind": "open_clip", "model": None, "model_cfg": TINY_CLIP_CFG}


def test_list_prints_one_line_per_import(imported, capsys):
    assert cli("weights", "list", "--root", imported) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:3] for line in lines] == [
        ["clip", "open_clip", CLIP],
        ["frcnn", "torchvision", DETECTOR],
        ["r10", "timm", "resnet10t"],
        ["tiny-clip", "open_clip", "custom"],
    ]


def test_show_prints_the_manifest(imported, capsys):
    assert cli("weights", "show", "r10", "--root", imported) == 0
    assert json.loads(capsys.readouterr().out) == json.loads((imported / "weights/r10/manifest.json").read_text())


def test_class_count_is_read_from_a_fine_tuned_head(tmp_path):
    file = save_timm(tmp_path / "src", classes=5)
    assert cli("weights", "import", "timm", file, "--name", "r10-5", "--root", tmp_path) == 0
    manifest = json.loads((tmp_path / "weights/r10-5/manifest.json").read_text())
    assert manifest["architecture"]["num_classes"] == 5


def test_a_detector_without_its_class_head_imports_with_head_mismatch(published, tmp_path):
    state = torch.load(published["frcnn"][1], weights_only=True)
    file = tmp_path / "backbone_rpn.pth"
    torch.save({k: v for k, v in state.items() if "box_predictor" not in k}, file)
    assert cli("weights", "import", "torchvision", file, "--name", "x", "--model", DETECTOR, "--root", tmp_path) == 0
    manifest = json.loads((tmp_path / "weights/x/manifest.json").read_text())
    head = ["cls_score.weight", "cls_score.bias", "bbox_pred.weight", "bbox_pred.bias"]
    assert manifest["head_mismatch"] == [f"roi_heads.box_predictor.{t}" for t in head]


@pytest.mark.parametrize(
    "name, model",
    [
        ("r10", "resnet18"),
        ("frcnn", "fasterrcnn_resnet50_fpn"),
        ("frcnn", "ssdlite320_mobilenet_v3_large"),
        ("clip", "ViT-S-32-alt"),
    ],
)
def test_a_wrong_architecture_is_refused_in_one_line(published, tmp_path, capsys, name, model):
    source, file, _ = published[name]
    code = cli("weights", "import", source, file, "--name", "x", "--model", model, "--root", tmp_path)
    assert_one_line_error(code, capsys.readouterr().err, str(file), f"does not load into {source} {model}")
    assert not (tmp_path / "weights" / "x").exists()


def test_a_file_that_is_not_a_state_dict_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "model.safetensors").write_text("<html>rate limited</html>")
    code = cli("weights", "import", "timm", tmp_path / "model.safetensors", "--name", "x", "--model", "resnet10t")
    assert_one_line_error(code, capsys.readouterr().err, "not a readable state dict")


def test_an_unknown_architecture_is_refused_in_one_line(published, tmp_path, capsys):
    code = cli(
        "weights", "import", "timm", published["r10"][1], "--name", "x", "--model", "resnet10", "--root", tmp_path
    )
    assert_one_line_error(code, capsys.readouterr().err, "--model resnet10: not a timm architecture")


@pytest.mark.parametrize("name", ["../x", ".hidden", "a b"])
def test_a_name_that_is_not_a_folder_name_is_refused(published, tmp_path, capsys, name):
    code = cli("weights", "import", "timm", published["r10"][1], "--name", name, "--root", tmp_path)
    assert_one_line_error(code, capsys.readouterr().err, "--name")


def test_an_existing_name_is_refused_without_force(imported, published, capsys):
    before = (imported / "weights/r10/manifest.json").read_text()
    code = cli("weights", "import", "timm", published["r10"][1], "--name", "r10", "--root", imported)
    assert_one_line_error(code, capsys.readouterr().err, "already exists", "--force")
    assert (imported / "weights/r10/manifest.json").read_text() == before


def test_force_replaces_an_existing_import(published, tmp_path):
    file = published["r10"][1]
    assert cli("weights", "import", "timm", file, "--name", "r10", "--root", tmp_path, "--licence", "old") == 0
    assert (
        cli("weights", "import", "timm", file, "--name", "r10", "--root", tmp_path, "--licence", "new", "--force") == 0
    )
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == ["r10"]
    assert json.loads((tmp_path / "weights/r10/manifest.json").read_text())["licence"] == "new"


def test_force_leaves_a_folder_it_did_not_make(published, tmp_path, capsys):
    (tmp_path / "weights/r10").mkdir(parents=True)
    (tmp_path / "weights/r10/notes.txt").write_text("mine")
    code = cli("weights", "import", "timm", published["r10"][1], "--name", "r10", "--root", tmp_path, "--force")
    assert_one_line_error(code, capsys.readouterr().err, "not made by 'insectml weights import'")
    assert (tmp_path / "weights/r10/notes.txt").read_text() == "mine"


def test_the_licence_is_read_from_the_model_card(published, tmp_path):
    folder = tmp_path / "src"
    shutil.copytree(published["r10"][1].parent, folder)
    (folder / "README.md").write_text("---\ntags:\n- image-classification\nlicense: apache-2.0\n---\n# resnet10t\n")
    assert cli("weights", "import", "timm", folder / "model.safetensors", "--name", "r10", "--root", tmp_path) == 0
    assert json.loads((tmp_path / "weights/r10/manifest.json").read_text())["licence"] == "apache-2.0 (README.md)"


def test_an_unknown_licence_says_so(weights_of):
    assert weights_of("r10").manifest["licence"].startswith("unknown")


@pytest.fixture
def dvc_repo(tmp_path, tool_env) -> Path:
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=tmp_path, env=tool_env, check=True, capture_output=True, timeout=120)
    return tmp_path


@pytest.mark.integration
def test_import_into_a_dvc_repository_tracks_the_folder(published, dvc_repo, capsys):
    assert cli("weights", "import", "timm", published["r10"][1], "--name", "r10", "--root", dvc_repo) == 0
    assert (dvc_repo / "weights/r10.dvc").is_file() and "weights/r10.dvc" in capsys.readouterr().out


@pytest.mark.integration
def test_no_dvc_leaves_the_folder_untracked(published, dvc_repo):
    assert cli("weights", "import", "timm", published["r10"][1], "--name", "r10", "--root", dvc_repo, "--no-dvc") == 0
    assert not (dvc_repo / "weights/r10.dvc").exists()
