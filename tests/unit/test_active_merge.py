"""A labelled active-learning export merged by each family's validate step
(``--extra-labels``): its rows join the training side only, keep their provenance, and
dataset.json, every model's lineage and the model card record the round. The exports are
written by :mod:`insectml.active.supervisely` and "labelled" by editing their annotation
JSON as Supervisely exports a labeller's work."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from insectml.active.supervisely import SELECTION
from insectml.errors import ValidationFailed
from PIL import Image

# -- exports -----------------------------------------------------------------------------------


def write_export(out: Path, family: str, files: list[Path], classes: list[str], *, round_: int = 1) -> Path:
    """A labelling project of ``files`` as ``insectml select`` writes it (every item
    suggested as the first class, strategy hybrid); returns ``out``."""
    from insectml.active.pool import PoolItem, ScoredPool, file_sha256
    from insectml.active.strategies import Selection
    from insectml.active.supervisely import write_project
    from insectml.wingbeat.frontend import FrontendConfig

    items = [PoolItem(Path(f), file_sha256(Path(f))) for f in files]
    if family == "detector":
        answers = [{"boxes": []} for _ in items]
    else:
        answers = [{"label": classes[0], "confidence": 0.5} for _ in items]
    scored = ScoredPool(family, classes, items, answers, np.zeros(len(items)))
    model = {"name": "m", "version": "v1", "frontend": FrontendConfig().to_dict()}
    return write_project(
        out,
        scored,
        Selection("hybrid", list(range(len(items)))),
        round_=round_,
        budget=len(items),
        seed=0,
        model=model,
        pool={"path": "pool", "kind": "folder", "files": len(items)},
    )


def item_names(export: Path) -> list[str]:
    return [item["name"] for item in json.loads((export / SELECTION).read_text())["items"]]


def label(export: Path, name: str, *, tags: dict | None = None, objects=None, reviewed: bool = True) -> None:
    """Edit an item's annotation as a labeller's export has it: 'unreviewed' removed, tags
    set (value None: a value-less tag), objects replaced."""
    (path,) = export.glob(f"*/ann/{name}.json")
    ann = json.loads(path.read_text())
    drop = {"unreviewed"} if reviewed else set()
    ann["tags"] = [t for t in ann["tags"] if t["name"] not in drop and t["name"] not in (tags or {})]
    for key, value in (tags or {}).items():
        ann["tags"].append({"name": key} if value is None else {"name": key, "value": value})
    if objects is not None:
        ann["objects"] = objects
    path.write_text(json.dumps(ann))


def manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


def merged(rows: list[dict]) -> list[dict]:
    return [r for r in rows if "provenance" in r]


# -- wingbeat ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def new_recordings(tmp_path_factory) -> list[tuple[Path, str]]:
    """Five recordings the tiny demo does not hold (another seed), with their species."""
    from insectml.data.demo import write_wingbeat_demo

    root = write_wingbeat_demo(tmp_path_factory.mktemp("pool") / "demo", per_class=1, seed=99)
    with (root / "labels.csv").open() as fh:
        return [(root / row["path"], row["species"]) for row in csv.DictReader(fh)]


def wingbeat_validate(data: Path, out: Path, extra: Path | None = None) -> dict:
    from insectml.wingbeat.validate import ValidateConfig, validate_and_split

    cfg = ValidateConfig(
        labels=data / "labels.csv", data_dir=data, out_dir=out, classes=data / "classes.txt", extra_labels=extra
    )
    return validate_and_split(cfg)


@pytest.fixture(scope="module")
def wingbeat_export(new_recordings, tmp_path_factory) -> Path:
    """Four of the new recordings labelled with their species (three by the tag 'class', one
    by confirming a right suggestion), the fifth left unreviewed."""
    files = [path for path, _ in new_recordings]
    species = [s for _, s in new_recordings]
    export = write_export(tmp_path_factory.mktemp("wb") / "export", "wingbeat", files, sorted(set(species)))
    names = item_names(export)
    for name, truth in zip(names[:4], species[:4], strict=True):
        label(export, name, tags={"suggested_class": truth} if truth == sorted(set(species))[0] else {"class": truth})
    return export


@pytest.fixture(scope="module")
def wingbeat_runs(tiny_wingbeat, wingbeat_export, tmp_path_factory) -> dict:
    """The tiny demo validated without and with the export: {name: (out folder, dataset)}."""
    base = tmp_path_factory.mktemp("wb-base")
    with_al = tmp_path_factory.mktemp("wb-al")
    return {
        "base": (base, wingbeat_validate(tiny_wingbeat, base)),
        "al": (with_al, wingbeat_validate(tiny_wingbeat, with_al, wingbeat_export)),
    }


def test_wingbeat_labelled_rows_join_train_with_their_provenance(wingbeat_runs, new_recordings):
    rows = merged(manifest(wingbeat_runs["al"][0]))
    truth = {path.read_bytes(): species for path, species in new_recordings}
    assert [(r["split"], r["label"]) for r in rows] == [("train", truth[Path(r["path"]).read_bytes()]) for r in rows]
    assert len(rows) == 4 and all(r["provenance"]["al_round"] == 1 for r in rows)
    assert {r["provenance"]["al_strategy"] for r in rows} == {"hybrid"}


def test_wingbeat_merge_leaves_the_datas_split_untouched(wingbeat_runs):
    base = manifest(wingbeat_runs["base"][0])
    assert [r for r in manifest(wingbeat_runs["al"][0]) if "provenance" not in r] == base


def test_wingbeat_report_counts_the_items_left_unreviewed(wingbeat_runs):
    report = json.loads((wingbeat_runs["al"][0] / "validation_report.json").read_text())
    assert (report["extra_labels"]["merged"], report["extra_labels"]["skipped"]) == (4, {"unreviewed": 1})


def test_dataset_json_and_the_lineage_record_the_round(wingbeat_runs, wingbeat_export):
    from insectml import lineage

    dataset = wingbeat_runs["al"][1]
    expected = [{"round": 1, "strategy": "hybrid", "n_rows": 4, "export": str(wingbeat_export.resolve())}]
    assert dataset["active_learning"] == expected
    assert dataset["counts"]["train"] != wingbeat_runs["base"][1]["counts"]["train"]
    record = lineage.collect(params={}, seed=1, data={}, started=lineage.now(), source=dataset["source"])
    assert record["data"]["active_learning"] == expected


def test_the_model_card_lists_the_rounds(wingbeat_runs, tmp_path):
    from insectml import lineage
    from insectml.release.candidate import load_candidate
    from insectml.release.card import write_card
    from insectml.release.gate import check

    dataset = wingbeat_runs["al"][1]
    results = tmp_path / "wingbeat"
    for folder in ("comparison", "models/features", "evaluation/features", "archive"):
        (results / folder).mkdir(parents=True)
    (results / "comparison" / "best.txt").write_text("features\n")
    (results / "comparison" / "comparison.json").write_text(json.dumps({"best": "features"}))
    record = lineage.collect(params={}, seed=1, data={}, started=lineage.now(), source=dataset["source"])
    (results / "models" / "features" / "lineage.json").write_text(json.dumps(record))
    (results / "models" / "features" / "labels.json").write_text(json.dumps(dataset["classes"]))
    (results / "evaluation" / "features" / "metrics.json").write_text(json.dumps({"macro_f1": 0.8, "accuracy": 0.8}))
    (results / "archive" / "wingbeat.mar").write_bytes(b"")
    c = load_candidate(results)
    json_path, md_path = write_card(c, "wingbeat", "v1.0.0", check(c.headline, c.labels, None), None, tmp_path / "card")
    assert json.loads(json_path.read_text())["active_learning"] == dataset["active_learning"]
    assert "| 1 | hybrid | 4 |" in md_path.read_text()


def test_an_unknown_wingbeat_species_names_the_file_and_the_species(tiny_wingbeat, new_recordings, tmp_path):
    export = write_export(tmp_path / "export", "wingbeat", [new_recordings[0][0]], ["aedes_aegypti"])
    (name,) = item_names(export)
    label(export, name, tags={"class": "aedes_novus"})
    with pytest.raises(ValidationFailed) as info:
        wingbeat_validate(tiny_wingbeat, tmp_path / "out", export)
    assert info.value.problems == [
        f"{export.resolve()}/round_1/wav/{Path(name).stem}.wav: species 'aedes_novus' is not in the data (species: "
        "aedes_aegypti, aedes_albopictus, anopheles_gambiae, culex_pipiens, culex_quinquefasciatus)"
    ]


def test_the_cli_refuses_an_unknown_species_in_one_line(tiny_wingbeat, new_recordings, tmp_path, run_cli):
    export = write_export(tmp_path / "export", "wingbeat", [new_recordings[0][0]], ["aedes_aegypti"])
    label(export, item_names(export)[0], tags={"class": "aedes_novus"})
    done = run_cli(
        *("wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--data", tiny_wingbeat),
        *("--out", tmp_path / "out", "--extra-labels", export),
    )
    errors = [line for line in done.stderr.splitlines() if line.startswith("insectml: error:")]
    assert done.returncode == 2 and len(errors) == 1 and "'aedes_novus' is not in the data" in errors[0]


def test_a_recording_the_data_holds_is_left_out(tiny_wingbeat, tmp_path):
    first = next(csv.DictReader((tiny_wingbeat / "labels.csv").open()))
    export = write_export(tmp_path / "export", "wingbeat", [tiny_wingbeat / first["path"]], [first["species"]])
    label(export, item_names(export)[0], tags={"class": first["species"]})
    wingbeat_validate(tiny_wingbeat, tmp_path / "out", export)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert merged(manifest(tmp_path / "out")) == [] and "left out" in report["warnings"][-1]


def test_a_recording_the_data_holds_under_another_species_is_a_conflict(tiny_wingbeat, tmp_path):
    first = next(csv.DictReader((tiny_wingbeat / "labels.csv").open()))
    other = "culex_pipiens" if first["species"] != "culex_pipiens" else "aedes_aegypti"
    export = write_export(tmp_path / "export", "wingbeat", [tiny_wingbeat / first["path"]], [other])
    label(export, item_names(export)[0], tags={"class": other})
    with pytest.raises(ValidationFailed, match="label conflict"):
        wingbeat_validate(tiny_wingbeat, tmp_path / "out", export)


# -- few-shot ----------------------------------------------------------------------------------


def noise_png(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def fewshot_data(tmp_path_factory) -> Path:
    """12 classes of 3 noise images (every image its own group), and 3 new images in pool/."""
    root = tmp_path_factory.mktemp("fewshot")
    for c in range(12):
        for i in range(3):
            noise_png(root / "images" / f"class_{c:02d}" / f"{i}.png", seed=100 * c + i)
    for i in range(3):
        noise_png(root / "pool" / f"new_{i}.png", seed=10_000 + i)
    return root


def fewshot_validate(root: Path, out: Path, extra: Path | None = None) -> dict:
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

    return validate_fewshot(
        FewshotValidateConfig(root=root, out_dir=out, images=root / "images", seed=1, extra_labels=extra)
    )


@pytest.fixture(scope="module")
def fewshot_runs(fewshot_data, tmp_path_factory) -> dict:
    """The data validated alone, then with an export whose three items are labelled a new
    class, a training class and a test class: {name: (out folder, dataset)}."""
    base_out = tmp_path_factory.mktemp("fs-base")
    base = fewshot_validate(fewshot_data, base_out)
    export = write_export(
        tmp_path_factory.mktemp("fs") / "export",
        "fewshot",
        sorted((fewshot_data / "pool").iterdir()),
        base["classes"],
        round_=2,
    )
    names = item_names(export)
    label(export, names[0], tags={"class": "brand_new"})
    label(export, names[1], tags={base["split_classes"]["train"][0]: None})
    label(export, names[2], tags={"class": base["split_classes"]["test"][0]})
    out = tmp_path_factory.mktemp("fs-al")
    return {"base": (base_out, base), "al": (out, fewshot_validate(fewshot_data, out, export))}


def test_fewshot_labelled_rows_join_the_training_classes(fewshot_runs):
    base = fewshot_runs["base"][1]
    rows = merged(manifest(fewshot_runs["al"][0]))
    assert [(r["label"], r["split"], r["subset"]) for r in rows] == [
        ("brand_new", "train", "train"),
        (base["split_classes"]["train"][0], "train", "train"),
    ]
    assert rows[0]["provenance"]["al_round"] == 2


def test_a_new_fewshot_class_is_a_training_class(fewshot_runs):
    dataset = fewshot_runs["al"][1]
    assert "brand_new" in dataset["classes"] and "brand_new" in dataset["split_classes"]["train"]


def test_a_fewshot_item_of_a_held_out_class_is_left_out(fewshot_runs):
    base = fewshot_runs["base"][1]
    out, dataset = fewshot_runs["al"]
    report = json.loads((out / "validation_report.json").read_text())
    assert f"class '{base['split_classes']['test'][0]}' is held out for test" in report["warnings"][-1]
    assert dataset["split_classes"]["test"] == base["split_classes"]["test"]
    assert dataset["active_learning"][0]["n_rows"] == 2


def test_fewshot_merge_leaves_the_datas_split_untouched(fewshot_runs):
    base = manifest(fewshot_runs["base"][0])
    assert [r for r in manifest(fewshot_runs["al"][0]) if "provenance" not in r] == base


# -- detector ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def detector_data(tmp_path_factory) -> tuple[Path, list[Path]]:
    """The demo's box-labelled images (30, no species folder), and 3 images of another seed."""
    from insectml.data.detector_demo import OPENCLIPART, TUXPAINT, write_detector_demo

    if not OPENCLIPART.is_dir() or not TUXPAINT.is_dir():
        pytest.skip("needs the Debian packages openclipart-png and tuxpaint-stamps-default (make setup, as root)")
    base = tmp_path_factory.mktemp("det")
    data = write_detector_demo(base / "data", n_box_images=30, n_species_images=0, seed=3)
    pool = write_detector_demo(base / "pool", n_box_images=3, n_species_images=0, seed=4)
    return data, sorted((pool / "insects_sly" / "insects" / "img").iterdir())


