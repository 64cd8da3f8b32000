"""The few-shot family through the real Nextflow engine (-profile test), and its archive
served by a real Multi Model Server: a class enrolled without retraining is recognised
after the new archive is registered next to the old one. Cross-validation by class
(--cv_folds 3): a task per held-out fold and the refit, the CV summary in the evaluation,
the packaged refit calibrated on the held-out folds."""

import csv
import json
import urllib.error
import zipfile

import pytest
from insectml.serving.mms import ServerConfig, predict, register, start, stop, unregister

from .conftest import free_port

pytestmark = pytest.mark.integration


def test_fewshot_pipeline_reports_the_metrics(fewshot_run):
    metrics = json.loads((fewshot_run / "evaluation" / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    assert metrics["episodes_5way_1shot"]["episodes"] == 100 and metrics["episodes_5way_1shot"]["ci95"] >= 0
    assert 0 <= metrics["open_set"]["auroc"] <= 1
    assert {"nmi", "ari"} <= set(metrics["clustering"]["hdbscan"])
    for name in ("report.html", "embedding_map.png", "clusters_agglomerative.csv", "gallery/gallery.json"):
        assert (fewshot_run / "evaluation" / name).is_file(), name
    assert (fewshot_run / "archive" / "fewshot.mar").is_file()
    lineage = json.loads((fewshot_run / "model" / "lineage.json").read_text())
    assert lineage["seed"] == 42 and lineage["params"]["loss"] == "proto"
    dataset = json.loads((fewshot_run / "data" / "dataset.json").read_text())
    assert (
        dataset["classes_per_split"]["train"]
        + dataset["classes_per_split"]["val"]
        + dataset["classes_per_split"]["test"]
        == len(dataset["classes"])
        == 80
    )


def new_species(repo_root, dataset) -> list:
    """Images of the first demo class whose body plan the run never saw (none of its six
    morphs is among the -profile test classes): a genuinely new species for this model."""
    import re

    def plan(name):
        return re.sub(r"_h\d\d(_spotted)?$", "", name)

    seen = {plan(c) for c in dataset["classes"]}
    for folder in sorted((repo_root / "data/fewshot/images").iterdir()):
        images = sorted(folder.glob("*.png"))
        if plan(folder.name) not in seen and len(images) >= 5:
            return images
    raise AssertionError("no unseen body plan with 5 images in the demo")


def test_enrolled_class_is_recognised_by_the_served_model(fewshot_run, repo_root, run_cli, tmp_path):
    from insectml.data.images import open_image
    from insectml.fewshot.predict import FewshotPredictor

    dataset = json.loads((fewshot_run / "data" / "dataset.json").read_text())
    images = new_species(repo_root, dataset)
    enrol, held_out = images[:-2], images[-2:]
    store = tmp_path / "store"
    store.mkdir()
    (store / "fewshot.mar").write_bytes((fewshot_run / "archive" / "fewshot.mar").read_bytes())
    cfg = ServerConfig(
        model_store=store,
        models={"fewshot": "fewshot.mar"},
        state_dir=tmp_path / "mms",
        port=free_port(),
        management_port=free_port(),
    )
    start(cfg, probe=("fewshot", held_out[0].read_bytes()), timeout=300)
    try:
        before = predict(cfg.inference_url, "fewshot", held_out[0].read_bytes(), content_type="image/png")
        assert "new_species" not in [k["label"] for k in before["top_k"]] and len(before["top_k"]) == 5
        with pytest.raises(urllib.error.HTTPError) as info:
            predict(cfg.inference_url, "fewshot", b"not an image", content_type="image/png")
        assert info.value.code == 400

        model = fewshot_run / "model"
        done = run_cli(
            "fewshot", "enrol", "--model", model, "--gallery", fewshot_run / "evaluation" / "gallery",
            "--name", "new_species", "--out", tmp_path / "gallery_v2", *enrol,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        done = run_cli(
            "package", "fewshot", "--model", model, "--gallery", tmp_path / "gallery_v2",
            "--name", "fewshot_v2", "--out", store,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        register(cfg.management_url, "fewshot_v2.mar", "fewshot_v2")
        unregister(cfg.management_url, "fewshot")
        local = FewshotPredictor(model, tmp_path / "gallery_v2")
        answers = []
        for image in held_out:
            answer = predict(cfg.inference_url, "fewshot_v2", image.read_bytes(), content_type="image/png")
            # the served model uses the new gallery: same answer as in process
            (expected,) = local.predict([open_image(image.read_bytes())])
            assert [k["label"] for k in answer["top_k"]] == [k["label"] for k in expected["top_k"]]
            answers.append([k["label"] for k in answer["top_k"]])
        # and recognises the new species among its 81 classes: in the top 5 of a held-out
        # image (a 2-minute -profile test model, whose training differs in the last bits
        # from one CPU to another, has missed it for one of the two images here and ranked
        # it 2nd for the other; the default model's top-5 is 1.0)
        assert any("new_species" in top for top in answers), answers
        with pytest.raises(urllib.error.HTTPError):
            predict(cfg.inference_url, "fewshot", held_out[0].read_bytes(), content_type="image/png")
    finally:
        stop(cfg.state_dir)


def test_without_cv_the_model_is_calibrated_on_the_val_classes(fewshot_run):
    config = json.loads((fewshot_run / "model" / "config.json").read_text())
    metrics = json.loads((fewshot_run / "evaluation" / "metrics.json").read_text())
    plan = json.loads((fewshot_run / "folds.json").read_text())
    assert plan["k"] == 0 and plan["reason"].startswith("auto: 60 classes outside test")
    assert config["temperature_fitted_on"].startswith("val classes") and metrics["cv"] is None
    assert metrics["calibration"]["temperature"] == config["temperature"]


def _trace(results) -> list[dict]:
    info = results.parent / "pipeline_info"
    newest = max(info.glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
    with newest.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_every_fold_of_classes_and_the_refit_is_its_own_task(fewshot_cv_run):
    rows = _trace(fewshot_cv_run)
    tags = sorted(r["tag"] for r in rows if r["process"].endswith("FEWSHOT_TRAIN"))
    assert tags == ["fewshot:fold0", "fewshot:fold1", "fewshot:fold2", "fewshot:refit"]
    assert [r["tag"] for r in rows if r["process"].endswith("FEWSHOT_CV")] == ["fewshot"]
    plan = json.loads((fewshot_cv_run / "folds.json").read_text())
    assert plan["unit"] == "class" and plan["k"] == 3


def test_the_evaluation_reports_the_cv_with_its_interval_and_baselines(fewshot_cv_run):
    metrics = json.loads((fewshot_cv_run / "evaluation" / "metrics.json").read_text())
    one = metrics["cv"]["episodes_5way_1shot"]
    assert set(one) == {"model", "colour_histogram", "random_init"} and one["model"]["n"] == 3
    assert one["model"]["low"] <= one["model"]["mean"] <= one["model"]["high"]
    assert metrics["cv"]["verdict"]["baseline"] in ("colour_histogram", "random_init")
    assert 0 <= metrics["calibration"]["ece"] <= 1
    report = (fewshot_cv_run / "evaluation" / "report.html").read_text()
    assert "CV 5-way 1-shot (3 folds" in report and "Cross-validation" in report


def test_the_packaged_model_is_the_refit_calibrated_on_the_held_out_folds(fewshot_cv_run):
    cv = json.loads((fewshot_cv_run / "model" / "cv.json").read_text())
    with zipfile.ZipFile(fewshot_cv_run / "archive" / "fewshot.mar") as mar:
        config = json.loads(mar.read("config.json"))
        gallery = json.loads(mar.read("gallery/gallery.json"))
        lineage = json.loads(mar.read("lineage.json"))
    assert config["temperature"] == cv["temperature"] == gallery["temperature"]
    assert config["temperature_fitted_on"] == "held-out folds (3 folds of classes, nearest prototype)"
    assert lineage["params"]["rows"]["role"] == "refit" and lineage["cv"]["k"] == 3
