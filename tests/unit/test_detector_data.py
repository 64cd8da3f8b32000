"""Detection data: the demo generator, the Supervisely reader and validation."""

import hashlib
import json
import shutil

import pytest
from insectml.data.detector_demo import OPENCLIPART, TUXPAINT, write_detector_demo
from insectml.detector.supervisely_io import read_supervisely
from insectml.detector.validate import DetectorValidateConfig, validate_detection
from insectml.errors import ValidationFailed
from PIL import Image


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not OPENCLIPART.is_dir() or not TUXPAINT.is_dir():
        pytest.skip("needs the Debian packages openclipart-png and tuxpaint-stamps-default (make setup, as root)")
    return write_detector_demo(tmp_path_factory.mktemp("det") / "detector", n_box_images=30, n_species_images=6, seed=3)


def digest(root):
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def copy(demo, tmp_path):
    return shutil.copytree(demo, tmp_path / "detector")


def ann_path(root, i):
    return root / "insects_sly" / "insects" / "ann" / f"insects_{i:04d}.jpg.json"


def boxed_index(root):
    return next(i for i in range(3, 30) if json.loads(ann_path(root, i).read_text())["objects"])


def config(root, **kw):
    return DetectorValidateConfig(
        root=root, out_dir=root.parent / "out", labels=root / "insects_sly", species=root / "species", **kw
    )


def test_demo_is_byte_identical_for_a_seed(demo, tmp_path):
    again = write_detector_demo(tmp_path / "again", n_box_images=30, n_species_images=6, seed=3)
    assert digest(demo) == digest(again)


def test_reader_gives_boxes_inside_the_image_with_known_classes(demo):
    classes, records, problems = read_supervisely(demo / "insects_sly", demo)
    assert not problems and len(records) == 30 and "stink_bug" in classes
    boxes = [(b, label) for r in records for b, label in zip(r.boxes, r.labels, strict=True)]
    assert boxes and all(0 <= b[0] < b[2] <= 320 and 0 <= b[1] < b[3] <= 320 for b, _ in boxes)
    assert all(r.group.startswith("scene") for r in records)


def test_polygon_is_reduced_to_its_bounding_box(demo, tmp_path):
    root = copy(demo, tmp_path)
    meta = json.loads((root / "insects_sly" / "meta.json").read_text())
    meta["classes"].append({"title": "moth", "shape": "polygon", "color": "#123456"})
    (root / "insects_sly" / "meta.json").write_text(json.dumps(meta))
    ann = json.loads(ann_path(root, 0).read_text())
    ann["objects"].append(
        {
            "classTitle": "moth",
            "geometryType": "polygon",
            "tags": [],
            "points": {"exterior": [[10, 20], [60, 25], [40, 80]], "interior": []},
        }
    )
    ann_path(root, 0).write_text(json.dumps(ann))
    _, records, _ = read_supervisely(root / "insects_sly", root)
    record = next(r for r in records if r.path.endswith("insects_0000.jpg"))
    assert record.boxes[-1] == [10, 20, 61, 81] and record.labels[-1] == "moth"


def test_clean_demo_validates_and_splits_by_group(demo, tmp_path):
    root = copy(demo, tmp_path)
    dataset = validate_detection(config(root))
    rows = [json.loads(line) for line in (root.parent / "out" / "manifest.jsonl").read_text().splitlines()]
    sides = {}
    for row in rows:
        if row["source"] == "boxes":
            sides.setdefault(row["group"], set()).add(row["split"])
    assert dataset["n_images"] == 36 and all(len(s) == 1 for s in sides.values())
    assert {r["split"] for r in rows if r["source"] == "species"} == {"unlabelled"}


