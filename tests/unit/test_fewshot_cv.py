"""Few-shot cross-validation by class: the plan of folds of classes, the fold tasks (held-out
classes never trained on), the CV step's summary and calibrated refit, and calibrated
probabilities served the same by `fewshot predict` and the MMS handler."""

import json

import numpy as np
import pytest
from insectml.cv import AUTO_MIN_CLASSES, MIN_CLASSES_PER_FOLD, plan, resolve_class_folds
from insectml.errors import ConfigError
from insectml.fewshot.gallery import Gallery, fit_cosine_temperature, probabilities

from .test_fewshot import needs_pictures, tiny_fewshot  # noqa: F401 (a fixture)


def class_rows(n_pool: int, n_test: int = 4, per_class: int = 3) -> list[dict]:
    """Manifest rows of ``n_pool`` non-test classes (train and val) and ``n_test`` test classes."""
    rows = []
    for c in range(n_pool + n_test):
        split = "test" if c < n_test else "val" if c % 4 == 0 else "train"
        for i in range(per_class):
            rows.append({"id": f"c{c}_{i}", "label": f"c{c:03d}", "group": f"c{c}_{i}", "split": split})
    return rows


def test_class_plan_deals_every_non_test_class_into_one_fold():
    rows = class_rows(17)
    result = plan(rows, 3, seed=1, unit="class")
    pool = {r["label"] for r in rows if r["split"] != "test"}
    assert result["unit"] == "class" and set(result["group_fold"]) == pool
    sizes = [f["groups"] for f in result["folds"]]
    assert sorted(sizes) == [5, 6, 6] and sum(f["rows"] for f in result["folds"]) == 3 * len(pool)


def test_class_plan_is_seeded():
    rows = class_rows(20)
    first, again, other = (plan(rows, 4, seed=s, unit="class") for s in (1, 1, 2))
    assert first == again and first["group_fold"] != other["group_fold"]


def test_group_plan_keeps_its_old_form():
    assert "unit" not in plan(class_rows(12), 2, seed=0)


@pytest.mark.parametrize(
    "n_classes, expected",
    [(AUTO_MIN_CLASSES, 0), (AUTO_MIN_CLASSES - 1, 5), (18, 3), (9, 0)],
)
def test_auto_cross_validates_a_small_pool_of_classes_only(n_classes, expected):
    k, reason = resolve_class_folds("auto", [f"c{i}" for i in range(n_classes)])
    assert k == expected and reason.startswith("auto:")


def test_too_many_folds_of_classes_is_a_clear_error():
    with pytest.raises(ConfigError, match=f"too few for 4 folds of at least {MIN_CLASSES_PER_FOLD} classes"):
        resolve_class_folds(4, [f"c{i}" for i in range(18)])


def test_cosine_temperature_recovers_the_one_that_made_the_labels():
    rng = np.random.default_rng(0)
    cosines = rng.uniform(-0.2, 0.9, size=(4000, 6))
    truth = np.asarray([rng.choice(6, p=p) for p in probabilities(cosines, 0.08)])
    assert fit_cosine_temperature(cosines, truth) == pytest.approx(0.08, rel=0.1)


