"""Weights through the real Nextflow engine, as a user without network brings them:
``--task pretrain`` pretrains a backbone on the demo's unlabelled images (SimCLR, -profile
test), ``insectml weights import timm`` takes its model.safetensors as it takes a Hugging
Face timm download, and a torchvision COCO detector checkpoint (randomly initialised,
saved as torchvision ships it; nothing is downloaded) is imported beside it, both into the
launch folder's weights/ and named by NAME on the command line. The few-shot embedder is
enrolled from the pretrained weights with no training (``--fewshot_mode frozen``) and
served by a real MMS; the detector starts from the COCO checkpoint."""

import json

import pytest
import torch
from insectml.serving.mms import ServerConfig, predict, start, stop

from .conftest import free_port, nextflow

pytestmark = pytest.mark.integration

SSL_NAME = "ssl-demo"
COCO_NAME = "coco-ssdlite"
COCO_MODEL = "ssdlite320_mobilenet_v3_large"


def publish_coco(folder):
    """A random-init torchvision SSDlite with COCO's 91 classes, saved as torchvision does."""
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.get_model(COCO_MODEL, weights=None, weights_backbone=None, num_classes=91)
    folder.mkdir(parents=True)
    path = folder / "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights_run(repo_root, tool_env, run_cli, tmp_path_factory):
    """``-profile test --task pretrain``, then ``--task detector,fewshot`` from imported weights; the launch folder."""
    if not (repo_root / "data" / "fewshot" / "images").is_dir():
        pytest.fail("data/fewshot is missing: run 'make data' (dvc pull) first")
    cwd = tmp_path_factory.mktemp("nf-weights")
    done = nextflow(
        repo_root, cwd, tool_env, "-profile", "test", "--task", "pretrain", "--outdir", str(cwd / "results")
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    pretrained = cwd / "results" / "pretrain" / "weights" / "ssl" / "model.safetensors"
    coco_file = publish_coco(cwd / "downloads" / "torchvision")
    for args in (
        ("timm", pretrained, "--name", SSL_NAME),
        ("torchvision", coco_file, "--model", COCO_MODEL, "--name", COCO_NAME, "--licence", "test weights"),
    ):
        done = run_cli("weights", "import", *args, "--root", cwd)
        assert done.returncode == 0, done.stderr[-2000:]
    done = nextflow(
        repo_root, cwd, tool_env, "-profile", "test", "--task", "detector,fewshot",
        "--fewshot_weights", SSL_NAME, "--fewshot_mode", "frozen", "--detector_weights", COCO_NAME,
        "--outdir", str(cwd / "results"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd


def manifest(cwd, name):
    return json.loads((cwd / "weights" / name / "manifest.json").read_text())


def test_pretrain_writes_weights_in_the_import_layout(weights_run):
    from insectml.weights.store import resolve

    weights = resolve(weights_run / "results" / "pretrain" / "weights" / "ssl")
    assert weights.kind == "timm" and weights.manifest["source"]["method"] == "simclr"


def test_frozen_embedder_is_the_imported_backbone_untrained(weights_run):
    from safetensors.torch import load_file

    model = weights_run / "results" / "fewshot" / "model"
    config = json.loads((model / "config.json").read_text())
    assert config["mode"] == "frozen"
    imported = manifest(weights_run, SSL_NAME)
    assert config["mean"] == imported["mean"] and config["std"] == imported["std"]
    source = load_file(str(weights_run / "weights" / SSL_NAME / "weights.safetensors"))
    trained = torch.load(model / "weights.pt", map_location="cpu", weights_only=True)
    assert torch.equal(trained["backbone.conv1.0.weight"], source["conv1.0.weight"])
    assert json.loads((model / "train_metrics.json").read_text())["n_trained_parameters"] == 0


def test_lineage_records_the_imported_weights(weights_run):
    fewshot = json.loads((weights_run / "results/fewshot/model/lineage.json").read_text())
    assert json.dumps(fewshot).count(manifest(weights_run, SSL_NAME)["sha256"]) >= 1
    detector = json.loads((weights_run / "results/detector/models/generic/lineage.json").read_text())
    assert json.dumps(detector).count(manifest(weights_run, COCO_NAME)["sha256"]) >= 1


def test_detector_starts_from_the_coco_checkpoint(weights_run):
    metrics = json.loads((weights_run / "results/detector/evaluation/generic/metrics.json").read_text())
    assert 0 <= metrics["map_50"] <= 1
    config = json.loads((weights_run / "results/detector/models/generic/config.json").read_text())
    assert config["model"] == COCO_MODEL


def test_frozen_gallery_is_served_as_predicted_in_process(weights_run, repo_root, tmp_path):
    from insectml.data.images import open_image
    from insectml.fewshot.predict import FewshotPredictor

    results = weights_run / "results" / "fewshot"
    image = next((repo_root / "data/fewshot/images").glob("*/*.png"))
    store = tmp_path / "store"
    store.mkdir()
    (store / "fewshot.mar").write_bytes((results / "archive" / "fewshot.mar").read_bytes())
    cfg = ServerConfig(
        model_store=store,
        models={"fewshot": "fewshot.mar"},
        state_dir=tmp_path / "mms",
        port=free_port(),
        management_port=free_port(),
    )
    start(cfg, probe=("fewshot", image.read_bytes()), timeout=300)
    try:
        answer = predict(cfg.inference_url, "fewshot", image.read_bytes(), content_type="image/png")
    finally:
        stop(cfg.state_dir)
    (expected,) = FewshotPredictor(results / "model", results / "evaluation" / "gallery").predict(
        [open_image(image.read_bytes())]
    )
    assert [k["label"] for k in answer["top_k"]] == [k["label"] for k in expected["top_k"]]
