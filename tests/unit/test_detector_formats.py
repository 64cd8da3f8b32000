"""Box labels as real tools export them (tests/fixtures/exports.py writes the exports):
each format's classes, pixel-exact boxes, groups, negatives and problems; detection of
the format; odd class names through validate and train; the CLI on every export.

Tests whose docstring starts "supervision 0.31.2:" pin a case that supervision's
``DetectionDataset.from_coco`` / ``from_yolo`` / ``from_pascal_voc`` get wrong (the
docstring says what they do); they are why formats.py parses COCO, YOLO and VOC itself.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
from insectml.detector.formats import detect_format, read_boxes
from insectml.detector.supervisely_io import read_species_folders
from insectml.detector.validate import DetectorValidateConfig, validate_detection
from insectml.errors import InputFileError, ValidationFailed
from PIL import Image

from tests.fixtures.exports import CLASSES, Export, truncate_file, write_coco, write_roboflow_yolo, write_voc

FORMAT = {"roboflow_yolo": "yolo", "ultralytics_yolo": "yolo", "coco": "coco", "voc": "voc"}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, Export]:
    base = tmp_path_factory.mktemp("exports")
    return {
        "roboflow_yolo": write_roboflow_yolo(base / "roboflow_yolo", seed=1),
        "ultralytics_yolo": write_roboflow_yolo(base / "ultralytics_yolo", seed=2, names_as_dict=True),
        "coco": write_coco(base / "coco", seed=3),
        "voc": write_voc(base / "voc", seed=4),
    }


def copy(export: Export, tmp_path: Path) -> Export:
    """The export in a folder of its own, to spoil."""
    return dataclasses.replace(export, input_dir=Path(shutil.copytree(export.input_dir, tmp_path / "copy")))


def read(export: Export):
    return read_boxes(export.input_dir / export.labels, "auto", export.input_dir)


def by_path(found) -> dict:
    return {r.path: r for r in found.records}


def boxes_of(found) -> dict[str, list]:
    return {r.path: [(label, tuple(box)) for label, box in zip(r.labels, r.boxes, strict=True)] for r in found.records}


def expected_boxes(export: Export) -> dict[str, list]:
    return {
        path: [(label, tuple(float(v) for v in box)) for label, box in boxes] for path, boxes in export.boxes.items()
    }


def label_file(export: Export, image: str) -> Path:
    """The YOLO label file of an image of a Roboflow export."""
    return (export.input_dir / image.replace("/images/", "/labels/")).with_suffix(".txt")


def write_tiny_yolo(folder: Path, names: str, rows: str, size=(200, 100), exif=None) -> Path:
    """data.yaml + images/a.jpg + labels/a.txt; returns data.yaml."""
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    Image.new("RGB", size, (90, 120, 60)).save(folder / "images" / "a.jpg", exif=exif or Image.Exif())
    (folder / "labels" / "a.txt").write_text(rows)
    (folder / "data.yaml").write_text(f"train: images\nnames: {names}\n")
    return folder / "data.yaml"


# ---------------------------------------------------------------- every format


@pytest.mark.parametrize("name", FORMAT)
def test_auto_detection_names_the_format(exports, name):
    export = exports[name]
    assert detect_format(export.input_dir / export.labels) == FORMAT[name]


def test_auto_detection_of_single_files(exports):
    coco, voc, yolo = exports["coco"], exports["voc"], exports["roboflow_yolo"]
    files = [
        coco.input_dir / "roboflow_coco" / "train" / "_annotations.coco.json",
        next((voc.input_dir / "VOC2012" / "Annotations").glob("*.xml")),
        yolo.input_dir / "roboflow_yolo" / "data.yaml",
    ]
    assert [detect_format(f) for f in files] == ["coco", "voc", "yolo"]


def test_a_folder_without_box_labels_is_one_error_naming_it(tmp_path):
    (tmp_path / "notes.txt").write_text("no labels here\n")
    with pytest.raises(InputFileError, match=str(tmp_path)):
        detect_format(tmp_path)


@pytest.mark.parametrize("name", FORMAT)
def test_every_box_is_read_pixel_exact(exports, name):
    assert boxes_of(read(exports[name])) == expected_boxes(exports[name])


@pytest.mark.parametrize("name", FORMAT)
def test_classes_keep_their_odd_names_in_the_exports_order(exports, name):
    assert read(exports[name]).classes == list(exports[name].classes)


@pytest.mark.parametrize("name", FORMAT)
def test_roboflow_copies_of_one_photo_share_a_group(exports, name):
    assert {r.path: r.group for r in read(exports[name]).records} == exports[name].groups


@pytest.mark.parametrize("name", FORMAT)
def test_the_exports_own_split_is_kept_as_a_tag(exports, name):
    assert {r.path: r.tags.get("source_split") for r in read(exports[name]).records} == exports[name].source_split


@pytest.mark.parametrize("name", FORMAT)
def test_a_clean_export_has_no_problems(exports, name):
    assert read(exports[name]).problems == []


@pytest.mark.parametrize("name", FORMAT)
def test_images_without_boxes_are_negatives(exports, name):
    found = read(exports[name])
    assert sorted(r.path for r in found.records if not r.boxes) == list(exports[name].negatives)


# ---------------------------------------------------------------- YOLO


def test_yolo_rows_in_pixels_hand_computed(tmp_path):
    """200x100 image. Box row: centre (0.5, 0.25), size (0.2, 0.3) → x 100±20, y 25±15.
    Polygon row (0.1, 0.2) (0.4, 0.2) (0.25, 0.9) → x 20..80, y 20..90."""
    data = write_tiny_yolo(tmp_path, "[a, b, c]", "2 0.5 0.25 0.2 0.3\n1 0.1 0.2 0.4 0.2 0.25 0.9\n")
    (record,) = read_boxes(data, "auto", tmp_path).records
    assert list(zip(record.labels, record.boxes, strict=True)) == [("c", [80, 10, 120, 40]), ("b", [20, 20, 80, 90])]


def test_yolo_polygon_rows_become_their_bounding_boxes(exports):
    """supervision 0.31.2: from_yolo also turns every polygon row into a full-image
    boolean mask and keeps them all: 300 images of 640x640 with three polygons each
    raised its peak memory by 700 MB (and took 10x longer), so a polygon export of 50k
    images would not fit in memory. We keep the bounding box only."""
    export = exports["roboflow_yolo"]
    polygons = export.notes["polygon_images"]
    assert polygons and {p: boxes_of(read(export))[p] for p in polygons} == {
        p: expected_boxes(export)[p] for p in polygons
    }


def test_yolo_splits_and_image_lists_come_from_data_yaml(exports):
    """supervision 0.31.2: from_yolo reads the one images folder it is given; data.yaml's
    train/val/test entries (Roboflow's ../train/images, a list of folders, a .txt list of
    image paths) are not read, and given the export's folder it finds no image at all."""
    export = exports["ultralytics_yolo"]
    listed = (export.input_dir / "ultralytics_yolo" / "test.txt").read_text().split()
    tests = sorted(r.path for r in read(export).records if r.tags["source_split"] == "test")
    assert listed and tests == sorted(f"ultralytics_yolo/{p.removeprefix('./')}" for p in listed)