@pytest.fixture(scope="module")
def cross_validated(tiny_fewshot, tmp_path_factory, run_cli):  # noqa: F811
    """validate → cv plan --unit class (3 folds) → 3 fold tasks + the refit (1 epoch each,
    32-pixel images) → fewshot cv → evaluate, on the tiny demo (18 non-test classes)."""
    work = tmp_path_factory.mktemp("fs_cv")

    def ok(*args):
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr[-2000:]
        return done

    v = work / "v"
    ok("fewshot", "validate", "--root", tiny_fewshot, "--images", tiny_fewshot / "images", "--out", v)
    ok("cv", "plan", "--manifest", v / "manifest.jsonl", "--cv-folds", "3", "--unit", "class", "--out", work / "f.json")
    common = ["--manifest", v / "manifest.jsonl", "--dataset", v / "dataset.json", "--root", tiny_fewshot]
    small = ["--epochs", "1", "--val-episodes", "20", "--image-size", "32", "--dim", "16"]
    train = [*common, *small, "--folds", work / "f.json"]
    for fold in range(3):
        ok("fewshot", "train", *train, "--fold", fold, "--out", work / f"fold{fold}")
    ok("fewshot", "train", *train, "--out", work / "refit")
    folds = [work / f"fold{f}" for f in range(3)]
    ok("fewshot", "cv", "--refit", work / "refit", "--folds-models", *folds, "--out", work / "model")
    ok("fewshot", "evaluate", "--model", work / "model", *common, "--episodes", "20", "--out", work / "e")
    return work


def _manifest(work) -> list[dict]:
    return [json.loads(line) for line in (work / "v" / "manifest.jsonl").read_text().splitlines()]


@needs_pictures
def test_a_fold_never_trains_on_the_classes_it_is_scored_on(cross_validated):
    held_out = set()
    for fold in range(3):
        folder = cross_validated / f"fold{fold}"
        trained = set(json.loads((folder / "labels.json").read_text()))
        with np.load(folder / "heldout.npz") as held:
            scored = set(held["classes"].tolist())
        assert scored and not trained & scored
        held_out |= scored
    pool = {r["label"] for r in _manifest(cross_validated) if r["split"] != "test"}
    assert held_out == pool


@needs_pictures
def test_the_refit_trains_on_every_non_test_class(cross_validated):
    trained = set(json.loads((cross_validated / "refit" / "labels.json").read_text()))
    manifest = _manifest(cross_validated)
    assert trained == {r["label"] for r in manifest if r["split"] != "test"}


@needs_pictures
def test_the_cv_summary_has_intervals_baselines_and_a_paired_difference(cross_validated):
    cv = json.loads((cross_validated / "model" / "cv.json").read_text())
    one = cv["episodes_5way_1shot"]
    assert cv["k"] == 3 and set(one) == {"model", "colour_histogram", "random_init"}
    assert one["model"]["low"] <= one["model"]["mean"] <= one["model"]["high"] and one["model"]["n"] == 3
    per_fold = [f["episodes_5way_1shot"]["model"] for f in cv["folds"]]
    assert one["model"]["mean"] == pytest.approx(np.mean(per_fold), abs=1e-6)
    verdict = cv["verdict"]
    baseline = [f[verdict["metric"]][verdict["baseline"]] for f in cv["folds"]]
    model = [f[verdict["metric"]]["model"] for f in cv["folds"]]
    assert verdict["per_fold"] == pytest.approx(np.subtract(model, baseline), abs=1e-6)


@needs_pictures
def test_the_calibrated_refit_carries_the_cv_temperature_and_threshold(cross_validated):
    model = cross_validated / "model"
    config = json.loads((model / "config.json").read_text())
    cv = json.loads((model / "cv.json").read_text())
    assert config["temperature"] == cv["temperature"] and config["temperature_fitted_on"].startswith("held-out")
    assert config["threshold"] == cv["threshold"] and (model / "reliability_cv.png").is_file()
    assert json.loads((model / "lineage.json").read_text())["cv"]["unit"] == "class"


@needs_pictures
def test_evaluation_reports_the_cv_and_the_test_calibration(cross_validated):
    metrics = json.loads((cross_validated / "e" / "metrics.json").read_text())
    gallery = json.loads((cross_validated / "e" / "gallery" / "gallery.json").read_text())
    cv = json.loads((cross_validated / "model" / "cv.json").read_text())
    assert metrics["cv"] == cv and metrics["open_set"]["threshold"] == cv["threshold"]
    assert 0 <= metrics["calibration"]["ece"] <= 1 and gallery["temperature"] == cv["temperature"]
    assert (cross_validated / "e" / "reliability.png").is_file()
    assert "Cross-validation" in (cross_validated / "e" / "report.html").read_text()


