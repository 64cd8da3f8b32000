"""Few-shot embedders from imported weights: --mode frozen (no training: the backbone's
normalised features), probe (the head only), the weights' normalisation in config.json,
and a model folder that serves without the weights folder (timm and open_clip)."""

import json
import shutil

import numpy as np
import pytest
import torch
from insectml.training import loop

from .test_fewshot import tiny_fewshot  # noqa: F401 (a fixture; skips without the demo's pictures)

MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]  # the weights' normalisation: not ImageNet's
SEED = 3
# a vision transformer small enough to train in seconds, as a custom open_clip configuration
TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


def one_line_error(code: int, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def write_weights(folder, architecture: dict, state: dict, size: int):
    """A weights folder as 'insectml weights import' writes it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "weights.safetensors"))
    manifest = {
        "name": folder.name,
        "architecture": architecture,
        "mean": MEAN,
        "std": STD,
        "input_size": [3, size, size],
        "file": "weights.safetensors",
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def work(tiny_fewshot, tmp_path_factory):  # noqa: F811
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

    work = tmp_path_factory.mktemp("fsw")
    validate_fewshot(FewshotValidateConfig(root=tiny_fewshot, out_dir=work / "v", images=tiny_fewshot / "images"))
    return work


@pytest.fixture(scope="module")
def data(work, tiny_fewshot):  # noqa: F811
    v = work / "v"
    return ["--manifest", v / "manifest.jsonl", "--dataset", v / "dataset.json", "--root", tiny_fewshot]


@pytest.fixture(scope="module")
def resnet(work):
    """A random resnet10t with a 7-class classifier (which the embedder drops), imported."""
    import timm

    torch.manual_seed(1)
    model = timm.create_model("resnet10t", pretrained=False, num_classes=7)
    for name, buffer in model.named_buffers():  # batch-norm statistics a training step would move
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
    return write_weights(work / "weights" / "rn", {"kind": "timm", "model": "resnet10t"}, model.state_dict(), 32)


@pytest.fixture(scope="module")
def frozen(work, data, resnet):
    out = work / "frozen"
    assert cli("fewshot", "train", *data, "--weights", resnet, "--mode", "frozen", "--image-size", 32,
               "--val-episodes", 20, "--seed", SEED, "--out", out) == 0  # fmt: skip
    return out


def state_of(folder) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "weights.safetensors"))


def test_frozen_takes_no_step_and_keeps_every_tensor(frozen, resnet):
    saved = torch.load(frozen / "weights.pt", weights_only=True)
    source = state_of(resnet)
    assert set(saved) == {f"backbone.{k}" for k in source if not k.startswith("fc.")}
    assert all(torch.equal(v, source[k.removeprefix("backbone.")]) for k, v in saved.items())
    assert not (frozen / "history.jsonl").exists() and not (frozen / "checkpoints").exists()


def test_frozen_records_the_weights_normalisation_mode_and_lineage(frozen, resnet):
    from insectml.weights.store import sha256_file

    config = json.loads((frozen / "config.json").read_text())
    lineage = json.loads((frozen / "lineage.json").read_text())["params"]
    assert (config["mean"], config["std"]) == (MEAN, STD)
    assert config["mode"] == "frozen" and config["head"] is False and config["dim"] == 512
    assert config["temperature"] is not None  # calibrated on the val classes all the same
    assert lineage["weights"]["sha256"] == sha256_file(resnet / "weights.safetensors") and lineage["mode"] == "frozen"


def test_frozen_embeddings_are_the_backbones_normalised_features(frozen, resnet, tiny_fewshot):  # noqa: F811
    import timm
    from insectml.data.manifest import read_manifest
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import embed, load_embedder

    model, config = load_embedder(frozen)
    rows = [r for r in read_manifest(frozen.parent / "v" / "manifest.jsonl") if r["split"] == "val"][:12]
    images = ImageSet(rows, tiny_fewshot, [], 32, False, mean=MEAN, std=STD)
    backbone = timm.create_model("resnet10t", pretrained=False, num_classes=0)
    backbone.load_state_dict({k: v for k, v in state_of(resnet).items() if not k.startswith("fc.")})
    with torch.no_grad():
        expected = torch.nn.functional.normalize(backbone.eval()(torch.stack([x for x, _ in images])), dim=1)
    assert np.allclose(embed(model, images, torch.device("cpu")), expected.numpy(), atol=1e-5)


def test_enrol_and_predict_serve_a_frozen_model(frozen, tiny_fewshot, tmp_path, capsys):  # noqa: F811
    from insectml.fewshot.gallery import Gallery

    other = np.random.default_rng(0).normal(size=(1, 512)).astype(np.float32)
    Gallery(["other"], other / np.linalg.norm(other), [1]).save(tmp_path / "g")
    images = sorted(sorted((tiny_fewshot / "images").iterdir())[0].glob("*.png"))[:2]
    assert cli("fewshot", "enrol", "--model", frozen, "--gallery", tmp_path / "g", "--name", "new",
               "--out", tmp_path / "g2", *images) == 0  # fmt: skip
    capsys.readouterr()
    assert cli("fewshot", "predict", "--model", frozen, "--gallery", tmp_path / "g2", *images) == 0
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [a["top_k"][0]["label"] for a in answers] == ["new", "new"]


def test_probe_trains_the_head_only(work, data, resnet):
    from insectml.fewshot.model import create_embedder

    out = work / "probe"
    assert cli("fewshot", "train", *data, "--weights", resnet, "--mode", "probe", "--image-size", 32, "--dim", 16,
               "--epochs", 1, "--val-episodes", 20, "--seed", SEED, "--out", out) == 0  # fmt: skip
    saved = torch.load(out / "weights.pt", weights_only=True)
    torch.manual_seed(SEED)  # the head as training started: train seeds, then builds the embedder
    start = create_embedder("resnet10t", 16, resnet, "probe").state_dict()
    changed = {k for k, v in saved.items() if not torch.equal(v, start[k])}
    assert changed == {k for k in start if k.startswith("head.")}


@pytest.mark.skipif(not hasattr(loop, "param_groups"), reason="the training loop has no parameter groups yet")
def test_finetune_from_weights_trains_the_backbone_at_the_scaled_learning_rate(work, data, resnet):
    out = work / "finetune"
    assert cli("fewshot", "train", *data, "--weights", resnet, "--image-size", 32, "--dim", 16, "--epochs", 1,
               "--lr", 0.01, "--backbone-lr-scale", 0.2, "--val-episodes", 20, "--out", out) == 0  # fmt: skip
    groups = torch.load(out / "checkpoints" / "last.pt", weights_only=True)["optimizer"]["param_groups"]
    assert sorted(g["initial_lr"] for g in groups) == pytest.approx([0.002, 0.01])


def test_a_frozen_fold_task_scores_its_held_out_classes(work, data, resnet):
    v = work / "v"
    assert cli("cv", "plan", "--manifest", v / "manifest.jsonl", "--cv-folds", 3, "--unit", "class",
               "--out", work / "f.json") == 0  # fmt: skip
    assert cli("fewshot", "train", *data, "--weights", resnet, "--mode", "frozen", "--image-size", 32,
               "--val-episodes", 20, "--folds", work / "f.json", "--fold", 1, "--out", work / "fold1") == 0  # fmt: skip
    assert np.load(work / "fold1" / "heldout.npz")["model__episodes_5way_1shot"].size == 20


def test_frozen_without_weights_is_one_line(data, tmp_path, capsys):
    code = cli("fewshot", "train", *data, "--mode", "frozen", "--out", tmp_path / "m")
    assert "frozen needs --weights" in one_line_error(code, capsys.readouterr().err)


def test_weights_of_another_architecture_are_one_line(data, resnet, tmp_path, capsys):
    wrong = tmp_path / "wrong"
    shutil.copytree(resnet, wrong)
    manifest = json.loads((wrong / "manifest.json").read_text())
    (wrong / "manifest.json").write_text(json.dumps(manifest | {"architecture": {"kind": "timm", "model": "resnet18"}}))
    code = cli("fewshot", "train", *data, "--weights", wrong, "--mode", "frozen", "--out", tmp_path / "m")
    assert "does not load into timm resnet18" in one_line_error(code, capsys.readouterr().err)


@pytest.fixture(scope="module")
def tiny_clip(work):
    from insectml.weights.backbones import Architecture, build_backbone

    torch.manual_seed(2)
    model, _ = build_backbone(Architecture("open_clip", "tiny", TINY_CLIP))  # the vision tower
    state = {f"visual.{k}": v for k, v in model.state_dict().items()}
    state["logit_scale"] = torch.ones([])  # the rest of a CLIP model's state is not read
    architecture = {"kind": "open_clip", "model": "tiny", "model_cfg": TINY_CLIP}
    return write_weights(work / "weights" / "tiny_clip", architecture, state, 32)


def test_an_open_clip_model_serves_without_its_weights_folder(work, data, tiny_clip, tiny_fewshot):  # noqa: F811
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import embed, load_embedder
    from insectml.weights.backbones import Architecture, build_backbone

    out = work / "clip"
    assert cli("fewshot", "train", *data, "--weights", tiny_clip, "--mode", "frozen", "--image-size", 32,
               "--val-episodes", 20, "--out", out) == 0  # fmt: skip
    visual, _ = build_backbone(Architecture("open_clip", "tiny", TINY_CLIP))
    visual.load_state_dict({k.removeprefix("visual."): v for k, v in state_of(tiny_clip).items() if "visual." in k})
    moved = tiny_clip.with_name("moved")
    tiny_clip.rename(moved)
    try:
        model, config = load_embedder(out)
    finally:
        moved.rename(tiny_clip)
    rows = [{"path": str(p.relative_to(tiny_fewshot)), "label": "x"} for p in sorted(tiny_fewshot.rglob("*.png"))[:6]]
    images = ImageSet(rows, tiny_fewshot, [], 32, False, mean=MEAN, std=STD)
    with torch.no_grad():
        expected = torch.nn.functional.normalize(visual.eval()(torch.stack([x for x, _ in images])), dim=1)
    assert config["backbone_kind"] == "open_clip" and config["dim"] == TINY_CLIP["embed_dim"]
    assert np.allclose(embed(model, images, torch.device("cpu")), expected.numpy(), atol=1e-5)


def test_an_image_size_the_vision_transformer_cannot_take_is_one_line(data, tiny_clip, tmp_path, capsys):
    code = cli("fewshot", "train", *data, "--weights", tiny_clip, "--mode", "frozen", "--image-size", 64,
               "--out", tmp_path / "m")  # fmt: skip
    assert "does not take 64-pixel images" in one_line_error(code, capsys.readouterr().err)


def test_an_open_clip_architecture_by_name_loads_its_vision_tower(tmp_path):
    import open_clip
    from insectml.weights.backbones import image_backbone
    from insectml.weights.store import resolve

    torch.manual_seed(4)
    clip = open_clip.create_model("ViT-S-32", pretrained=None, pretrained_text=False)  # a small one open_clip ships
    folder = write_weights(tmp_path / "vits", {"kind": "open_clip", "model": "ViT-S-32"}, clip.state_dict(), 224)
    visual, features = image_backbone(resolve(folder), "resnet10t")
    source = clip.state_dict()
    assert features == 384 and all(torch.equal(v, source[f"visual.{k}"]) for k, v in visual.state_dict().items())
