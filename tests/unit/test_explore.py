"""insectml.explore, what the notebooks call: loaders, tables and figures on tiny
folders laid out as the pipeline writes them (the notebooks themselves run in
tests/integration/test_notebooks.py)."""

from __future__ import annotations

import json
import shutil
import tempfile

import numpy as np
import pytest
from insectml import explore
from insectml.errors import InputFileError
from matplotlib.figure import Figure

# --------------------------------------------------------------------------- the data


def _write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_family_folder_takes_the_family_below_a_parent_or_the_folder_itself(tmp_path):
    (tmp_path / "wingbeat").mkdir()
    assert explore.family_folder(tmp_path, "wingbeat") == tmp_path / "wingbeat"
    assert explore.family_folder(tmp_path / "wingbeat", "wingbeat") == tmp_path / "wingbeat"


def test_load_data_validates_the_data_when_no_pipeline_ran(tiny_wingbeat, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where its scratch folder goes
    view = explore.load_data("wingbeat", tiny_wingbeat.parent, tmp_path / "no-results")
    assert len(view.rows) == 70 and {r["split"] for r in view.rows} == {"train", "val", "test"}
    assert view.root == tiny_wingbeat and "validated now" in view.origin
    assert list(tmp_path.iterdir()) == [], "the scratch validation folder was left behind"


def test_load_data_shows_the_pipelines_validation_when_there(tiny_wingbeat, tmp_path):
    validated = tmp_path / "results" / "wingbeat" / "data"
    _write_rows(
        validated / "manifest.jsonl", [{"id": "a", "path": "a.wav", "label": "x", "group": "g", "split": "test"}]
    )
    (validated / "dataset.json").write_text(json.dumps({"classes": ["x"]}))
    (validated / "validation_report.json").write_text(json.dumps({"problems": [], "warnings": ["w"]}))
    view = explore.load_data("wingbeat", tiny_wingbeat, tmp_path / "results")
    assert [r["id"] for r in view.rows] == ["a"] and str(validated) in view.origin


def test_load_data_of_refused_data_keeps_every_problem_and_no_rows(tiny_wingbeat, tmp_path):
    data = tmp_path / "wingbeat"
    shutil.copytree(tiny_wingbeat, data)
    (data / "recordings" / "aedes_aegypti" / "aedes_aegypti_0000.wav").write_bytes(b"")
    view = explore.load_data("wingbeat", data)
    assert view.rows == [] and view.dataset == {}
    assert any("aedes_aegypti_0000.wav" in p and "empty" in p for p in view.report["problems"])


def test_load_data_refuses_a_missing_folder(tmp_path):
    with pytest.raises(InputFileError, match="no fewshot data folder"):
        explore.load_data("fewshot", tmp_path / "nowhere")


DETECTOR_ROWS = [
    {"path": "a.jpg", "labels": ["bee", "bee", "fly"], "boxes": [[0, 0, 5, 5]] * 3, "group": "s1", "split": "train"},
    {"path": "b.jpg", "labels": ["fly"], "boxes": [[0, 0, 5, 5]], "group": "s2", "split": "test"},
    {"path": "c.jpg", "labels": [], "boxes": [], "species": "bee", "group": "c.jpg", "split": "unlabelled"},
]


def test_class_counts_count_boxes_per_class_and_species_images_under_their_split():
    table = explore.class_counts(DETECTOR_ROWS)
    assert list(table.columns) == ["train", "test", "unlabelled", "total"]
    assert table.loc["bee"].tolist() == [2, 0, 1, 3] and table.loc["fly"].tolist() == [1, 1, 0, 2]


def test_group_counts_count_distinct_groups_per_class_and_split():
    rows = [
        {"path": f"{i}.wav", "label": "x", "group": g, "split": s}
        for i, (g, s) in enumerate([("e1", "train"), ("e1", "train"), ("e2", "train"), ("e3", "test")])
    ]
    table = explore.group_counts(rows)
    assert table.loc["x"].tolist() == [2, 1, 3]


def test_split_summary_counts_groups_found_on_both_sides():
    rows = [
        {"path": "1.wav", "label": "x", "group": "e1", "split": "train"},
        {"path": "2.wav", "label": "y", "group": "e1", "split": "test"},
        {"path": "3.wav", "label": "y", "group": "e2", "split": "test"},
    ]
    table = explore.split_summary(rows)
    assert table.loc["test"].tolist() == [2, 1, 2, 1]


def test_split_summary_counts_the_support_and_query_images():
    rows = [
        {"path": f"{i}.png", "label": "x", "split": "test", "subset": s}
        for i, s in enumerate(["support", "support", "query"])
    ]
    table = explore.split_summary(rows)
    assert (table.loc["test", "support images"], table.loc["test", "query images"]) == (2, 1)


REPORT = {
    "problems": ["b.wav: identical content to a.wav of species 'x' (label conflict)", "c.wav: empty file (0 bytes)"],
    "warnings": [
        "img/1.jpg: identical to img/0.jpg in the same group",
        "images/a b/2.png: near-duplicate (dHash distance 3) of images/c/1.png of class 'c'",
        "img/5.jpg: near-duplicate (dHash distance 1) of img/4.jpg in group s1; groups s1, s2 merged",
        "img/9.jpg: clipped to the 320x320 image",
    ],
}


def test_findings_list_problems_then_warnings_by_file():
    table = explore.findings(REPORT)
    assert table["severity"].tolist() == ["problem"] * 2 + ["warning"] * 4
    assert table.loc[1, "file"] == "c.wav" and table.loc[1, "message"] == "empty file (0 bytes)"


def test_duplicate_pairs_reads_every_form_of_duplicate_message():
    table = explore.duplicate_pairs(REPORT)
    assert table[["file", "duplicate_of", "distance"]].values.tolist() == [
        ["b.wav", "a.wav", 0],
        ["img/1.jpg", "img/0.jpg", 0],
        ["images/a b/2.png", "images/c/1.png", 3],
        ["img/5.jpg", "img/4.jpg", 1],
    ]


def _images(root, names, size=(40, 32)):
    from PIL import Image

    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (30, 120, 60)).save(root / name)