@needs_pictures
def test_without_folds_the_temperature_is_fitted_on_the_val_classes(cross_validated, tiny_fewshot, run_cli):  # noqa: F811
    v = cross_validated / "v"
    out = cross_validated / "single"
    common = ["--manifest", v / "manifest.jsonl", "--dataset", v / "dataset.json", "--root", tiny_fewshot]
    done = run_cli(
        "fewshot", "train", *common, "--epochs", "1", "--val-episodes", "20", "--image-size", "32", "--out", out
    )
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert 0.005 <= config["temperature"] <= 2 and config["temperature_fitted_on"].startswith("val classes")


@needs_pictures
def test_a_plan_of_groups_is_refused_by_a_fold_task(cross_validated, tiny_fewshot, run_cli):  # noqa: F811
    v = cross_validated / "v"
    groups = cross_validated / "groups.json"
    done = run_cli("cv", "plan", "--manifest", v / "manifest.jsonl", "--cv-folds", "2", "--out", groups)
    assert done.returncode == 0, done.stderr[-2000:]
    common = ["--manifest", v / "manifest.jsonl", "--dataset", v / "dataset.json", "--root", tiny_fewshot]
    done = run_cli("fewshot", "train", *common, "--folds", groups, "--fold", "0", "--out", cross_validated / "x")
    assert done.returncode == 2 and "folds of groups, not of classes" in done.stderr


def _calibrated_model(folder, temperature: float):
    """An untrained embedder with ``temperature`` in its config.json and a 4-class gallery."""
    import torch
    from insectml.fewshot.model import create_embedder

    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), folder / "weights.pt")
    config = {"backbone": "resnet10t", "dim": 16, "image_size": 32, "temperature": temperature}
    (folder / "config.json").write_text(json.dumps(config))
    protos = np.random.default_rng(1).normal(size=(4, 16)).astype(np.float32)
    Gallery(list("abcd"), protos / np.linalg.norm(protos, axis=1, keepdims=True), [3] * 4, None).save(
        folder / "gallery"
    )


def test_probabilities_are_the_softmax_of_cosine_over_temperature(tmp_path):
    from insectml.fewshot.predict import FewshotPredictor
    from PIL import Image

    _calibrated_model(tmp_path, 0.05)
    predictor = FewshotPredictor(tmp_path)
    image = Image.new("RGB", (40, 40), (10, 200, 30))
    (answer,) = predictor.predict([image], k=4)
    cosines = predictor.gallery.similarities(predictor.embed_images([image]))
    expected = probabilities(cosines, 0.05)[0]
    got = {e["label"]: e["probability"] for e in answer["top_k"]}
    assert got == {c: round(float(p), 6) for c, p in zip("abcd", expected, strict=True)}
    assert answer["temperature"] == 0.05 and sum(got.values()) == pytest.approx(1, abs=1e-5)


def test_the_handler_serves_what_predict_prints(tmp_path, run_cli, monkeypatch):
    import io

    from insectml.serving import fewshot_handler
    from PIL import Image

    _calibrated_model(tmp_path, 0.07)
    image = tmp_path / "x.png"
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 40, 90)).save(buf, format="PNG")
    image.write_bytes(buf.getvalue())

    class Context:
        system_properties = {"model_dir": str(tmp_path)}

    monkeypatch.setattr(fewshot_handler, "_service", fewshot_handler.FewshotService())
    (served,) = fewshot_handler.handle([{"body": image.read_bytes()}], Context())
    done = run_cli("fewshot", "predict", "--model", tmp_path, "--gallery", tmp_path / "gallery", image)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = json.loads(done.stdout)
    assert {k: v for k, v in printed.items() if k != "file"} == served
    assert all("probability" in e for e in served["top_k"]) and served["temperature"] == 0.07
