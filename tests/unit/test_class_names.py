"""Class names as they come (spaces, dots, brackets, HTML characters, non-ASCII letters,
names that differ only in case) survive every step of the wingbeat and few-shot families:
validate → features → train → evaluate (report, plots) → compare → package → predict and
the served answer. The steps run through the CLI's entry point on tiny data."""

from __future__ import annotations

import csv
import html
import json
import unicodedata
import zipfile
from pathlib import Path

import numpy as np
import pytest

NAMES = ["Aedes aegypti (L.)", "sp. 1", "Culex [pipiens]", "Anophèles", "Ant", "ant", "Culex <pipiens> & co"]


def cli(*args: object) -> None:
    """One ``insectml`` command, in this process (the steps share their imports)."""
    from insectml.cli import main

    assert main([str(a) for a in args]) == 0


class FakeContext:
    def __init__(self, model_dir: Path) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.statuses: dict[int, tuple[int, str]] = {}

    def set_response_status(self, code, phrase, idx=0):
        self.statuses[idx] = (code, phrase)


def unpack(mar: Path, into: Path) -> Path:
    """The folder MMS makes of an archive: its model_dir."""
    with zipfile.ZipFile(mar) as archive:
        archive.extractall(into)
    return into


# -- wingbeat ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wingbeat_run(tmp_path_factory):
    """Recordings under recordings/<class>/<event>/ (the folders layout) and listed in
    labels.csv (the csv layout); validated both ways, then the folders run goes on through
    features, two models, evaluation, comparison and packaging."""
    import soundfile as sf
    from insectml.data.demo import EVENTS, SAMPLE_RATE, SPECIES, SpeciesProfile, _event_background, synthesise

    root = tmp_path_factory.mktemp("wingbeat names")
    profiles = [
        *SPECIES.values(),
        SpeciesProfile(600.0, 30.0, (1.0, 0.2, 0.6, 0.1)),
        SpeciesProfile(280.0, 25.0, (1.0, 0.9, 0.1, 0.4)),
    ]
    rows = []
    for c, name in enumerate(NAMES):
        for i in range(6):
            rng = np.random.default_rng([c, i])
            event = i
            audio = synthesise(profiles[c], _event_background(event), rng)
            rel = Path("recordings") / name / EVENTS[event] / f"{i}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, audio, SAMPLE_RATE, subtype="PCM_16")
            rows.append({"path": rel.as_posix(), "species": name, "event": EVENTS[event]})
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "species", "event"])
        writer.writeheader()
        writer.writerows(rows)

    out = tmp_path_factory.mktemp("wingbeat run")
    cli("wingbeat", "validate", "--labels", root / "labels.csv", "--out", out / "v_csv")
    data = root / "recordings"
    cli("wingbeat", "validate", "--layout", "folders", "--data", data, "--group-by", "path:1", "--out", out / "v")
    cli(
        "wingbeat", "features", "--manifest", out / "v" / "manifest.jsonl", "--dataset", out / "v" / "dataset.json",
        "--data", data, "--out", out / "features.npz",
    )  # fmt: skip
    cli("wingbeat", "train", "--features", out / "features.npz", "--set", "n_estimators=20", "--out", out / "features")
    cli(
        "wingbeat", "train", "--features", out / "features.npz", "--model", "gru", "--epochs", "1", "--out", out / "gru"
    )
    for model in ("features", "gru"):
        cli(
            "wingbeat",
            "evaluate",
            "--model",
            out / model,
            "--features",
            out / "features.npz",
            "--out",
            out / f"e_{model}",
        )
    cli(
        "wingbeat", "compare", "--models", out / "features", out / "gru",
        "--evaluations", out / "e_features", out / "e_gru", "--out", out / "comparison",
    )  # fmt: skip
    cli("package", "wingbeat", "--model", out / "features", "--out", out / "archive")
    return root, out


def test_both_layouts_read_the_names_as_they_are(wingbeat_run):
    _, out = wingbeat_run
    by_csv = json.loads((out / "v_csv" / "dataset.json").read_text())["classes"]
    by_folder = json.loads((out / "v" / "dataset.json").read_text())["classes"]
    assert by_csv == by_folder == sorted(NAMES)


def test_the_model_keeps_every_name_apart(wingbeat_run):
    _, out = wingbeat_run
    for model in ("features", "gru"):
        assert json.loads((out / model / "labels.json").read_text()) == sorted(NAMES)


def test_metrics_and_plots_carry_the_names(wingbeat_run):
    _, out = wingbeat_run
    metrics = json.loads((out / "e_gru" / "metrics.json").read_text())
    assert list(metrics["per_class"]) == sorted(NAMES)
    plots = [out / "e_gru" / "confusion_matrix.png", out / "comparison" / "confusion_matrices.png"]
    assert all(p.stat().st_size > 0 for p in plots)