def detector_validate(data: Path, out: Path, extra: Path | None = None) -> dict:
    from insectml.detector.validate import DetectorValidateConfig, validate_detection

    cfg = DetectorValidateConfig(root=data, out_dir=out, labels=data / "insects_sly", species=None, extra_labels=extra)
    return validate_detection(cfg)


def rectangle(cls: str, x1: int, y1: int, x2: int, y2: int) -> dict:
    """A Supervisely rectangle object (inclusive corners)."""
    return {
        "classTitle": cls,
        "geometryType": "rectangle",
        "tags": [],
        "points": {"exterior": [[x1, y1], [x2, y2]], "interior": []},
    }


@pytest.fixture(scope="module")
def detector_runs(detector_data, tmp_path_factory) -> dict:
    """The data validated alone, then with an export of the 3 new images: a bee boxed, a
    negative, one left unreviewed. {name: (out folder, dataset)}."""
    data, pool = detector_data
    classes = [c["title"] for c in json.loads((data / "insects_sly" / "meta.json").read_text())["classes"]]
    export = write_export(tmp_path_factory.mktemp("det-export") / "export", "detector", pool, classes)
    names = item_names(export)
    label(export, names[0], objects=[rectangle("bee", 5, 6, 20, 30)])
    label(export, names[1], objects=[])
    base_out, al_out = tmp_path_factory.mktemp("det-base"), tmp_path_factory.mktemp("det-al")
    return {
        "base": (base_out, detector_validate(data, base_out)),
        "al": (al_out, detector_validate(data, al_out, export)),
    }