def test_every_problem_is_reported_at_once(demo, tmp_path):
    root = copy(demo, tmp_path)
    img = root / "insects_sly" / "insects" / "img"
    data = (img / "insects_0001.jpg").read_bytes()
    (img / "insects_0001.jpg").write_bytes(data[: len(data) // 2])  # truncated
    (img / "insects_0002.jpg").write_bytes(b"not an image")
    i = boxed_index(root)
    ann = json.loads(ann_path(root, i).read_text())
    ann["objects"][0]["points"]["exterior"] = [[300, 300], [400, 400]]
    ann_path(root, i).write_text(json.dumps(ann))
    (root / "species" / "bee" / "bee_0000.jpg").write_bytes(b"")
    with pytest.raises(ValidationFailed) as info:
        validate_detection(config(root, box_policy="reject"))
    text = "\n".join(info.value.problems)
    assert "truncated image" in text and "not a readable image" in text
    assert "lies outside the 320x320 image" in text and "empty file" in text
    assert len(info.value.problems) == 4


def test_clip_policy_clips_and_says_so(demo, tmp_path):
    root = copy(demo, tmp_path)
    i = boxed_index(root)
    ann = json.loads(ann_path(root, i).read_text())
    ann["objects"][0]["points"]["exterior"] = [[300, 300], [400, 400]]
    ann["objects"].append(
        {
            "classTitle": "bee",
            "geometryType": "rectangle",
            "tags": [],
            "points": {"exterior": [[330, 330], [340, 340]], "interior": []},
        }
    )
    ann_path(root, i).write_text(json.dumps(ann))
    validate_detection(config(root))
    report = json.loads((root.parent / "out" / "validation_report.json").read_text())
    assert any("clipped to the 320x320 image" in w for w in report["warnings"])
    assert any("zero area after clipping" in w for w in report["warnings"])


def test_unknown_class_and_cross_group_duplicate_are_problems_under_error(demo, tmp_path):
    root = copy(demo, tmp_path)
    i = boxed_index(root)
    meta = json.loads((root / "insects_sly" / "meta.json").read_text())
    meta["classes"].append({"title": "beetle", "shape": "rectangle", "color": "#654321"})
    (root / "insects_sly" / "meta.json").write_text(json.dumps(meta))
    ann = json.loads(ann_path(root, i).read_text())
    ann["objects"][0]["classTitle"] = "beetle"
    ann_path(root, i).write_text(json.dumps(ann))
    shutil.copy(root / "species" / "stink_bug" / "stink_bug_0000.jpg", root / "species" / "stink_bug" / "copy.jpg")
    with pytest.raises(ValidationFailed) as info:
        validate_detection(
            config(
                root,
                classes=tuple(c for c in meta["classes"] and [c["title"] for c in meta["classes"]] if c != "beetle"),
                duplicates="error",
            )
        )
    text = "\n".join(info.value.problems)
    assert "unknown class(es) beetle" in text
    assert any(
        "identical to" in line and "copy.jpg" in line and "in another group" in line for line in text.splitlines()
    )


def boxed_in_two_groups(root):
    """Two box-labelled images of different groups: (index, group) each."""
    seen = {}
    for i in range(30):
        ann = json.loads(ann_path(root, i).read_text())
        group = next(t["value"] for t in ann["tags"] if t["name"] == "group")
        if ann["objects"] and group not in seen.values():
            seen[i] = group
        if len(seen) == 2:
            return list(seen.items())
    raise AssertionError("the demo has no two groups of box-labelled images")


def test_cross_group_duplicates_merge_their_groups_onto_one_side(demo, tmp_path):
    root = copy(demo, tmp_path)
    (a, group_a), (b, group_b) = boxed_in_two_groups(root)
    img = root / "insects_sly" / "insects" / "img"
    (img / f"insects_{b:04d}.jpg").write_bytes((img / f"insects_{a:04d}.jpg").read_bytes())
    dataset = validate_detection(config(root))
    rows = [json.loads(line) for line in (root.parent / "out" / "manifest.jsonl").read_text().splitlines()]
    merged = min(group_a, group_b)
    members = [r for r in rows if r["group"] == merged]
    assert {r["path"] for r in members} >= {f"insects_sly/insects/img/insects_{k:04d}.jpg" for k in (a, b)}
    assert len({r["split"] for r in members}) == 1 and dataset["split"]["groups_merged"] >= 1
    report = json.loads((root.parent / "out" / "validation_report.json").read_text())
    assert any(
        f"groups {merged}, {max(group_a, group_b)} merged" in w and f"insects_{b:04d}.jpg: identical to" in w
        for w in report["warnings"]
    )


def test_species_copy_of_a_box_labelled_image_is_dropped(demo, tmp_path):
    root = copy(demo, tmp_path)
    (a, _), _ = boxed_in_two_groups(root)
    shutil.copy(
        root / "insects_sly" / "insects" / "img" / f"insects_{a:04d}.jpg", root / "species" / "bee" / "twin.jpg"
    )
    dataset = validate_detection(config(root))
    rows = [json.loads(line) for line in (root.parent / "out" / "manifest.jsonl").read_text().splitlines()]
    assert "species/bee/twin.jpg" not in {r["path"] for r in rows} and dataset["split"]["duplicates_dropped"] == 1


def test_cli_bad_project_is_one_line_exit_2(run_cli, tmp_path):
    (tmp_path / "proj").mkdir()
    done = run_cli("detector", "validate", "--root", tmp_path, "--supervisely", tmp_path / "proj", "--out", tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "not a Supervisely project (no meta.json)" in done.stderr.strip().splitlines()[-1]


def test_images_are_real_jpegs(demo):
    with Image.open(next((demo / "species").rglob("*.jpg"))) as image:
        assert image.format == "JPEG" and image.size == (320, 320)
