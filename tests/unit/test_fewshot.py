"""Few-shot family: demo data, validation errors, the gallery, episodes, and the CLI from
train to enrolment on a tiny demo."""

import json

import numpy as np
import pytest
from insectml.data.detector_demo import OPENCLIPART
from insectml.errors import ValidationFailed
from insectml.fewshot.embed import episode_accuracy
from insectml.fewshot.gallery import UNKNOWN, Gallery, calibrate_threshold, nearest_neighbour
from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

needs_pictures = pytest.mark.skipif(not OPENCLIPART.is_dir(), reason="needs the Debian package openclipart-png")


@pytest.fixture(scope="module")
def tiny_fewshot(tmp_path_factory):
    from insectml.data.fewshot_demo import write_fewshot_demo

    if not OPENCLIPART.is_dir():
        pytest.skip("needs the Debian package openclipart-png")
    return write_fewshot_demo(tmp_path_factory.mktemp("fs") / "fewshot", body_plan_limit=4, seed=3)


@needs_pictures
def test_demo_is_deterministic_and_fine_grained(tiny_fewshot, tmp_path):
    from insectml.data.fewshot_demo import write_fewshot_demo

    again = write_fewshot_demo(tmp_path / "again", body_plan_limit=4, seed=3)
    first = sorted(p.relative_to(tiny_fewshot) for p in (tiny_fewshot / "images").rglob("*.png"))
    assert first == sorted(p.relative_to(again) for p in (again / "images").rglob("*.png"))
    assert all((tiny_fewshot / p).read_bytes() == (again / p).read_bytes() for p in first[:20])
    classes = sorted(p.name for p in (tiny_fewshot / "images").iterdir())
    assert len(classes) == 24  # 4 body plans × 3 hues × spotted or not
    assert all(3 <= len(list((tiny_fewshot / "images" / c).glob("*.png"))) <= 6 for c in classes)