@pytest.mark.parametrize("report", ["e_features/report.html", "comparison/report.html"])
def test_reports_escape_the_names(wingbeat_run, report):
    _, out = wingbeat_run
    text = (out / report).read_text(encoding="utf-8")
    assert all(f">{html.escape(name)}<" in text for name in NAMES)
    assert "<pipiens>" not in text


def test_cli_prediction_answers_with_the_names(wingbeat_run, capsys):
    root, out = wingbeat_run
    wav = next((root / "recordings" / "Anophèles").rglob("*.wav"))
    capsys.readouterr()
    cli("wingbeat", "predict", "--model", out / "features", wav)
    answer = json.loads(capsys.readouterr().out)
    assert answer["file"] == str(wav) and set(answer["probabilities"]) == set(NAMES)


def test_the_archive_serves_the_names(wingbeat_run, tmp_path, monkeypatch):
    from insectml.serving import wingbeat_handler

    root, out = wingbeat_run
    model_dir = unpack(out / "archive" / "wingbeat.mar", tmp_path / "served")
    monkeypatch.setattr(wingbeat_handler, "_service", wingbeat_handler.WingbeatService())
    wav = next((root / "recordings" / "ant").rglob("*.wav"))
    (answer,) = wingbeat_handler.handle([{"body": wav.read_bytes()}], FakeContext(model_dir))
    assert set(answer["probabilities"]) == set(NAMES)


# -- few-shot ----------------------------------------------------------------------------

# A class-disjoint split needs at least 10 classes; the comma needs quoting in the CSV layout.
FEWSHOT_NAMES = [*NAMES, "Vespa velutina (Lepeletier, 1836)", "Bombus terrestris agg.", "Ψ-moth", "Ichneumon sp. 2"]
NEW_CLASS = "Nouvelle espèce <n°1>"


def _picture(colour: tuple[int, int, int], rng: np.random.Generator):
    from PIL import Image

    noise = rng.integers(0, 90, size=(40, 40, 1))
    return Image.fromarray(np.clip(np.asarray(colour)[None, None] + noise - 45, 0, 255).astype(np.uint8))