def test_yolo_image_without_label_file_is_a_negative_with_a_warning(exports):
    export = exports["roboflow_yolo"]
    found = read(export)
    (image,) = export.unlabelled
    assert by_path(found)[image].boxes == [] and any(Path(image).name in w for w in found.warnings)


def test_yolo_empty_label_file_is_a_negative_without_a_warning(exports):
    export = exports["roboflow_yolo"]
    found = read(export)
    image = export.notes["empty_label_file"]
    assert by_path(found)[image].boxes == [] and not any(Path(image).name in w for w in found.warnings)


def test_yolo_bad_rows_are_one_problem_per_file_and_the_rest_is_read(exports, tmp_path):
    """supervision 0.31.2: from_yolo raises ValueError at the first malformed row or
    class id outside names, so nothing is read and no other problem is reported."""
    export = copy(exports["roboflow_yolo"], tmp_path)
    spoilt = [p for p in sorted(export.boxes) if export.boxes[p] and p not in export.notes["polygon_images"]][:3]
    for image, row in zip(spoilt, ("9 0.5 0.5 0.1 0.1", "0 0.5 0.5", "0 0.5 0.5 0.1 0.1 0.7"), strict=True):
        with open(label_file(export, image), "a") as fh:
            fh.write(row + "\n")
    found = read(export)
    named = sorted(line.split(":")[0] for line in found.problems)
    assert (
        named == sorted(label_file(export, p).relative_to(export.input_dir).as_posix() for p in spoilt)
        and len(found.records) == len(export.boxes) - 3
    )


def test_yolo_values_outside_0_1_are_a_problem(exports, tmp_path):
    """supervision 0.31.2: from_yolo accepts them silently (a row centred at x 1.5 on a
    320 px image became a box at x 464-496)."""
    export = copy(exports["roboflow_yolo"], tmp_path)
    image = export.notes["check"][0]
    with open(label_file(export, image), "a") as fh:
        fh.write("0 1.5 0.5 0.1 0.1\n")
    (problem,) = read(export).problems
    assert (
        problem.startswith(label_file(export, image).relative_to(export.input_dir).as_posix()) and "[0, 1]" in problem
    )