def test_data_figures_draw_images_recordings_and_pairs(tiny_wingbeat, tmp_path):
    _images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    detector = explore.DataView("detector", tmp_path, DETECTOR_ROWS, {}, REPORT, "test")
    wingbeat = explore.load_data("wingbeat", tiny_wingbeat)
    figures = [
        explore.show_split(DETECTOR_ROWS),
        explore.show_examples(detector, per_class=1),
        explore.show_examples(wingbeat, per_class=1, max_classes=2),
        explore.show_pairs(detector, explore.duplicate_pairs({"warnings": ["a.jpg: identical to b.jpg"]})),
        explore.show_pairs(detector, explore.duplicate_pairs({})),
    ]
    assert all(isinstance(f, Figure) for f in figures)
    for k, figure in enumerate(figures):
        figure.savefig(tmp_path / f"{k}.png")  # draws every artist


def test_show_split_with_many_classes_draws_class_sizes():
    rows = [{"path": f"{c}-{i}", "label": f"c{c}", "split": "train"} for c in range(40) for i in range(c % 3 + 1)]
    assert isinstance(explore.show_split(rows, max_classes=30), Figure)


def test_show_episode_rows_are_classes_with_support_then_query(tmp_path):
    rows = [
        {"path": f"{c}/{i}.png", "label": c, "split": "test", "subset": "support" if i < 2 else "query"}
        for c in ("a", "b", "c")
        for i in range(4)
    ]
    _images(tmp_path, [r["path"] for r in rows])
    figure = explore.show_episode(explore.DataView("fewshot", tmp_path, rows, {}, {}, ""), n_way=2, max_query=1)
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(shown) == 2 * 3 and [ax.get_title() for ax in shown[:3]] == ["support", "support", "query"]