def write_image_set(root: Path, folders: list[str], labels: list[str], per_class: int) -> Path:
    """images/<folder>/<i>.png, one colour per class, and labels.csv giving each folder's label."""
    rows = []
    for c, (folder, label) in enumerate(zip(folders, labels, strict=True)):
        rng = np.random.default_rng(c)
        colour = tuple(int(v) for v in rng.integers(40, 215, size=3))
        (root / "images" / folder).mkdir(parents=True)
        for i in range(per_class):
            _picture(colour, rng).save(root / "images" / folder / f"{i}.png")
            rows.append({"path": f"images/{folder}/{i}.png", "label": label})
    with (root / "labels.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def fewshot_run(tmp_path_factory):
    """images/<class>/*.png (folders layout) and labels.csv (csv layout), validated both
    ways; then train, evaluate (with its gallery), enrol a new class and package."""
    root = write_image_set(tmp_path_factory.mktemp("fewshot names"), FEWSHOT_NAMES, FEWSHOT_NAMES, per_class=4)
    rng = np.random.default_rng(99)
    (root / "new").mkdir()
    for i in range(2):
        _picture((250, 250, 10), rng).save(root / "new" / f"{i}.png")

    out = tmp_path_factory.mktemp("fewshot run")
    cli("fewshot", "validate", "--root", root, "--labels", root / "labels.csv", "--out", out / "v_csv")
    cli("fewshot", "validate", "--root", root, "--images", root / "images", "--out", out / "v")
    common = ["--manifest", out / "v" / "manifest.jsonl", "--dataset", out / "v" / "dataset.json", "--root", root]
    cli(
        "fewshot", "train", *common, "--epochs", "1", "--val-episodes", "5", "--image-size", "32", "--dim", "16",
        "--classes-per-batch", "4", "--out", out / "m",
    )  # fmt: skip
    cli("fewshot", "evaluate", "--model", out / "m", *common, "--episodes", "5", "--out", out / "e")
    cli(
        "fewshot", "enrol", "--model", out / "m", "--gallery", out / "e" / "gallery", "--name", NEW_CLASS,
        "--out", out / "g2", *sorted((root / "new").glob("*.png")),
    )  # fmt: skip
    cli("package", "fewshot", "--model", out / "m", "--gallery", out / "g2", "--out", out / "archive")
    return root, out


def test_fewshot_layouts_read_the_names_as_they_are(fewshot_run):
    _, out = fewshot_run
    by_csv = json.loads((out / "v_csv" / "dataset.json").read_text())["classes"]
    by_folder = json.loads((out / "v" / "dataset.json").read_text())["classes"]
    assert by_csv == by_folder == sorted(FEWSHOT_NAMES)


def test_the_gallery_keeps_every_name_and_the_enrolled_one(fewshot_run):
    _, out = fewshot_run
    classes = json.loads((out / "g2" / "gallery.json").read_text())["classes"]
    assert classes == [*sorted(FEWSHOT_NAMES), NEW_CLASS]


def test_cluster_tables_name_classes_as_they_are(fewshot_run):
    _, out = fewshot_run
    with (out / "e" / "clusters_agglomerative.csv").open(newline="", encoding="utf-8") as fh:
        suggested = {row["suggested_class"] for row in csv.DictReader(fh)}
    test_classes = json.loads((out / "v" / "dataset.json").read_text())["split_classes"]["test"]
    assert suggested and suggested <= set(test_classes)


def test_fewshot_cli_prediction_answers_with_the_names(fewshot_run, capsys):
    root, out = fewshot_run
    image = root / "images" / "Anophèles" / "0.png"
    capsys.readouterr()
    cli("fewshot", "predict", "--model", out / "m", "--gallery", out / "g2", "--top-k", "20", image)
    answer = json.loads(capsys.readouterr().out)
    assert answer["file"] == str(image) and {a["label"] for a in answer["top_k"]} == {*FEWSHOT_NAMES, NEW_CLASS}


def test_the_fewshot_archive_serves_the_names(fewshot_run, tmp_path, monkeypatch):
    from insectml.serving import fewshot_handler

    root, out = fewshot_run
    model_dir = unpack(out / "archive" / "fewshot.mar", tmp_path / "served")
    monkeypatch.setattr(fewshot_handler, "_service", fewshot_handler.FewshotService())
    body = (root / "new" / "0.png").read_bytes()
    (answer,) = fewshot_handler.handle([{"body": body}], FakeContext(model_dir))
    assert answer["top_k"][0]["label"] == NEW_CLASS  # one of its own enrolment images


def test_a_labels_csv_reads_as_utf8_whatever_the_locale(tmp_path, tool_env):
    """Under a non-UTF-8 locale (a cluster node with LANG=C and UTF-8 mode off), the few-shot
    labels CSV still reads its class names as written."""
    import subprocess

    # ASCII folders: that locale cannot encode other file names
    write_image_set(tmp_path, [f"c{c}" for c in range(len(FEWSHOT_NAMES))], FEWSHOT_NAMES, per_class=2)
    env = {**tool_env, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    cmd = [str(Path(__file__).resolve().parents[2] / "bin" / "insectml"), "fewshot", "validate"]
    args = ["--root", str(tmp_path), "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "v")]
    done = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "v" / "dataset.json").read_text())["classes"] == sorted(FEWSHOT_NAMES)


# -- spellings ---------------------------------------------------------------------------

NFD = unicodedata.normalize("NFD", "Anophèles")  # how a folder copied from macOS spells it


def test_a_wingbeat_folder_from_macos_is_the_class_classes_txt_names(tmp_path):
    from insectml.wingbeat.labels import read_classes, read_folder_layout

    for species in (NFD, "Ant"):
        (tmp_path / species / "s1").mkdir(parents=True)
        (tmp_path / species / "s1" / "0.wav").write_bytes(b"")
    (tmp_path / "classes.txt").write_text("Anophèles\nAnt\n", encoding="utf-8")
    species = {row.species for row in read_folder_layout(tmp_path, "path:1")}
    assert species == set(read_classes(tmp_path / "classes.txt")) == {"Anophèles", "Ant"}


def test_a_fewshot_folder_from_macos_is_the_class_the_csv_names(tmp_path):
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

    folders = [NFD if name == "Anophèles" else name for name in FEWSHOT_NAMES]
    write_image_set(tmp_path, folders, FEWSHOT_NAMES, per_class=2)
    by_folder = validate_fewshot(
        FewshotValidateConfig(root=tmp_path, out_dir=tmp_path / "v", images=tmp_path / "images")
    )
    by_csv = validate_fewshot(
        FewshotValidateConfig(root=tmp_path, out_dir=tmp_path / "c", labels=tmp_path / "labels.csv")
    )
    assert by_folder["classes"] == by_csv["classes"] == sorted(FEWSHOT_NAMES)


def test_a_dollar_in_a_name_is_drawn_as_written(tmp_path):
    """Matplotlib would read "$_$" as mathtext, and fail to parse it."""
    from insectml.metrics import plot_confusion

    assert plot_confusion([[2, 0], [1, 1]], ["sp. $_$", "Ant"], tmp_path / "cm.png", "t").stat().st_size > 0