def test_yolo_names_yaml_reads_as_booleans_are_a_problem(tmp_path):
    data = write_tiny_yolo(tmp_path, "[yes, Ant]", "1 0.5 0.5 0.2 0.2\n")
    assert any("names[0]" in p and "quote" in p for p in read_boxes(data, "yolo", tmp_path).problems)


def test_yolo_exif_turned_image_with_boxes_is_a_problem(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° when shown
    data = write_tiny_yolo(tmp_path, "[a]", "0 0.5 0.5 0.2 0.2\n", exif=exif)
    assert any("EXIF orientation 6" in p for p in read_boxes(data, "yolo", tmp_path).problems)


def test_truncated_image_is_a_validation_problem_not_a_crash(exports, tmp_path):
    export = copy(exports["roboflow_yolo"], tmp_path)
    image = export.notes["check"][0]
    truncate_file(export.input_dir / image)
    with pytest.raises(ValidationFailed) as info:
        validate_detection(
            DetectorValidateConfig(
                root=export.input_dir, out_dir=tmp_path / "out", labels=export.input_dir / export.labels
            )
        )
    assert any(line.startswith(f"{image}: truncated image") for line in info.value.problems)


# ---------------------------------------------------------------- COCO


def test_coco_supercategory_placeholder_is_not_a_class(exports):
    """supervision 0.31.2: from_coco makes Roboflow's category 0 "insects" (the others'
    supercategory, used by no annotation) the first class, so a detector would get a
    class that has no box."""
    assert "insects" not in read(exports["coco"]).classes


def test_coco_unknown_category_is_a_problem_naming_file_and_annotation(exports, tmp_path):
    """supervision 0.31.2: from_coco raises ValueError ("Detections class_id must be a
    subset of source_to_target_mapping keys") for the whole file, naming neither the file
    nor the annotation."""
    export = copy(exports["coco"], tmp_path)
    path = export.input_dir / "roboflow_coco" / "train" / "_annotations.coco.json"
    coco = json.loads(path.read_text())
    coco["annotations"][4]["category_id"] = 99
    path.write_text(json.dumps(coco))
    assert read(export).problems == [
        f"roboflow_coco/train/_annotations.coco.json: annotation {coco['annotations'][4]['id']}: category_id 99 "
        "is not among categories (3, 7, 8, 11, 12, 15)"
    ]


def test_coco_missing_image_is_a_problem(exports, tmp_path):
    """supervision 0.31.2: from_coco keeps the path of an image that does not exist; it
    fails only when the image is loaded."""
    export = copy(exports["coco"], tmp_path)
    path = export.input_dir / "roboflow_coco" / "valid" / "_annotations.coco.json"
    coco = json.loads(path.read_text())
    (export.input_dir / "roboflow_coco" / "valid" / coco["images"][0]["file_name"]).unlink()
    (problem,) = read(export).problems
    assert problem.startswith("roboflow_coco/valid/_annotations.coco.json: image 0") and "not found" in problem


def test_coco_crowd_annotations_are_tags_not_training_targets(exports):
    export = exports["coco"]
    records = by_path(read(export))
    crowd = {p: [(c["label"], tuple(c["box"])) for c in records[p].tags.get("crowd", [])] for p in records}
    assert {p: c for p, c in crowd.items() if c} == {
        p: [(label, tuple(float(v) for v in box)) for label, box in boxes] for p, boxes in export.notes["crowd"].items()
    }


# ---------------------------------------------------------------- Pascal VOC


def test_voc_difficult_and_truncated_boxes_train_and_are_tagged(exports):
    """supervision 0.31.2: from_pascal_voc drops <difficult> and <truncated>."""
    export = exports["voc"]
    records = by_path(read(export))
    tagged = {
        flag: {p: [(b["label"], tuple(b["box"])) for b in r.tags[flag]] for p, r in records.items() if flag in r.tags}
        for flag in ("difficult", "truncated")
    }
    wanted = {flag: expected_boxes(dataclasses.replace(export, boxes=export.notes[flag])) for flag in tagged}
    assert wanted["difficult"] and wanted["truncated"] and tagged == wanted


def test_voc_xml_that_does_not_parse_is_one_problem_naming_it(exports, tmp_path):
    """supervision 0.31.2: from_pascal_voc raises ParseError and reads nothing."""
    export = copy(exports["voc"], tmp_path)
    xml = sorted((export.input_dir / "VOC2012" / "Annotations").glob("*.xml"))[3]
    xml.write_text("<annotation><object><name>Ant</name>")
    found = read(export)
    assert [p.split(":")[0] for p in found.problems] == [f"VOC2012/Annotations/{xml.name}"] and len(
        found.records
    ) == len(export.boxes) - 1


def test_voc_filename_element_finds_the_image_of_a_renamed_xml(exports, tmp_path):
    """supervision 0.31.2: from_pascal_voc pairs an image only with <its stem>.xml, so the
    image of an XML with another name silently becomes a negative."""
    export = copy(exports["voc"], tmp_path)
    image = export.notes["check"][0]
    xml = export.input_dir / "VOC2012" / "Annotations" / f"{Path(image).stem}.xml"
    xml.rename(xml.with_name("renamed by a tool.xml"))
    assert boxes_of(read(export))[image] == expected_boxes(export)[image]


def test_voc_image_without_xml_is_a_negative_with_a_warning(exports):
    export = exports["voc"]
    found = read(export)
    (image,) = export.unlabelled
    assert by_path(found)[image].boxes == [] and any(Path(image).name in w for w in found.warnings)


# ---------------------------------------------------------------- names, CLI


def test_species_folder_names_made_on_macos_match_the_box_labels(tmp_path):
    decomposed = unicodedata.normalize("NFD", CLASSES[0])  # how macOS stores the folder name
    (tmp_path / "species" / decomposed).mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "species" / decomposed / "a.jpg")
    (record,) = read_species_folders(tmp_path / "species", tmp_path)
    assert record.species == CLASSES[0]