def test_detector_labelled_images_join_train_with_their_boxes(detector_runs):
    rows = merged(manifest(detector_runs["al"][0]))
    assert [(r["split"], r["labels"], r["boxes"]) for r in rows] == [
        ("train", ["bee"], [[5, 6, 21, 31]]),
        ("train", [], []),
    ]
    assert detector_runs["al"][1]["active_learning"][0]["n_rows"] == 2


def test_detector_merge_leaves_the_datas_split_untouched(detector_runs):
    base = manifest(detector_runs["base"][0])
    assert [r for r in manifest(detector_runs["al"][0]) if "provenance" not in r] == base


def test_an_unknown_detector_class_names_the_file_and_the_class(detector_data, tmp_path):
    data, pool = detector_data
    export = write_export(tmp_path / "export", "detector", pool[:1], ["bee"])
    meta = json.loads((export / "meta.json").read_text())
    meta["classes"].append({**meta["classes"][0], "title": "hornet"})  # the labeller added a class
    (export / "meta.json").write_text(json.dumps(meta))
    label(export, item_names(export)[0], objects=[rectangle("hornet", 1, 1, 9, 9)])
    with pytest.raises(ValidationFailed) as info:
        detector_validate(data, tmp_path / "out", export)
    (problem,) = info.value.problems
    assert problem.startswith(
        f"{export.resolve()}/round_1/img/{item_names(export)[0]}: class(es) hornet not in the data"
    )


def test_a_copy_of_a_data_image_is_left_out(detector_data, tmp_path):
    data, _ = detector_data
    export = write_export(
        tmp_path / "export", "detector", [next((data / "insects_sly" / "insects" / "img").iterdir())], ["bee"]
    )
    label(export, item_names(export)[0], objects=[])
    detector_validate(data, tmp_path / "out", export)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert merged(manifest(tmp_path / "out")) == [] and "of the data; left out" in report["warnings"][-1]
