"""Active learning: the selection strategies on toy data, the pool scored by tiny random
models of each family, the Supervisely project read back with the SDK, the labelled
export merged back into rows, and ``insectml select``'s one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from insectml.active import strategies
from insectml.active.merge import read_labelled_export
from insectml.active.strategies import k_center, margin_uncertainty, novelty, prepare_embeddings, select
from insectml.active.supervisely import MARKER, SELECTION
from insectml.cliargs import Parser
from insectml.errors import UserError
from PIL import Image

# -- strategies --------------------------------------------------------------------------------


def clusters(seed: int = 0, per: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Four tight clusters far apart in 2-D; returns points and their cluster ids."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    ids = np.repeat(np.arange(4), per)
    return centres[ids] + rng.normal(scale=0.1, size=(len(ids), 2)), ids


def test_uncertainty_picks_the_smallest_margins_first():
    probs = np.array([[0.9, 0.1, 0.0], [0.4, 0.35, 0.25], [0.6, 0.3, 0.1], [0.34, 0.33, 0.33]])
    picked = select(2, "uncertainty", uncertainty=margin_uncertainty(probs), seed=0).indices
    assert picked == [3, 1]


def test_equal_margins_are_broken_by_entropy():
    probs = np.array([[0.5, 0.3, 0.2, 0.0], [0.4, 0.2, 0.2, 0.2], [0.9, 0.1, 0.0, 0.0]])
    margins = margin_uncertainty(probs)
    assert margins[0] == pytest.approx(margins[1])
    picked = select(2, "uncertainty", uncertainty=margins, tiebreak=strategies.entropy(probs)).indices
    assert picked == [1, 0]


def test_k_center_covers_every_cluster():
    points, ids = clusters()
    picked, _ = k_center(points, 4, seed=3)
    assert sorted(ids[picked]) == [0, 1, 2, 3]


def test_k_center_starts_from_the_labelled_set():
    points, ids = clusters()
    labelled = np.array([[0.0, 0.0], [10.0, 0.0]])
    picked = select(2, "diversity", embeddings=points, labelled=labelled, seed=1).indices
    assert sorted(ids[picked]) == [2, 3]


def test_hybrid_picks_spread_out_samples_among_the_most_uncertain():
    points, ids = clusters(per=10)
    rng = np.random.default_rng(0)
    uncertainty = rng.uniform(size=len(points))
    budget = 3
    chosen = select(budget, "hybrid", uncertainty=uncertainty, embeddings=points, seed=0)
    top = set(np.argsort(-uncertainty)[: 3 * budget].tolist())
    assert set(chosen.indices) <= top and len(set(ids[chosen.indices])) == budget


def test_novelty_is_one_minus_the_best_cosine_to_the_prototypes():
    protos = np.eye(3)
    queries = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    scores = novelty(queries, protos)
    assert scores == pytest.approx([0.0, 1 - np.sqrt(0.5), 1.0])
    assert select(1, "novelty", novelty_scores=scores).indices == [2]


def test_standardised_features_weigh_every_feature_alike():
    x = np.column_stack([np.arange(10.0), 1000 * np.arange(10.0)[::-1]])
    prepared, _ = prepare_embeddings(x, kind="standardise")
    assert prepared.std(axis=0) == pytest.approx([1.0, 1.0])


def test_the_cli_offers_the_library_strategies():
    from insectml.active import cli

    assert cli.STRATEGIES == strategies.STRATEGIES


# -- tiny models and pools ---------------------------------------------------------------------


def wav(path: Path, hz: float, seconds: float = 0.4, rate: int = 8000, noise: float = 0.05, seed: int = 0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    sf.write(path, (0.3 * np.sin(2 * np.pi * hz * t) + noise * rng.normal(size=len(t))).astype(np.float32), rate)
    return path


def png(path: Path, seed: int, size=(48, 40)) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def wingbeat_model(tmp_path_factory) -> Path:
    """A logistic regression on the engineered features of random rows (3 classes)."""
    import joblib
    from insectml.wingbeat.features import feature_names
    from insectml.wingbeat.frontend import FrontendConfig
    from sklearn.linear_model import LogisticRegression

    out = tmp_path_factory.mktemp("wingbeat_model")
    rng = np.random.default_rng(0)
    model = LogisticRegression(max_iter=200).fit(rng.normal(size=(30, len(feature_names()))), np.arange(30) % 3)
    joblib.dump(model, out / "model.joblib")
    config = {"family": "wingbeat", "kind": "classical", "model": "features", "inputs": "engineered"}
    config["frontend"] = FrontendConfig().to_dict()
    (out / "config.json").write_text(json.dumps(config))
    (out / "labels.json").write_text(json.dumps(["aedes", "culex", "anopheles"]))
    (out / "lineage.json").write_text(json.dumps({"version": "v-test"}))
    return out


@pytest.fixture(scope="module")
def wingbeat_pool(tmp_path_factory) -> Path:
    pool = tmp_path_factory.mktemp("wingbeat_pool")
    for i, hz in enumerate([300, 350, 400, 450, 500, 550, 600, 700]):
        wav(pool / f"rec_{i}.wav", hz, seed=i)
    (pool / "notes.txt").write_text("not a recording")
    (pool / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    return pool


@pytest.fixture(scope="module")
def fewshot_model(tmp_path_factory) -> Path:
    import torch
    from insectml.fewshot.gallery import Gallery
    from insectml.fewshot.model import create_embedder

    out = tmp_path_factory.mktemp("fewshot_model")
    torch.manual_seed(0)
    torch.save(create_embedder("resnet10t", 16).state_dict(), out / "weights.pt")
    config = {"family": "fewshot", "backbone": "resnet10t", "dim": 16, "image_size": 32, "temperature": 0.05}
    (out / "config.json").write_text(json.dumps(config))
    protos = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    Gallery(["a", "b", "c"], protos / np.linalg.norm(protos, axis=1, keepdims=True), [3, 3, 3], 0.5).save(
        out / "gallery"
    )
    return out


@pytest.fixture(scope="module")
def image_pool(tmp_path_factory) -> Path:
    pool = tmp_path_factory.mktemp("image_pool")
    (pool / "sub").mkdir()
    for i in range(6):
        png(pool / ("sub" if i % 2 else ".") / f"img_{i}.png", seed=i)
    (pool / "copy_of_0.png").write_bytes((pool / "img_0.png").read_bytes())  # counted once
    (pool / "truncated.png").write_bytes((pool / "img_0.png").read_bytes()[:100])
    return pool


@pytest.fixture(scope="module")
def detector_model(tmp_path_factory) -> Path:
    """An untrained SSDlite (it scores boxes near 0.5 wherever it looks)."""
    import torch
    from insectml.detector.models import create_detector

    out = tmp_path_factory.mktemp("detector_model")
    torch.manual_seed(0)
    torch.save(create_detector("ssdlite320_mobilenet_v3_large", 2).state_dict(), out / "weights.pt")
    config = {"family": "detector", "kind": "detector", "model": "ssdlite320_mobilenet_v3_large", "image_size": 320}
    (out / "config.json").write_text(json.dumps(config))
    (out / "labels.json").write_text(json.dumps(["bee", "stink_bug"]))
    (out / "lineage.json").write_text("{}")
    return out


def parser() -> Parser:
    from insectml.active.cli import register

    p = Parser(prog="insectml")
    register(p.add_subparsers(dest="command", required=True))
    return p


def cli(*args: object) -> int:
    """``insectml select ARGS`` as the main CLI runs it (a UserError: one line, exit 2)."""
    args = parser().parse_args(["select", *map(str, args)])
    try:
        return args.func(args)
    except UserError as exc:
        print(f"insectml: error: {exc}")
        return exc.exit_code


def read_back(project: Path):
    """The project as the Supervisely SDK reads it: (project, {item name: annotation})."""
    from insectml.detector.supervisely_io import _import_supervisely

    sly = _import_supervisely()
    opened = sly.Project(str(project), sly.OpenMode.READ)
    anns = {}
    for dataset in opened.datasets:
        for item in dataset:
            anns[item] = dataset.get_ann(item, opened.meta)
    return opened, anns


@pytest.fixture(scope="module")
def wingbeat_project(wingbeat_model, wingbeat_pool, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wb") / "project"
    assert cli(wingbeat_pool, "--model", wingbeat_model, "--budget", 4, "--strategy", "hybrid", "--out", out) == 0
    return out


@pytest.fixture(scope="module")
def fewshot_project(fewshot_model, image_pool, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fs") / "project"
    args = [image_pool, "--model", fewshot_model, "--budget", 3, "--strategy", "novelty", "--out", out]
    assert cli(*args, "--round", 2, "--seed", 5) == 0
    return out


@pytest.fixture(scope="module")
def detector_project(detector_model, image_pool, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("det") / "project"
    args = [image_pool, "--model", detector_model, "--budget", 2, "--strategy", "uncertainty", "--out", out]
    assert cli(*args) == 0
    return out


# -- the project -------------------------------------------------------------------------------


def test_wingbeat_project_reads_back_with_spectrograms_and_wavs(wingbeat_project):
    project, anns = read_back(wingbeat_project)
    selection = json.loads((wingbeat_project / SELECTION).read_text())
    names = [item["name"] for item in selection["items"]]
    assert sorted(anns) == sorted(names) and len(names) == 4
    for item in selection["items"]:
        ann = anns[item["name"]]
        tags = {t.name: t.value for t in ann.img_tags}
        assert tags["suggested_class"] == item["answer"]["label"] and "unreviewed" in tags
        assert (wingbeat_project / item["wav"]).read_bytes() == Path(item["source"]).read_bytes()
        with Image.open(wingbeat_project / item["image"]) as im:
            assert (im.height, im.width) == (ann.img_size[0], ann.img_size[1])


def test_selection_json_records_round_strategy_model_and_each_item(wingbeat_project, wingbeat_pool):
    selection = json.loads((wingbeat_project / SELECTION).read_text())
    assert (selection["round"], selection["strategy"], selection["budget"], selection["model"]["version"]) == (
        1,
        "hybrid",
        4,
        "v-test",
    )
    assert [i["rank"] for i in selection["items"]] == [1, 2, 3, 4]
    assert all({"uncertainty", "entropy"} <= set(i["scores"]) for i in selection["items"])
    (skipped,) = selection["pool"]["skipped"]
    assert skipped["path"].endswith("broken.wav") and selection["pool"]["scored"] == 8


def test_fewshot_project_suggests_the_gallery_answer(fewshot_project):
    _, anns = read_back(fewshot_project)
    selection = json.loads((fewshot_project / SELECTION).read_text())
    assert selection["pool"]["files"] == 7  # 6 images and a truncated one; the copy counted once
    assert [i["scores"]["novelty"] for i in selection["items"]] == sorted(
        (i["scores"]["novelty"] for i in selection["items"]), reverse=True
    )
    first = selection["items"][0]
    tags = {t.name: t.value for t in anns[first["name"]].img_tags}
    assert (tags["suggested_class"], tags["confidence"]) == (first["answer"]["label"], first["answer"]["confidence"])


def test_detector_project_holds_the_served_boxes_as_rectangles(detector_project, detector_model):
    project, anns = read_back(detector_project)
    selection = json.loads((detector_project / SELECTION).read_text())
    assert [c.name for c in project.meta.obj_classes] == ["bee", "stink_bug"]
    assert sum(len(item["answer"]["boxes"]) for item in selection["items"]) > 0
    for item in selection["items"]:
        labels = anns[item["name"]].labels
        assert len(labels) == len(item["answer"]["boxes"])
        for label, box in zip(labels, item["answer"]["boxes"], strict=True):
            x1, y1, x2, y2 = box["box"]
            bbox = label.geometry.to_bbox()
            assert (label.obj_class.name, bbox.left, bbox.top) == (box["label"], int(x1), int(y1))
            assert (bbox.right + 1, bbox.bottom + 1) == (min(int(np.ceil(x2)), 48), min(int(np.ceil(y2)), 40))
            assert label.tags.get("confidence").value == pytest.approx(box["score"])


def test_detector_uncertainty_is_the_most_doubtful_box(detector_model, image_pool):
    from insectml.active.pool import list_pool, score_pool

    scored = score_pool(list_pool(image_pool, "detector"), detector_model, "detector")
    assert scored.embeddings.shape[0] == len(scored.items) == 6
    # the untrained SSDlite scores every box 1/3 (three classes with background, all alike)
    assert scored.uncertainty == pytest.approx(np.full(6, 1 / 3), abs=1e-3)


def test_a_prediction_log_with_inputs_is_a_pool(tmp_path, fewshot_model, image_pool):
    from insectml.serving.predlog import PredictionLog

    log_dir = tmp_path / "predictions"
    plog = PredictionLog(log_dir, inputs_folder=log_dir / "inputs")
    bodies = [p.read_bytes() for p in sorted(image_pool.rglob("img_*.png"))]
    for body in bodies[:4]:
        plog.append("fewshot", "fs", "v1", body, "image/png", {"label": "a"}, {}, 0.9, False)
    plog.append("wingbeat", "wb", "v1", b"RIFF", "audio/wav", {}, {}, None, False)  # another model's line
    out = tmp_path / "project"
    assert cli(log_dir, "--model", fewshot_model, "--budget", 10, "--strategy", "hybrid", "--out", out) == 0
    selection = json.loads((out / SELECTION).read_text())
    assert selection["pool"]["kind"] == "prediction log" and len(selection["items"]) == 4
    assert all(item["logged"]["version"] == "v1" for item in selection["items"])


# -- the merge ---------------------------------------------------------------------------------


def edit(project: Path, name: str, *, drop=(), tags: dict | None = None, objects=None) -> None:
    """Change an item's annotation as Supervisely exports a labeller's work: tags removed
    or set (value None: a value-less tag), objects replaced."""
    (dataset,) = [d for d in project.iterdir() if (d / "ann").is_dir()]
    path = dataset / "ann" / f"{name}.json"
    ann = json.loads(path.read_text())
    ann["tags"] = [t for t in ann["tags"] if t["name"] not in drop and t["name"] not in (tags or {})]
    for key, value in (tags or {}).items():
        ann["tags"].append({"name": key} if value is None else {"name": key, "value": value})
    if objects is not None:
        ann["objects"] = objects
    path.write_text(json.dumps(ann))


def copy_project(project: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(project, dest)
    return dest


def test_merge_reads_labels_and_provenance_and_counts_the_unlabelled(wingbeat_project, tmp_path):
    export = copy_project(wingbeat_project, tmp_path / "export")
    names = [i["name"] for i in json.loads((export / SELECTION).read_text())["items"]]
    edit(export, names[0], drop=["unreviewed"], tags={"suggested_class": "culex"})  # corrected the suggestion
    edit(export, names[1], drop=["unreviewed"], tags={"class": "anopheles"})  # gave the class
    edit(export, names[2], drop=["unreviewed", "suggested_class"])  # could not tell
    # names[3] left unreviewed
    rows = read_labelled_export(export, "wingbeat")
    assert [(r["label"], r["path"]) for r in rows] == [
        ("culex", f"round_1/wav/{Path(names[0]).stem}.wav"),
        ("anopheles", f"round_1/wav/{Path(names[1]).stem}.wav"),
    ]
    assert rows[0]["provenance"]["al_round"] == 1 and rows[0]["provenance"]["al_strategy"] == "hybrid"
    assert rows.skipped == {"unreviewed": 1, "no label": 1}


def test_merge_of_an_unknown_wingbeat_class_needs_the_callers_consent(wingbeat_project, tmp_path):
    export = copy_project(wingbeat_project, tmp_path / "export")
    name = json.loads((export / SELECTION).read_text())["items"][0]["name"]
    edit(export, name, drop=["unreviewed"], tags={"class": "new_species"})
    with pytest.raises(UserError, match="new_species"):
        read_labelled_export(export, "wingbeat")
    assert read_labelled_export(export, "wingbeat", allow_new_classes=True).new_classes == ["new_species"]


def test_merge_accepts_a_new_fewshot_class_and_a_class_tag(fewshot_project, tmp_path):
    export = copy_project(fewshot_project, tmp_path / "export")
    (export / SELECTION).unlink()  # an export from Supervisely keeps no selection.json
    (export / MARKER).unlink()
    names = sorted(p.name[: -len(".json")] for p in (export / "round_2" / "ann").iterdir())
    edit(export, names[0], drop=["unreviewed"], tags={"class": "brand_new"})
    edit(export, names[1], drop=["unreviewed"], tags={"b": None})  # the class's own tag
    edit(export, names[2], drop=["unreviewed"], tags={"class": "a", "c": None})  # disagreeing labels
    rows = read_labelled_export(export, "fewshot", classes=["a", "b", "c"])
    assert [r["label"] for r in rows] == ["brand_new", "b"] and rows.new_classes == ["brand_new"]
    assert rows[0]["provenance"]["al_round"] == 2 and rows.skipped == {"conflicting labels": 1}


def test_merge_reads_the_labellers_boxes(detector_project, tmp_path):
    export = copy_project(detector_project, tmp_path / "export")
    names = [i["name"] for i in json.loads((export / SELECTION).read_text())["items"]]
    box = {"classTitle": "bee", "tags": [], "points": {"exterior": [[5, 6], [20, 30]], "interior": []}}
    box["geometryType"] = "rectangle"
    edit(export, names[0], drop=["unreviewed"], objects=[box])
    edit(export, names[1], drop=["unreviewed"], objects=[])  # a negative
    rows = read_labelled_export(export, "detector")
    assert [(r["labels"], r["boxes"]) for r in rows] == [(["bee"], [[5, 6, 21, 31]]), ([], [])]
    assert rows[0]["group"] != rows[1]["group"] and rows[0]["provenance"]["sha256"]


# -- bad input ---------------------------------------------------------------------------------


def one_line(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith("insectml: error:")
    return out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", 0, "--strategy", "uncertainty"], "--budget 0"),
        (["--budget", 2, "--strategy", "novelty"], "novelty"),
    ],
)
def test_bad_arguments_are_one_line(extra, message, wingbeat_model, wingbeat_pool, tmp_path, capsys):
    assert cli(wingbeat_pool, "--model", wingbeat_model, *extra, "--out", tmp_path / "p") == 2
    assert message in one_line(capsys) and not (tmp_path / "p").exists()


def test_a_pool_without_recordings_is_one_line(wingbeat_model, tmp_path, capsys):
    (tmp_path / "pool").mkdir()
    png(tmp_path / "pool" / "photo.png", 0)
    args = [tmp_path / "pool", "--model", wingbeat_model, "--budget", 2, "--strategy", "uncertainty"]
    assert cli(*args, "--out", tmp_path / "p") == 2
    assert ".wav" in one_line(capsys)


def test_an_existing_folder_is_replaced_only_if_ours_and_forced(
    wingbeat_project, wingbeat_model, wingbeat_pool, tmp_path, capsys
):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "keep.txt").write_text("mine")
    args = [wingbeat_pool, "--model", wingbeat_model, "--budget", 1, "--strategy", "uncertainty"]
    assert cli(*args, "--out", theirs, "--force") == 2 and "not replaced" in one_line(capsys)
    assert (theirs / "keep.txt").read_text() == "mine"
    ours = copy_project(wingbeat_project, tmp_path / "ours")
    assert cli(*args, "--out", ours) == 2 and "--force" in one_line(capsys)
    assert cli(*args, "--out", ours, "--force") == 0
    assert len(json.loads((ours / SELECTION).read_text())["items"]) == 1