@needs_pictures
def test_split_is_class_disjoint_with_support_and_query(tiny_fewshot, tmp_path):
    dataset = validate_fewshot(
        FewshotValidateConfig(root=tiny_fewshot, out_dir=tmp_path, images=tiny_fewshot / "images", seed=1)
    )
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    by_split = {s: {r["label"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"])
    for c in by_split["test"]:
        subsets = [r["subset"] for r in rows if r["label"] == c]
        assert subsets.count("support") >= 1 and subsets.count("query") >= 1
    assert dataset["classes_per_split"]["test"] == len(by_split["test"]) >= 2


@needs_pictures
def test_bad_images_and_empty_classes_are_all_reported(tiny_fewshot, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_fewshot / "images", data / "images")
    (data / "images" / "empty_class").mkdir()
    victim = next((data / "images").glob("*/*.png"))
    victim.write_bytes(victim.read_bytes()[:100])
    lonely = data / "images" / "lonely"
    lonely.mkdir()
    shutil.copy(next((data / "images").glob("*/*_1.png")), lonely / "only.png")
    with pytest.raises(ValidationFailed) as info:
        validate_fewshot(FewshotValidateConfig(root=data, out_dir=tmp_path / "out", images=data / "images"))
    text = "\n".join(info.value.problems)
    assert "class 'empty_class' has no images" in text
    assert victim.name in text and ("truncated" in text or "not a readable image" in text)
    assert "class 'lonely' has 1 image" in text and "label conflict" in text
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert len(report["problems"]) == len(info.value.problems)


def test_gallery_classifies_enrols_and_says_unknown(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    emb = np.repeat(centres, 3, axis=0) + rng.normal(scale=0.05, size=(12, 16))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [c for c in "abcd" for _ in range(3)]
    gallery = Gallery.from_embeddings(emb[:9], labels[:9])  # d not enrolled
    top, sims = gallery.classify(emb[:9], k=2)
    assert [gallery.classes[i] for i in top[:, 0]] == labels[:9] and (sims[:, 0] >= sims[:, 1]).all()
    gallery.threshold = calibrate_threshold(sims[:, 0], gallery.similarities(emb[9:]).max(1))
    assert gallery.answer(emb[10])["label"] == UNKNOWN
    assert gallery.enrol("d", emb[9:]) == "added"
    assert gallery.answer(emb[10])["label"] == "d"
    gallery.save(tmp_path / "g")
    again = Gallery.load(tmp_path / "g")
    assert again.classes == ["a", "b", "c", "d"] and np.allclose(again.prototypes, gallery.prototypes)


def test_nearest_neighbour_matches_scikit_learn():
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(60, 8)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    queries = rng.normal(size=(500, 8)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine", algorithm="brute").fit(gallery, np.arange(60))
    assert (nearest_neighbour(queries, gallery, chunk=128) == knn.predict(queries)).all()


def test_episodes_on_separable_embeddings_are_perfect():
    emb = np.repeat(np.eye(6, dtype=np.float32), 4, axis=0)
    labels = [str(i) for i in range(6) for _ in range(4)]
    result = episode_accuracy(emb, labels, way=5, shot=1, episodes=50, seed=0)
    assert result["mean"] == 1.0 and result["ci95"] == 0.0 and result["eligible_classes"] == 6
    assert episode_accuracy(emb, labels, way=5, shot=5, episodes=10, seed=0)["mean"] is None


@needs_pictures
def test_cli_train_evaluate_enrol_predict(tiny_fewshot, tmp_path, run_cli):
    v = tmp_path / "v"
    done = run_cli("fewshot", "validate", "--root", tiny_fewshot, "--images", tiny_fewshot / "images", "--out", v)
    assert done.returncode == 0, done.stderr[-2000:]
    common = ["--manifest", v / "manifest.jsonl", "--dataset", v / "dataset.json", "--root", tiny_fewshot]
    done = run_cli("fewshot", "train", *common, "--epochs", "1", "--val-episodes", "20", "--out", tmp_path / "m")
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli(
        "fewshot", "evaluate", "--model", tmp_path / "m", *common, "--episodes", "20", "--out", tmp_path / "e"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert 0 <= metrics["top1"] <= metrics["top5"] <= 1
    assert metrics["episodes_5way_1shot"]["episodes"] == 20 and "agglomerative" in metrics["clustering"]
    assert (tmp_path / "e" / "embedding_map.png").is_file() and (tmp_path / "e" / "report.html").is_file()
    assert (tmp_path / "e" / "training_curves.png").is_file()  # from the model's history.jsonl
    assert (tmp_path / "e" / "clusters_hdbscan.csv").read_text().startswith("cluster,size,suggested_class")

    from PIL import Image, ImageOps

    new = tmp_path / "new_species"  # colours no demo class has
    new.mkdir()
    source = sorted((tiny_fewshot / "images").iterdir())[0]
    for p in sorted(source.glob("*.png"))[:2]:
        ImageOps.invert(Image.open(p).convert("RGB")).save(new / p.name)
    done = run_cli(
        "fewshot", "enrol", "--model", tmp_path / "m", "--gallery", tmp_path / "e" / "gallery",
        "--name", "new_species", "--out", tmp_path / "g2", *sorted(new.glob("*.png")),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["action"] == "added"
    done = run_cli(
        "fewshot", "predict", "--model", tmp_path / "m", "--gallery", tmp_path / "g2", *sorted(new.glob("*.png"))
    )
    answers = [json.loads(line) for line in done.stdout.splitlines()]
    assert all(a["top_k"][0]["label"] == "new_species" for a in answers)  # its own support images

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    done = run_cli("fewshot", "predict", "--model", tmp_path / "m", "--gallery", tmp_path / "g2", bad)
    assert done.returncode == 2 and "not a readable image" in done.stderr and "Traceback" not in done.stderr


def test_handler_answers_unknown_topk_and_400(tmp_path, monkeypatch):
    import io

    import torch
    from insectml.fewshot.model import create_embedder
    from insectml.serving import fewshot_handler
    from PIL import Image

    torch.manual_seed(0)
    model = create_embedder("resnet10t", 16)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    (tmp_path / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": 32}))
    rng = np.random.default_rng(0)
    protos = rng.normal(size=(3, 16)).astype(np.float32)
    gallery = Gallery(["a", "b", "c"], protos / np.linalg.norm(protos, axis=1, keepdims=True), [3, 3, 3], 0.99)
    gallery.save(tmp_path / "gallery")

    class Context:
        system_properties = {"model_dir": str(tmp_path)}
        statuses = {}

        def set_response_status(self, code, phrase, idx=0):
            self.statuses[idx] = code

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 200, 30)).save(buf, format="PNG")
    monkeypatch.setattr(fewshot_handler, "_service", fewshot_handler.FewshotService())
    context = Context()
    out = fewshot_handler.handle([{"body": buf.getvalue()}, {"body": b"junk"}], context)
    assert context.statuses == {1: 400} and "not a readable image" in out[1]["error"]
    assert out[0]["label"] in ("a", "b", "c", UNKNOWN) and len(out[0]["top_k"]) == 3
    assert out[0]["threshold"] == 0.99


@needs_pictures
def test_csv_manifest_input_and_its_errors(tiny_fewshot, tmp_path):
    import csv

    images = sorted((tiny_fewshot / "images").rglob("*.png"))
    labels = tmp_path / "labels.csv"
    with labels.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows([str(p.relative_to(tiny_fewshot)), p.parent.name] for p in images)
    dataset = validate_fewshot(FewshotValidateConfig(root=tiny_fewshot, out_dir=tmp_path / "ok", labels=labels))
    assert dataset["n_images"] == len(images) and len(dataset["classes"]) == 24
    broken = tmp_path / "broken.csv"
    broken.write_text("path,label\nimages/nope.png,x\nimages/a.png,\n")
    with pytest.raises(ValidationFailed) as info:
        validate_fewshot(FewshotValidateConfig(root=tiny_fewshot, out_dir=tmp_path / "bad", labels=broken))
    text = "\n".join(info.value.problems)
    assert "images/nope.png: file not found" in text and "broken.csv:3: empty label" in text


def _plain_images(folder, colours):
    from PIL import Image

    rows = []
    for i, colour in enumerate(colours):
        Image.new("RGB", (24, 20), colour).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "label": str(i)})
    return rows


def test_colour_histogram_rows_are_unit_and_deterministic(tmp_path):
    import torch
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import ColourHistogram, embed
    from PIL import Image

    rows = _plain_images(tmp_path, [(10, 200, 30), (250, 5, 90)])
    noise = np.random.default_rng(0).integers(0, 256, size=(20, 24, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "noise.png")
    images = ImageSet([*rows, {"path": "noise.png", "label": "n"}], tmp_path, [], 16, False)
    first = embed(ColourHistogram(), images, torch.device("cpu"))
    assert first.shape == (3, 512) and np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    assert np.array_equal(first, embed(ColourHistogram(), images, torch.device("cpu")))


def test_colour_histogram_puts_a_plain_colour_in_its_bin(tmp_path):
    import torch
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import ColourHistogram, embed

    rows = _plain_images(tmp_path, [(10, 200, 30), (250, 5, 90)])
    emb = embed(ColourHistogram(), ImageSet(rows, tmp_path, [], 16, False), torch.device("cpu"))
    green, pink = np.zeros(512), np.zeros(512)
    green[(0 * 8 + 6) * 8 + 0] = pink[(7 * 8 + 0) * 8 + 2] = 1.0  # bins of 32 levels per channel
    assert np.array_equal(emb, np.stack([green, pink]).astype(np.float32))


def test_paired_difference_of_a_model_with_itself_is_zero():
    from insectml.fewshot.embed import episode_scores
    from insectml.fewshot.evaluate import paired_difference

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(60, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    labels = [str(i % 10) for i in range(60)]
    accs = episode_scores(emb, labels, way=5, shot=1, episodes=40, seed=3)
    assert accs.std() > 0  # the episodes differ, so a zero width comes from the pairing
    again = episode_scores(emb.copy(), labels, way=5, shot=1, episodes=40, seed=3)
    assert paired_difference(accs, again) == {"difference": 0.0, "low": 0.0, "high": 0.0}


@pytest.fixture(scope="module")
def untrained_evaluation(tiny_fewshot, tmp_path_factory):
    """evaluate_fewshot on a model that is the random_init baseline itself (same seed)."""
    import torch
    from insectml.fewshot.evaluate import evaluate_fewshot
    from insectml.fewshot.model import create_embedder

    work = tmp_path_factory.mktemp("fs_eval")
    validate_fewshot(FewshotValidateConfig(root=tiny_fewshot, out_dir=work / "v", images=tiny_fewshot / "images"))
    (work / "m").mkdir()
    torch.manual_seed(5)
    torch.save(create_embedder("resnet10t", 16).state_dict(), work / "m" / "weights.pt")
    config = {"backbone": "resnet10t", "dim": 16, "image_size": 32, "loss": "proto"}
    (work / "m" / "config.json").write_text(json.dumps(config))
    v = work / "v"
    evaluate_fewshot(
        work / "m", v / "manifest.jsonl", v / "dataset.json", tiny_fewshot, work / "e", episodes=10, seed=5
    )
    return work / "e"


@needs_pictures
def test_baselines_are_scored_by_the_same_code_on_the_same_episodes(untrained_evaluation):
    metrics = json.loads((untrained_evaluation / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"colour_histogram", "random_init"}
    model = {k: metrics[k] for k in ("top1", "top5", "episodes_5way_1shot", "episodes_5way_5shot")}
    assert metrics["baselines"]["random_init"] == model  # the model is its own random init


@needs_pictures
def test_report_opens_with_the_verdict(untrained_evaluation):
    from insectml.fewshot.evaluate import verdict_sentence
    from markupsafe import escape

    verdict = json.loads((untrained_evaluation / "metrics.json").read_text())["verdict"]
    assert verdict["beats_baseline"] == (verdict["low"] > 0) and verdict["baseline"] in (
        "colour_histogram",
        "random_init",
    )
    report = (untrained_evaluation / "report.html").read_text()
    after_title = report.split("</h1>", 1)[1].lstrip()
    assert after_title.startswith(f'<p class="verdict"><b>{escape(verdict_sentence(verdict))}</b></p>')


@needs_pictures
def test_report_shows_the_open_set_and_the_explanations(untrained_evaluation):
    report = (untrained_evaluation / "report.html").read_text()
    for name in ("open_set_scores.png", "open_set_roc.png", "explanations_classes.png"):
        assert (untrained_evaluation / name).is_file()
    assert "<h2>Open set</h2>" in report and "<h2>Explanations</h2>" in report
    assert report.count('src="data:image/png;base64,') >= 4