@pytest.mark.parametrize("name", FORMAT)
def test_cli_validate_writes_a_manifest_of_every_image(exports, name, run_cli, tmp_path):
    export = exports[name]
    root = export.input_dir
    done = run_cli(
        "detector", "validate", "--root", root, "--labels", root / export.labels, "--format", "auto", "--out", tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["path"] for r in rows) == list(export.images)


def test_odd_names_survive_into_the_manifest_dataset_json_and_labels_json(exports, tmp_path):
    """--class takes names with a comma; manifest labels, dataset.json classes and the
    trained model's labels.json keep every name as written ("Ant" and "ant" apart)."""
    from insectml.cli import main

    export = exports["roboflow_yolo"]
    root, out = export.input_dir, tmp_path / "validated"
    classes = [arg for c in CLASSES for arg in ("--class", c)]
    assert main(["detector", "validate", "--root", str(root), "--labels", str(root / export.labels), *classes]
                + ["--max-images", "16", "--out", str(out)]) == 0  # fmt: skip
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    common = ["--manifest", str(out / "manifest.jsonl"), "--dataset", str(out / "dataset.json"), "--root", str(root)]
    train = ["detector", "train", *common, "--epochs", "1", "--batch-size", "4", "--device", "cpu"]
    assert main([*train, "--out", str(tmp_path / "model")]) == 0
    seen = Counter(label for row in manifest for label in row["labels"])
    names = (
        sorted(set(seen) - set(CLASSES)),
        json.loads((out / "dataset.json").read_text(encoding="utf-8"))["classes"],
        json.loads((tmp_path / "model" / "labels.json").read_text(encoding="utf-8")),
    )
    assert len(seen) >= 3 and names == ([], list(CLASSES), list(CLASSES))


def test_the_labels_are_found_below_the_input_folder(tmp_path, run_cli):
    """--detector_input may hold the export directly or one folder down beside the species
    folders; a missing species folder means no species images (a warning), not an error."""
    from insectml.detector.formats import locate_labels

    export = write_coco(tmp_path / "in")
    assert detect_format(locate_labels(export.input_dir)) == "coco"
    out = tmp_path / "out"
    done = run_cli(
        "detector", "validate", "--root", export.input_dir, "--labels", export.input_dir,
        "--species", export.input_dir / "species", "--out", out,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "validation_report.json").read_text())
    assert any("no species image folder" in w for w in report["warnings"])


def test_several_exports_below_the_input_folder_are_named(tmp_path):
    from insectml.detector.formats import locate_labels

    for name in ("bees_sly", "wasps_sly"):  # two Supervisely projects side by side
        (tmp_path / "in" / name).mkdir(parents=True)
        (tmp_path / "in" / name / "meta.json").write_text('{"classes": [], "tags": []}')
    with pytest.raises(InputFileError, match=r"several box-label exports found \(bees_sly, wasps_sly\)"):
        locate_labels(tmp_path / "in")


def test_reading_supervisely_leaves_pil_and_tqdm_as_they_were(tool_env, repo_root):
    """The SDK's import switches off PIL's decompression-bomb limit and swaps tqdm.tqdm for a
    class whose update() needs an argument; validation in the same process needs both."""
    import subprocess
    import sys

    code = (
        "import tqdm; from PIL import Image; before = (Image.MAX_IMAGE_PIXELS, tqdm.tqdm)\n"
        "from insectml.detector.supervisely_io import _import_supervisely; _import_supervisely()\n"
        "assert (Image.MAX_IMAGE_PIXELS, tqdm.tqdm) == before, (Image.MAX_IMAGE_PIXELS, tqdm.tqdm)\n"
    )
    env = {**tool_env, "PYTHONPATH": str(repo_root / "lib")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