# --------------------------------------------------------------------------- a results folder


def _wingbeat_results(root, tiny_wingbeat=None):
    """results/wingbeat with two evaluated models (baseline chosen) and a data manifest."""
    folder = root / "wingbeat"
    classes = ["aedes_aegypti", "culex_pipiens"]
    for model, f1 in (("baseline", 0.6), ("cnn", 0.7)):
        evaluation = folder / "evaluation" / model
        evaluation.mkdir(parents=True)
        metrics = {
            "model": model,
            "macro_f1": f1,
            "macro_f1_low": f1 - 0.1,
            "macro_f1_high": f1 + 0.1,
            "accuracy": f1,
            "accuracy_low": None,
            "accuracy_high": None,
            "val_macro_f1": 0.5,
            "per_class": {
                c: {"precision": 1.0, "recall": 0.5, "f1": 0.5 + k / 10, "support": 2} for k, c in enumerate(classes)
            },
            "confusion_matrix": [[1, 1], [0, 2]],
            "classes": classes,
        }
        (evaluation / "metrics.json").write_text(json.dumps(metrics))
        (folder / "models" / model).mkdir(parents=True)
        np.savez(
            evaluation / "predictions.npz",
            ids=np.asarray(
                ["recordings/aedes_aegypti/aedes_aegypti_0000", "recordings/culex_pipiens/culex_pipiens_0000", "x"]
            ),
            y=np.asarray([0, 1, 1]),
            pred=np.asarray([1, 0, 1]),
            groups=np.asarray(["g", "g", "g"]),
            probs=np.asarray([[0.1, 0.9], [0.6, 0.4], [0.2, 0.8]]),
        )
    history = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "val_macro_f1": 0.1 * e} for e in (1, 2)]
    _write_rows(folder / "models" / "cnn" / "history.jsonl", history)
    (folder / "comparison").mkdir()
    (folder / "comparison" / "comparison.json").write_text(
        json.dumps({"best": "baseline", "verdict": {"sentence": "No model beats the baseline."}})
    )
    manifest = [
        {"id": f"recordings/{c}/{c}_0000", "path": f"recordings/{c}/{c}_0000.wav", "label": c, "split": "test"}
        for c in classes
    ]
    _write_rows(folder / "data" / "manifest.jsonl", manifest)
    return folder


def test_load_results_finds_every_evaluation_and_the_chosen_model(tmp_path):
    _wingbeat_results(tmp_path)
    results = explore.load_results(tmp_path, "wingbeat")
    assert set(results.evaluations) == {"baseline", "cnn"} and results.best == "baseline"
    assert "No model beats the baseline." in str(results)


def test_load_results_refuses_a_folder_without_evaluations(tmp_path):
    with pytest.raises(InputFileError, match="not a detector results folder"):
        explore.load_results(tmp_path, "detector")


def test_metrics_table_has_each_headline_metric_with_its_interval_best_first(tmp_path):
    table = explore.metrics_table(explore.load_results(_wingbeat_results(tmp_path), "wingbeat"))
    assert table.index.tolist() == ["cnn", "baseline"]
    assert table.loc["cnn", ["macro_f1_low", "macro_f1", "macro_f1_high"]].tolist() == pytest.approx([0.6, 0.7, 0.8])
    assert table["chosen"].tolist() == [False, True]
    assert "accuracy_low" not in table, "a column with no value at all is left out"


