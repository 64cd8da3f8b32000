"""The image families' validation scattered as chunks over tasks and gathered gives the
files of one run: list → check each chunk of the candidates → gather (detector and
few-shot, as tests/unit/test_chunks.py for wingbeat)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from insectml.detector import validate as dv
from insectml.errors import InputFileError, ValidationFailed
from insectml.fewshot import validate as fv
from PIL import Image

from tests.fixtures.exports import truncate_file, write_coco
from tests.unit.test_chunks import cut

OUTPUTS = ("manifest.jsonl", "dataset.json", "validation_report.json")


def in_chunks(module, cfg, size: int) -> dict:
    """``module``'s three steps into ``cfg.out_dir``, the candidates cut into chunks of
    ``size``, the checked chunks gathered in reverse order."""
    out = cfg.out_dir
    module.list_candidates(replace(cfg, out_dir=out / "list"))
    checked = []
    for i, chunk in enumerate(cut(out / "list" / module.CANDIDATES, size, out / "chunks"), start=1):
        module.check_candidates(chunk, cfg, out / f"checked_{i}.jsonl")
        checked.append(out / f"checked_{i}.jsonl")
    assert len(checked) > 2
    return module.gather(out / "list" / module.LISTING, checked[::-1], cfg)


# ---------------------------------------------------------------- detector


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    return write_coco(tmp_path_factory.mktemp("coco"), seed=3, n_species=6)


def detector_config(export, out: Path, **settings) -> dv.DetectorValidateConfig:
    root = export.input_dir
    species = root / export.species if export.species else None
    return dv.DetectorValidateConfig(root=root, out_dir=out, labels=root / export.labels, species=species, **settings)


@pytest.mark.parametrize("size", [3, 7])
def test_detector_validation_in_chunks_writes_the_same_bytes(coco, tmp_path, size):
    dv.validate_detection(detector_config(coco, tmp_path / "one"))
    in_chunks(dv, detector_config(coco, tmp_path / "chunked"), size)
    for name in OUTPUTS:
        assert (tmp_path / "chunked" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_detector_records_round_trip_through_the_candidates(coco, tmp_path):
    cfg = detector_config(coco, tmp_path)
    dv.list_candidates(cfg)
    rows = [json.loads(line) for line in (tmp_path / dv.CANDIDATES).read_text().splitlines()]
    records = [dv.ImageRecord(**{k: v for k, v in row.items() if k != "n"}) for row in rows]
    assert {r.path for r in records} == set(coco.images) | {r.path for r in records if r.species}


def test_detector_problems_of_two_chunks_are_reported_at_once(coco, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(coco.input_dir, root)
    export = replace(coco, input_dir=root)
    cfg = detector_config(export, tmp_path / "out")
    dv.list_candidates(replace(cfg, out_dir=tmp_path / "probe"))
    paths = [json.loads(line)["path"] for line in (tmp_path / "probe" / dv.CANDIDATES).read_text().splitlines()]
    broken = [paths[1], paths[-2]]  # in the first chunk and in the last
    for path in broken:
        truncate_file(root / path)
    with pytest.raises(ValidationFailed) as info:
        in_chunks(dv, cfg, 5)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["problems"] == info.value.problems and [p.split(":")[0] for p in report["problems"]] == broken


def test_detector_gather_refuses_a_missing_chunk(coco, tmp_path):
    cfg = detector_config(coco, tmp_path)
    dv.list_candidates(replace(cfg, out_dir=tmp_path / "list"))
    first, *rest = cut(tmp_path / "list" / dv.CANDIDATES, 5, tmp_path / "chunks")
    dv.check_candidates(rest[0], cfg, tmp_path / "checked.jsonl")
    with pytest.raises(InputFileError, match="missing or given twice"):
        dv.gather(tmp_path / "list" / dv.LISTING, [tmp_path / "checked.jsonl"], cfg)


def test_detector_cli_runs_the_three_steps(coco, run_cli, tmp_path):
    cli = run_cli
    root = coco.input_dir
    common = ["--root", str(root)]
    r = cli("detector", "validate", "--list-only", *common, "--labels", str(root / coco.labels), "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    r = cli("detector", "validate", "--check", str(tmp_path / dv.CANDIDATES), *common, "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    r = cli(
        "detector",
        "validate",
        "--gather",
        str(tmp_path / dv.CHECKED),
        "--listing",
        str(tmp_path / dv.LISTING),
        "--out",
        str(tmp_path / "gathered"),
    )
    assert r.returncode == 0, r.stderr
    r = cli("detector", "validate", *common, "--labels", str(root / coco.labels), "--out", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "gathered" / "manifest.jsonl").read_bytes() == (tmp_path / "one" / "manifest.jsonl").read_bytes()


# ---------------------------------------------------------------- few-shot


@pytest.fixture(scope="module")
def fewshot_data(tmp_path_factory) -> Path:
    """12 classes of 3-4 noise images (each its own dHash), one exact copy within a class."""
    root = tmp_path_factory.mktemp("fewshot")
    rng = np.random.default_rng(0)
    for c in range(12):
        folder = root / "images" / f"class_{c:02d}"
        folder.mkdir(parents=True)
        for i in range(3 + c % 2):
            pixels = rng.integers(0, 256, size=(24, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"img_{i}.png")
    (root / "images/class_03/copy.png").write_bytes((root / "images/class_03/img_0.png").read_bytes())
    return root


def fewshot_config(root: Path, out: Path, **settings) -> fv.FewshotValidateConfig:
    return fv.FewshotValidateConfig(root=root, out_dir=out, images=root / "images", seed=2, **settings)


@pytest.mark.parametrize("size", [3, 7])
def test_fewshot_validation_in_chunks_writes_the_same_bytes(fewshot_data, tmp_path, size):
    dataset = fv.validate_fewshot(fewshot_config(fewshot_data, tmp_path / "one"))
    assert dataset["split"]["groups_merged"] == 1
    in_chunks(fv, fewshot_config(fewshot_data, tmp_path / "chunked"), size)
    for name in OUTPUTS:
        assert (tmp_path / "chunked" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


def test_fewshot_max_classes_lists_only_the_kept_classes_and_splits_as_before(fewshot_data, tmp_path):
    """--max-classes applies in the list step (the dropped classes' images are never
    checked), and the split is the one the gather gives when it draws the classes itself."""
    capped = fewshot_config(fewshot_data, tmp_path / "capped", max_classes=10)
    listing = fv.list_candidates(capped)
    kept = {json.loads(line)["label"] for line in (tmp_path / "capped" / fv.CANDIDATES).read_text().splitlines()}
    assert len(kept) == 10 and len(listing["capped_from"]) == 12
    fv.check_candidates(tmp_path / "capped" / fv.CANDIDATES, capped, tmp_path / "capped" / fv.CHECKED)
    fv.gather(tmp_path / "capped" / fv.LISTING, [tmp_path / "capped" / fv.CHECKED], capped)
    # the gather-side draw, from an uncapped listing
    late = fewshot_config(fewshot_data, tmp_path / "late")
    fv.list_candidates(late)
    fv.check_candidates(tmp_path / "late" / fv.CANDIDATES, late, tmp_path / "late" / fv.CHECKED)
    fv.gather(tmp_path / "late" / fv.LISTING, [tmp_path / "late" / fv.CHECKED], replace(late, max_classes=10))
    for name in ("manifest.jsonl", "dataset.json"):
        assert (tmp_path / "capped" / name).read_bytes() == (tmp_path / "late" / name).read_bytes(), name


def test_fewshot_problems_of_two_chunks_are_reported_at_once(fewshot_data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(fewshot_data, root)
    (root / "images/class_00/img_1.png").write_bytes(b"")  # candidate 1: chunk 1
    truncate_file(root / "images/class_11/img_2.png")  # the last class: the last chunk
    with pytest.raises(ValidationFailed) as info:
        in_chunks(fv, fewshot_config(root, tmp_path / "out"), 5)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["problems"] == info.value.problems and [p.split(":")[0] for p in report["problems"]] == [
        "images/class_00/img_1.png",
        "images/class_11/img_2.png",
    ]


def test_fewshot_cli_runs_the_three_steps(fewshot_data, run_cli, tmp_path):
    common = ["--root", fewshot_data, "--seed", 2]
    steps = [
        ["--list-only", "--images", fewshot_data / "images", *common, "--out", tmp_path],
        ["--check", tmp_path / fv.CANDIDATES, *common, "--out", tmp_path],
        ["--gather", tmp_path / fv.CHECKED, "--listing", tmp_path / fv.LISTING, "--seed", 2, "--out", tmp_path / "g"],
        ["--images", fewshot_data / "images", *common, "--out", tmp_path / "one"],
    ]
    for args in steps:
        r = run_cli("fewshot", "validate", *args)
        assert r.returncode == 0, r.stderr
    for name in OUTPUTS:
        assert (tmp_path / "g" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
