"""Validation and features scattered as chunks over tasks and gathered give the files of
one run: list → check each chunk of the candidates → gather; features of each chunk of
the manifest → gather."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from insectml.errors import ConfigError, InputFileError, ValidationFailed
from insectml.wingbeat import validate as v
from insectml.wingbeat.features import extract, gather_features
from insectml.wingbeat.frontend import FrontendConfig


def config(root: Path, out: Path, **settings) -> v.ValidateConfig:
    return v.ValidateConfig(
        labels=root / "labels.csv", data_dir=root, out_dir=out, classes=root / "classes.txt", **settings
    )


def cut(path: Path, size: int, folder: Path) -> list[Path]:
    """``path`` cut into files of ``size`` lines, as Nextflow's splitText(file: true) does."""
    lines = path.read_text().splitlines(keepends=True)
    folder.mkdir(parents=True, exist_ok=True)
    chunks = []
    for i in range(0, len(lines), size):
        chunk = folder / f"{path.stem}.{i // size + 1}{path.suffix}"
        chunk.write_text("".join(lines[i : i + size]))
        chunks.append(chunk)
    return chunks


def validate_in_chunks(root: Path, out: Path, size: int, **settings) -> dict:
    cfg = config(root, out, **settings)
    v.list_candidates(replace(cfg, out_dir=out / "list"))
    checked = []
    for i, chunk in enumerate(cut(out / "list" / v.CANDIDATES, size, out / "chunks"), start=1):
        v.check_candidates(chunk, cfg, out / f"checked_{i}.jsonl")
        checked.append(out / f"checked_{i}.jsonl")
    return v.gather(out / "list" / v.LISTING, checked[::-1], cfg)  # any order


@pytest.fixture(scope="module")
def validated(tiny_wingbeat, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("validated")
    v.validate_and_split(config(tiny_wingbeat, out))
    return out


def test_validation_in_chunks_writes_the_same_bytes(tiny_wingbeat, validated, tmp_path):
    validate_in_chunks(tiny_wingbeat, tmp_path, size=16)
    for name in ("manifest.jsonl", "dataset.json"):
        assert (tmp_path / name).read_bytes() == (validated / name).read_bytes(), name


def test_problems_of_every_chunk_and_of_the_listing_are_reported_at_once(tiny_wingbeat, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_wingbeat, root)
    rows = list(csv.DictReader((root / "labels.csv").open()))
    (root / rows[3]["path"]).write_bytes(b"")  # in chunk 1 of 20
    (root / rows[45]["path"]).write_bytes(b"RIFF")  # in chunk 3
    rows[30]["species"] = "aedes_aegpyti"
    with (root / "labels.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValidationFailed) as info:
        validate_in_chunks(root, tmp_path / "out", size=20)
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["problems"] == info.value.problems and [p.split(":")[0] for p in info.value.problems] == [
        "labels.csv line 32",
        rows[3]["path"],
        rows[45]["path"],
    ]


def test_a_missing_chunk_is_refused_not_skipped(tiny_wingbeat, tmp_path):
    cfg = config(tiny_wingbeat, tmp_path)
    v.list_candidates(cfg)
    chunks = cut(tmp_path / v.CANDIDATES, 30, tmp_path / "chunks")
    for i, chunk in enumerate(chunks):
        v.check_candidates(chunk, cfg, tmp_path / f"checked_{i}.jsonl")
    with pytest.raises(InputFileError, match="missing or given twice"):
        v.gather(tmp_path / v.LISTING, [tmp_path / "checked_0.jsonl", tmp_path / "checked_2.jsonl"], cfg)


def test_gather_refuses_settings_the_candidates_were_not_listed_with(tiny_wingbeat, tmp_path):
    v.list_candidates(config(tiny_wingbeat, tmp_path, max_per_class=10))
    with pytest.raises(ConfigError, match="--max-per-class 0: the candidates were listed with 10"):
        v.gather(tmp_path / v.LISTING, [], config(tiny_wingbeat, tmp_path))


@pytest.fixture(scope="module")
def features(tiny_wingbeat, validated, tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    """The first 36 manifest rows: their features in one file, and in files of 10 rows."""
    folder = tmp_path_factory.mktemp("features")
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join((validated / "manifest.jsonl").read_text().splitlines(keepends=True)[:36]))
    dataset = json.loads((validated / "dataset.json").read_text())

    def features_of(path: Path, out: Path) -> Path:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        extract(rows, tiny_wingbeat, FrontendConfig(), out, dataset)
        return out

    whole = features_of(manifest, folder / "whole.npz")
    parts = [features_of(chunk, folder / f"{chunk.stem}.npz") for chunk in cut(manifest, 10, folder / "chunks")]
    return manifest, whole, parts


def test_features_in_chunks_are_the_same_arrays(features, tmp_path):
    manifest, whole, parts = features
    gather_features(parts[::-1], manifest, tmp_path / "joined.npz")  # any order
    with np.load(whole) as one, np.load(tmp_path / "joined.npz") as joined:
        assert list(joined.files) == list(one.files)
        for key in one.files:
            assert one[key].dtype == joined[key].dtype and np.array_equal(one[key], joined[key]), key


def test_features_gather_refuses_a_missing_part(features, tmp_path):
    manifest, _, parts = features
    with pytest.raises(InputFileError, match="row 11 .* a chunk is missing or repeated"):
        gather_features([parts[0], parts[2], parts[3]], manifest, tmp_path / "joined.npz")
    assert not (tmp_path / "joined.npz").exists()


def test_cli_steps_write_what_one_run_writes(tiny_wingbeat, validated, run_cli, tmp_path):
    common = ("--labels", tiny_wingbeat / "labels.csv")
    done = run_cli("wingbeat", "validate", *common, "--list-only", "--out", tmp_path / "list")
    assert done.returncode == 0, done.stderr
    checked = []
    for i, chunk in enumerate(cut(tmp_path / "list" / v.CANDIDATES, 40, tmp_path / "chunks")):
        out = tmp_path / f"check{i}"
        done = run_cli("wingbeat", "validate", "--check", chunk, "--data", tiny_wingbeat, "--out", out)
        assert done.returncode == 0, done.stderr
        checked.append(out / v.CHECKED)
    listing = tmp_path / "list" / v.LISTING
    done = run_cli("wingbeat", "validate", "--gather", *checked, "--listing", listing, "--out", tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "manifest.jsonl").read_bytes() == (validated / "manifest.jsonl").read_bytes()