def test_metrics_table_of_fewshot_puts_the_baselines_beside_the_model(tmp_path):
    episodes = {"mean": 0.9, "ci95": 0.02, "episodes": 100}
    metrics = {
        "top1": 0.8,
        "top5": 0.95,
        "episodes_5way_1shot": episodes,
        "episodes_5way_5shot": {"mean": None, "ci95": None},
        "open_set": {"auroc": 0.7},
        "baselines": {"colour_histogram": {"top1": 0.2, "top5": 0.6, "episodes_5way_1shot": {**episodes, "mean": 0.4}}},
    }
    (tmp_path / "fewshot" / "evaluation").mkdir(parents=True)
    (tmp_path / "fewshot" / "evaluation" / "metrics.json").write_text(json.dumps(metrics))
    table = explore.metrics_table(explore.load_results(tmp_path, "fewshot"))
    assert table.index.tolist() == ["model", "colour_histogram"]
    low, high = table.loc["model", ["episodes_5way_1shot_low", "episodes_5way_1shot_high"]]
    assert (low, high) == pytest.approx((0.88, 0.92)) and table.loc["model", "open_set_auroc"] == 0.7
    assert table.loc["model", "chosen"]


def test_per_class_table_is_worst_first(tmp_path):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    assert explore.per_class_table(results, "cnn").index.tolist() == ["aedes_aegypti", "culex_pipiens"]


def test_history_reads_the_models_epochs(tmp_path):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    assert explore.history(results, "cnn")["epoch"].tolist() == [1, 2]
    assert explore.history(results, "baseline").empty


def test_results_figures_draw(tmp_path):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    for k, figure in enumerate([explore.show_confusion(results, "cnn"), explore.show_history(results)]):
        assert isinstance(figure, Figure)
        figure.savefig(tmp_path / f"{k}.png")


def test_wingbeat_predictions_are_the_evaluations_with_the_manifests_paths(tmp_path, tiny_wingbeat):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    pred = explore.predictions(results, tiny_wingbeat, "cnn")
    assert pred.paths[:2] == [
        "recordings/aedes_aegypti/aedes_aegypti_0000.wav",
        "recordings/culex_pipiens/culex_pipiens_0000.wav",
    ]
    assert pred.paths[2] == "x.wav", "an id the manifest lacks is taken as the recording's name"


def test_worst_errors_are_the_most_confident_wrong_predictions(tmp_path, tiny_wingbeat):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    errors = explore.worst_errors(explore.predictions(results, tiny_wingbeat, "cnn"))
    assert errors["truth"].tolist() == ["aedes_aegypti", "culex_pipiens"]
    assert errors["confidence"].tolist() == pytest.approx([0.9, 0.6])


def test_show_errors_draws_the_recordings_spectrograms(tmp_path, tiny_wingbeat):
    results = explore.load_results(_wingbeat_results(tmp_path), "wingbeat")
    pred = explore.predictions(results, tiny_wingbeat, "cnn")
    figure = explore.show_errors(pred)
    assert sum(bool(ax.get_images()) for ax in figure.axes) == 2


def _fewshot_predictions(n_classes=20):
    rng = np.random.default_rng(0)
    truth = np.repeat(np.arange(n_classes), 2)
    predicted = truth.copy()
    predicted[::7] = (predicted[::7] + 1) % n_classes
    classes = [f"class{i:02d}" for i in range(n_classes)]
    return explore.Predictions(
        "fewshot",
        "model",
        None,
        classes,
        [f"{i}.png" for i in range(len(truth))],
        truth,
        predicted,
        rng.random((len(truth), n_classes)),
        embeddings=rng.normal(size=(len(truth), 8)),
        prototypes=rng.normal(size=(n_classes, 8)),
    )


def test_fewshot_confusion_shows_the_classes_with_the_most_errors(tmp_path):
    (tmp_path / "evaluation").mkdir()
    (tmp_path / "evaluation" / "metrics.json").write_text(json.dumps({"top1": 0.5}))
    results = explore.load_results(tmp_path, "fewshot")
    figure = explore.show_confusion(results, predictions=_fewshot_predictions(), max_classes=6)
    assert len(figure.axes[0].get_xticklabels()) == 6


def test_embedding_map_draws_queries_and_prototypes():
    figure = explore.show_embedding_map(_fewshot_predictions(6))
    assert len(figure.axes[0].collections) == 3  # queries, prototypes, circled errors


