import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from insectml.errors import InputFileError, ValidationFailed
from insectml.wingbeat.labels import read_labels
from insectml.wingbeat.validate import ValidateConfig, validate_and_split


def copy_dataset(src, dst):
    shutil.copytree(src, dst)
    return dst


def rewrite_labels(root, edit):
    path = root / "labels.csv"
    rows = list(csv.DictReader(path.open()))
    rows = edit(rows)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)


def config(root, out):
    return ValidateConfig(labels=root / "labels.csv", data_dir=root, out_dir=out, classes=root / "classes.txt")


def test_clean_dataset_gives_manifest_and_dataset(tiny_wingbeat, tmp_path):
    dataset = validate_and_split(config(tiny_wingbeat, tmp_path))
    rows = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == dataset["n_samples"] == 70
    assert {r["split"] for r in rows} == {"train", "val", "test"}


def test_every_problem_is_reported_at_once(tiny_wingbeat, tmp_path):
    root = copy_dataset(tiny_wingbeat, tmp_path / "data")
    rows = list(csv.DictReader((root / "labels.csv").open()))
    sf.write(root / rows[0]["path"], np.array([0.1, np.nan] * 200, dtype=np.float32), 8000, subtype="FLOAT")
    (root / rows[1]["path"]).write_bytes(b"")

    def edit(rows):
        rows[2]["species"] = "aedes_aegpyti"
        rows[3]["path"] = "recordings/missing.wav"
        return rows

    rewrite_labels(root, edit)
    with pytest.raises(ValidationFailed) as info:
        validate_and_split(config(root, tmp_path / "out"))
    problems = info.value.problems
    assert len(problems) == 4
    report = json.loads((tmp_path / "out" / "validation_report.json").read_text())
    assert report["problems"] == problems


def test_missing_column_names_it(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("path,event\na.wav,e1\n")
    with pytest.raises(InputFileError, match="missing column.*'species'"):
        read_labels(path, "event")


def copy_recording(root, same_species):
    """Overwrite one recording with another of the same (or another) species from another
    event; returns both rows."""
    rows = list(csv.DictReader((root / "labels.csv").open()))
    a = rows[0]
    b = next(r for r in rows if (r["species"] == a["species"]) == same_species and r["event"] != a["event"])
    shutil.copy(root / a["path"], root / b["path"])
    return a, b


def test_identical_recordings_merge_their_events(tiny_wingbeat, tmp_path):
    root = copy_dataset(tiny_wingbeat, tmp_path / "data")
    a, b = copy_recording(root, same_species=True)
    dataset = validate_and_split(config(root, tmp_path / "out"))
    rows = {r["path"]: r for r in map(json.loads, (tmp_path / "out" / "manifest.jsonl").read_text().splitlines())}
    merged = min(a["event"], b["event"])
    assert rows[a["path"]]["group"] == rows[b["path"]]["group"] == merged
    assert {r["split"] for r in rows.values() if r["group"] == merged} == {rows[a["path"]]["split"]}
    assert dataset["split"]["groups_merged"] == 1


def test_identical_recordings_are_refused_under_error(tiny_wingbeat, tmp_path):
    root = copy_dataset(tiny_wingbeat, tmp_path / "data")
    copy_recording(root, same_species=True)
    with pytest.raises(ValidationFailed, match="identical to .* in another group"):
        validate_and_split(dataclasses.replace(config(root, tmp_path / "out"), duplicates="error"))


def test_identical_recordings_of_two_species_are_a_label_conflict(tiny_wingbeat, tmp_path):
    root = copy_dataset(tiny_wingbeat, tmp_path / "data")
    copy_recording(root, same_species=False)
    with pytest.raises(ValidationFailed, match="identical content to .* \\(label conflict\\)"):
        validate_and_split(config(root, tmp_path / "out"))


def test_folder_layout_groups_by_path_and_resamples(tmp_path):
    from insectml.data.demo import SPECIES, _event_background, synthesise

    rng = np.random.default_rng(0)
    for species in list(SPECIES)[:3]:
        for session in range(8):
            for k in range(3):
                folder = tmp_path / "tree" / species / f"session{session}"
                folder.mkdir(parents=True, exist_ok=True)
                audio = synthesise(SPECIES[species], _event_background(session), rng)
                rate = 16000 if k == 0 else 8000
                if rate == 16000:
                    audio = np.repeat(audio, 2)
                sf.write(folder / f"{species}_{session}_{k}.wav", audio, rate)
    cfg = ValidateConfig(
        labels=None,
        data_dir=tmp_path / "tree",
        out_dir=tmp_path / "out",
        classes=None,
        group_by="path:1",
        resample=True,
    )
    dataset = validate_and_split(cfg)
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert dataset["n_samples"] == 72 and {r["group"] for r in rows} == {f"session{i}" for i in range(8)}


def test_class_with_too_few_recordings_is_named(tiny_wingbeat, tmp_path):
    root = copy_dataset(tiny_wingbeat, tmp_path / "data")
    rewrite_labels(
        root,
        lambda rows: (
            [r for r in rows if r["species"] != "culex_pipiens"]
            + [r for r in rows if r["species"] == "culex_pipiens"][:2]
        ),
    )
    from insectml.errors import ConfigError

    with pytest.raises(ConfigError, match="class 'culex_pipiens' has 2 recording"):
        validate_and_split(config(root, tmp_path / "out"))
