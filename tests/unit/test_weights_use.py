"""Imported weights (a store folder or NAME) start detectors and the wingbeat cnn: a COCO
detector of the same architecture loads all but its class heads, an ImageNet classifier
loads into the backbone, a wrong architecture is a one-line error, and the weights params
accept a NAME the store finds."""

import json
import logging
from dataclasses import replace

import pytest
import torch
from insectml.detector.models import create_detector
from insectml.errors import InputFileError
from insectml.params import ParamsError, validate_params
from insectml.weights.store import SEARCH_ENV, sha256_file

DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"
MEAN, STD = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]  # not torchvision's defaults, so using them shows


def write_weights(folder, kind: str, model: str, state: dict, **extra):
    """A weights folder as 'insectml weights import' writes it."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "weights.safetensors"))
    manifest = {"name": folder.name, "architecture": {"kind": kind, "model": model}, "file": "weights.safetensors"}
    (folder / "manifest.json").write_text(json.dumps(manifest | extra))
    return folder


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    """A random-init torchvision COCO detector (91 classes) stored as imported weights."""
    from torchvision.models import detection

    torch.manual_seed(0)
    model = getattr(detection, DETECTOR)(weights=None, weights_backbone=None, num_classes=91)
    folder = tmp_path_factory.mktemp("store") / "coco_frcnn"
    return write_weights(folder, "torchvision", DETECTOR, model.state_dict(), mean=MEAN, std=STD), model.state_dict()


def test_coco_detector_loads_all_but_the_class_heads(coco, caplog):
    folder, source = coco
    with caplog.at_level(logging.INFO, logger="insectml.training.weights"):
        model = create_detector(DETECTOR, num_classes=3, weights=folder)
    state = model.state_dict()
    assert torch.equal(state["backbone.body.4.block.1.0.weight"], source["backbone.body.4.block.1.0.weight"])
    assert torch.equal(state["roi_heads.box_head.fc6.weight"], source["roi_heads.box_head.fc6.weight"])
    assert state["roi_heads.box_predictor.cls_score.weight"].shape[0] == 4
    assert "left as initialised: roi_heads.box_predictor.*" in caplog.text


def test_manifest_normalisation_is_the_detectors(coco):
    model = create_detector(DETECTOR, num_classes=3, weights=coco[0])
    assert (model.transform.image_mean, model.transform.image_std) == (MEAN, STD)


def test_a_name_is_found_on_the_search_path(coco, monkeypatch):
    folder, source = coco
    monkeypatch.setenv(SEARCH_ENV, str(folder.parent))
    model = create_detector(DETECTOR, num_classes=3, weights=folder.name)
    assert torch.equal(model.state_dict()["rpn.head.conv.0.0.weight"], source["rpn.head.conv.0.0.weight"])


def test_another_detectors_weights_are_a_one_line_error(coco, tmp_path):
    folder = write_weights(tmp_path / "retina", "torchvision", "retinanet_resnet50_fpn", {"x": torch.zeros(1)})
    with pytest.raises(InputFileError) as info:
        create_detector(DETECTOR, num_classes=3, weights=folder)
    message = str(info.value)
    assert info.value.exit_code == 2 and "\n" not in message
    assert "retinanet_resnet50_fpn" in message and DETECTOR in message


@pytest.mark.parametrize(
    "detector, ours, theirs",
    [
        (DETECTOR, "backbone.body.5.block.2.fc1.weight", "features.5.block.2.fc1.weight"),
        # SSDlite splits MobileNet's features inside the C4 block (features.13)
        ("ssdlite320_mobilenet_v3_large", "backbone.features.0.13.0.weight", "features.13.block.0.0.weight"),
        ("ssdlite320_mobilenet_v3_large", "backbone.features.1.0.1.0.weight", "features.13.block.1.0.weight"),
        ("ssdlite320_mobilenet_v3_large", "backbone.features.0.5.block.0.0.weight", "features.5.block.0.0.weight"),
    ],
)
def test_torchvision_classifier_loads_into_the_backbone(detector, ours, theirs, tmp_path):
    from torchvision.models import mobilenet_v3_large

    source = mobilenet_v3_large(weights=None).state_dict()
    folder = write_weights(tmp_path / "mnv3", "torchvision", "mobilenet_v3_large", source)
    model = create_detector(detector, num_classes=3, weights=folder)
    assert torch.equal(model.state_dict()[ours], source[theirs])


def test_timm_classifier_of_the_backbone_loads_into_it(tmp_path):
    import timm

    source = timm.create_model("mobilenetv3_large_100", pretrained=False).state_dict()
    folder = write_weights(tmp_path / "timm_mnv3", "timm", "mobilenetv3_large_100", source)
    model = create_detector(DETECTOR, num_classes=3, weights=folder)
    # timm's blocks.2.1 is torchvision's features.5 (the stem is features.0; blocks.0 has one block)
    assert torch.equal(
        model.state_dict()["backbone.body.5.block.2.fc1.weight"], source["blocks.2.1.se.conv_reduce.weight"]
    )


def test_a_classifier_of_another_backbone_is_a_one_line_error(tmp_path):
    folder = write_weights(tmp_path / "r18", "timm", "resnet18", {"conv1.weight": torch.zeros(64, 3, 7, 7)})
    with pytest.raises(InputFileError, match="weights of timm resnet18; a fasterrcnn_mobilenet_v3_large_fpn starts"):
        create_detector(DETECTOR, num_classes=3, weights=folder)


# Params: a weights param passes for a NAME the store finds, and names where it looked otherwise.


def detector_params(tmp_path, weights: str) -> str:
    return json.dumps({"task": "detector", "detector_input": str(tmp_path), "detector_weights": weights})


def test_params_accept_an_imported_name(repo_root, tmp_path, monkeypatch):
    write_weights(tmp_path / "store" / "my_coco", "torchvision", DETECTOR, {"x": torch.zeros(1)})
    monkeypatch.setenv(SEARCH_ENV, str(tmp_path / "store"))
    validate_params(repo_root / "nextflow_schema.json", detector_params(tmp_path, "my_coco"))


def test_params_reject_a_missing_name_in_one_line(repo_root, tmp_path, monkeypatch):
    monkeypatch.setenv(SEARCH_ENV, str(tmp_path / "store"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ParamsError) as info:
        validate_params(repo_root / "nextflow_schema.json", detector_params(tmp_path, "nope"))
    assert info.value.problems == [
        f"--detector_weights: no weights file, folder or imported NAME 'nope' (looked in {tmp_path / 'store'}, "
        f"{tmp_path / 'weights'}, {repo_root / 'weights'})"
    ]


# The wingbeat cnn: timm weights bring their architecture; the RGB stem is summed to one channel.


@pytest.fixture(scope="module")
def timm_small(tmp_path_factory):
    import timm

    torch.manual_seed(1)
    source = timm.create_model("mobilenetv3_small_050", pretrained=False).state_dict()
    folder = tmp_path_factory.mktemp("store") / "small"
    return write_weights(folder, "timm", "mobilenetv3_small_050", source), source


def test_wingbeat_cnn_loads_timm_weights_on_one_channel(timm_small):
    from insectml.wingbeat.nets import create_net

    folder, source = timm_small
    model = create_net("cnn", n_classes=4, n_mels=16, weights=folder, backbone="resnet10t")
    state = model.state_dict()
    assert model.backbone == "mobilenetv3_small_050"
    assert torch.allclose(state["net.conv_stem.weight"], source["conv_stem.weight"].sum(1, keepdim=True))
    assert torch.equal(state["net.blocks.1.0.conv_pw.weight"], source["blocks.1.0.conv_pw.weight"])
    assert state["net.classifier.weight"].shape[0] == 4


def test_wingbeat_gru_refuses_timm_weights(timm_small):
    from insectml.wingbeat.nets import create_net

    with pytest.raises(InputFileError, match="only timm weights fit, and only the cnn net"):
        create_net("gru", n_classes=4, n_mels=16, weights=timm_small[0])


def test_wingbeat_model_records_the_weights(timm_small, tiny_wingbeat, run_cli, tmp_path, monkeypatch):
    from insectml.wingbeat.train_net import NetConfig, train_net

    out = tmp_path / "v"
    assert run_cli("wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out).returncode == 0
    done = run_cli(
        "wingbeat",
        "features",
        *("--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json"),
        *("--data", tiny_wingbeat, "--n-mels", "16", "--out", out / "features.npz"),
    )
    assert done.returncode == 0, done.stderr
    folder = timm_small[0]
    monkeypatch.setenv(SEARCH_ENV, str(folder.parent))
    cfg = NetConfig(features=out / "features.npz", out_dir=tmp_path / "cnn", model="cnn", weights=folder.name)
    train_net(replace(cfg, loop=replace(cfg.loop, epochs=1, batch_size=16)))
    config = json.loads((tmp_path / "cnn" / "config.json").read_text())
    lineage = json.loads((tmp_path / "cnn" / "lineage.json").read_text())
    assert config["options"] == {"backbone": "mobilenetv3_small_050"}
    assert lineage["params"]["weights"]["sha256"] == sha256_file(folder / "weights.safetensors")


def test_backbone_feature_size_is_what_the_pooled_output_holds():
    # MobileNetV3's pre-logits layer (1024) is wider than its last feature map (num_features)
    import torch
    from insectml.weights.backbones import Architecture, build_backbone

    model, size = build_backbone(Architecture("timm", "mobilenetv3_small_050", None))
    assert model.eval()(torch.zeros(1, 3, 64, 64)).shape[-1] == size