# --------------------------------------------------------------------------- detector


def test_box_iou_of_overlapping_and_disjoint_boxes():
    iou = explore.box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou.tolist() == [pytest.approx([1 / 3, 0.0])]


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        ([{"label": "bee", "score": 0.9, "box": [0, 0, 10, 10]}], (1, 0, 1, 0)),
        ([{"label": "fly", "score": 0.9, "box": [0, 0, 10, 10]}], (0, 1, 1, 0)),
        ([{"label": "bee", "score": 0.9, "box": [50, 50, 60, 60]}], (0, 0, 2, 1)),
        ([{"label": "bee", "score": 0.2, "box": [0, 0, 10, 10]}], (0, 0, 2, 0)),  # below the score: not counted
        ([{"label": "bee", "score": s, "box": [0, 0, 10, 10]} for s in (0.9, 0.8)], (1, 0, 1, 1)),  # one box, twice
    ],
)
def test_match_detections(found, expected):
    counts = explore.match_detections([[0, 0, 10, 10], [20, 20, 40, 40]], ["bee", "bee"], found)
    assert (counts["correct"], counts["wrong_class"], counts["missed"], counts["false_alarms"]) == expected


def _detections(tmp_path):
    rows = [
        {"path": "a.jpg", "boxes": [[2, 2, 20, 20]], "labels": ["bee"]},
        {"path": "b.jpg", "boxes": [[2, 2, 20, 20], [22, 2, 38, 20]], "labels": ["bee", "fly"]},
    ]
    _images(tmp_path, ["a.jpg", "b.jpg"])
    found = [
        [{"label": "bee", "score": 0.9, "box": [2, 2, 20, 20]}],
        [{"label": "bee", "score": 0.7, "box": [0, 0, 4, 4]}],
    ]
    return explore.Detections("target", tmp_path, ["bee", "fly"], rows, found, 0.05)


def test_worst_errors_of_a_detector_rank_images_by_their_errors(tmp_path):
    table = explore.worst_errors(_detections(tmp_path))
    assert table["path"].tolist() == ["b.jpg"] and table.loc[0, ["missed", "false_alarms"]].tolist() == [2, 1]


def test_show_errors_of_a_detector_draws_truth_and_detections(tmp_path):
    figure = explore.show_errors(_detections(tmp_path))
    shown = [ax for ax in figure.axes if ax.get_images()]
    assert len(shown) == 1 and len(shown[0].patches) == 3  # two true boxes, one detection


def test_pseudo_labels_least_sure_first_and_drawn(tmp_path):
    folder = tmp_path / "detector"
    (folder / "evaluation" / "generic").mkdir(parents=True)
    (folder / "evaluation" / "generic" / "metrics.json").write_text("{}")
    pseudo = [
        {
            "path": f"species/bee/{n}.jpg",
            "species": "bee",
            "boxes": [[1, 1, 9, 9]],
            "labels": ["bee"],
            "pseudo": {"scores": [s]},
        }
        for n, s in (("a", 0.8), ("b", 0.3))
    ]
    _write_rows(folder / "pseudo" / "pseudo_manifest.jsonl", pseudo)
    _images(tmp_path / "data", [r["path"] for r in pseudo])
    results = explore.load_results(tmp_path, "detector")
    assert explore.pseudo_labels(results)["score"].tolist() == [0.3, 0.8]
    figure = explore.show_pseudo_labels(results, tmp_path / "data", n=1)
    assert [ax.get_title() for ax in figure.axes if ax.get_images()] == ["bee · lowest score 0.30"]


def test_pseudo_labels_of_a_run_without_them_are_empty(tmp_path):
    (tmp_path / "evaluation" / "generic").mkdir(parents=True)
    (tmp_path / "evaluation" / "generic" / "metrics.json").write_text("{}")
    results = explore.load_results(tmp_path, "detector")
    assert explore.pseudo_labels(results).empty and explore.pseudo_summary(results) == {}
