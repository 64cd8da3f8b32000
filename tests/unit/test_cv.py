"""Grouped cross-validation of the wingbeat models: the plan, the folds' tasks, the joined
out-of-fold result, calibration carried into prediction, the comparison's verdict."""

import json

import numpy as np
import pytest
from insectml.cv import fold_masks, parse_requested, plan, resolve_folds
from insectml.errors import ConfigError


def rows(groups_per_class: int, classes=("a", "b", "c"), per_group: int = 4, test_groups: int = 1) -> list[dict]:
    out = []
    for c in classes:
        for g in range(groups_per_class + test_groups):
            for i in range(per_group):
                split = "test" if g < test_groups else "train"
                out.append({"id": f"{c}{g}_{i}", "label": c, "group": f"{c}-s{g}", "split": split})
    return out


@pytest.mark.parametrize("value, expected", [("auto", None), ("0", 0), (5, 5), ("12", 12)])
def test_requested_folds_are_read(value, expected):
    assert parse_requested(value) == expected


@pytest.mark.parametrize("value", ["1", "-2", "five"])
def test_impossible_folds_are_refused(value):
    with pytest.raises(ConfigError, match="expected auto, 0 or a number of folds"):
        parse_requested(value)


def test_auto_cross_validates_few_groups_per_class_only():
    few, many = ([r for r in rows(n) if r["split"] != "test"] for n in (3, 8))
    k, reason = resolve_folds("auto", [r["label"] for r in few], [r["group"] for r in few])
    assert k == 5 and "only 3 group(s)" in reason
    k, reason = resolve_folds("auto", [r["label"] for r in many], [r["group"] for r in many])
    assert k == 0 and "one train/val split" in reason


def test_more_folds_than_groups_is_a_clear_error():
    r = rows(1, classes=("a", "b"))
    pool = [x for x in r if x["split"] != "test"]
    with pytest.raises(ConfigError, match="only 2 groups; use at most 2"):
        resolve_folds(3, [x["label"] for x in pool], [x["group"] for x in pool])


def test_plan_puts_every_non_test_group_in_one_fold_and_is_seeded():
    r = rows(3)
    first, again, other = plan(r, 3, seed=1), plan(r, 3, seed=1), plan(r, 3, seed=2)
    assert first == again and first["group_fold"] != other["group_fold"]
    pool_groups = {x["group"] for x in r if x["split"] != "test"}
    assert set(first["group_fold"]) == pool_groups
    assert sum(f["rows"] for f in first["folds"]) == len([x for x in r if x["split"] != "test"])
    assert first["k"] == 3 and first["rule"] and not first["warnings"]


def test_a_class_with_one_group_is_warned_about():
    r = rows(3) + [{"id": "lonely", "label": "d", "group": "d-s0", "split": "train"}]
    assert any("class 'd' has one group" in w for w in plan(r, 3, seed=0)["warnings"])


def test_fold_masks_cover_the_pool_once():
    r = rows(3)
    p = plan(r, 3, seed=0)
    groups = np.asarray([x["group"] for x in r])
    split = np.asarray([x["split"] for x in r])
    held_total = np.zeros(len(r), dtype=int)
    for fold in range(3):
        train, held = fold_masks(p, groups, split, fold)
        assert not (train & held).any() and not held[split == "test"].any()
        held_total += held
    assert (held_total == (split != "test")).all()
    train, held = fold_masks(p, groups, split, None)
    assert (train == (split != "test")).all() and not held.any()


# --- the wingbeat tasks end to end, on the tiny demo --------------------------------


@pytest.fixture(scope="module")
def features(tiny_wingbeat, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("cv")
    for args in (
        ["wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out],
        ["wingbeat", "features", "--manifest", out / "manifest.jsonl", "--dataset", out / "dataset.json"],
        ["cv", "plan", "--manifest", out / "manifest.jsonl", "--cv-folds", "3", "--out", out / "folds.json"],
    ):
        if args[1] == "features":
            args += ["--data", tiny_wingbeat, "--out", out / "features.npz"]
        done = run_cli(*args)
        assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def cross_validated(features, run_cli):
    """baseline and gru: 3 folds + refit each, joined by 'wingbeat cv', evaluated, compared."""
    out = features
    for model in ("baseline", "gru"):
        extra = ["--epochs", "1"] if model == "gru" else []
        for fold in range(3):
            done = run_cli(
                "wingbeat", "train", "--features", out / "features.npz", "--model", model,
                "--folds", out / "folds.json", "--fold", fold, "--out", out / f"{model}_fold{fold}", *extra,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        steps = [
            ["wingbeat", "train", "--features", out / "features.npz", "--model", model, "--folds", out / "folds.json",
             "--out", out / f"{model}_refit", *extra],
            ["wingbeat", "cv", "--refit", out / f"{model}_refit", "--folds-models",
             *(out / f"{model}_fold{f}" for f in range(3)), "--out", out / model],
            ["wingbeat", "evaluate", "--model", out / model, "--features", out / "features.npz",
             "--out", out / f"eval_{model}"],
        ]  # fmt: skip
        for args in steps:
            done = run_cli(*args)
            assert done.returncode == 0, done.stderr
    done = run_cli(
        "wingbeat", "compare", "--models", out / "baseline", out / "gru",
        "--evaluations", out / "eval_baseline", out / "eval_gru", "--out", out / "comparison",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


def test_each_fold_predicts_only_its_own_groups(cross_validated):
    folds = json.loads((cross_validated / "folds.json").read_text())["group_fold"]
    seen = []
    for fold in range(3):
        with np.load(cross_validated / f"baseline_fold{fold}" / "heldout.npz") as held:
            assert {folds[str(g)] for g in held["groups"]} == {fold}
            seen += held["ids"].tolist()
    assert len(seen) == len(set(seen))


def test_the_refit_carries_the_out_of_fold_temperature_and_lineage(cross_validated):
    cv = json.loads((cross_validated / "gru" / "cv.json").read_text())
    config = json.loads((cross_validated / "gru" / "config.json").read_text())
    lineage = json.loads((cross_validated / "gru" / "lineage.json").read_text())
    assert config["temperature"] == cv["temperature"] and "3 folds" in config["temperature_fitted_on"]
    assert cv["k"] == 3 and len(cv["per_fold_macro_f1"]) == 3
    assert cv["macro_f1"]["low"] <= cv["macro_f1"]["value"] <= cv["macro_f1"]["high"]
    assert lineage["cv"]["k"] == 3 and lineage["cv"]["rule"]
    assert lineage["params"]["rows"]["role"] == "refit" and lineage["params"]["rows"]["group_fold"]
    assert (cross_validated / "gru" / "reliability_cv.png").stat().st_size > 0


def test_fold_tasks_are_reproducible(cross_validated, run_cli):
    again = cross_validated / "gru_fold1_again"
    done = run_cli(
        "wingbeat", "train", "--features", cross_validated / "features.npz", "--model", "gru",
        "--folds", cross_validated / "folds.json", "--fold", 1, "--epochs", 1, "--out", again,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with np.load(again / "heldout.npz") as a, np.load(cross_validated / "gru_fold1" / "heldout.npz") as b:
        assert np.array_equal(a["scores"], b["scores"])


def test_evaluation_reports_grouped_intervals_and_calibration(cross_validated):
    metrics = json.loads((cross_validated / "eval_gru" / "metrics.json").read_text())
    assert metrics["ci"]["macro_f1"]["unit"] == "group"
    assert metrics["macro_f1_low"] <= metrics["macro_f1"] <= metrics["macro_f1_high"]
    assert metrics["cv_macro_f1"] is not None and metrics["temperature"] > 0
    assert {"ece_before", "ece_after"} <= set(metrics)
    report = (cross_validated / "eval_gru" / "report.html").read_text()
    assert "95% CI" in report and "ECE before" in report


def test_the_comparison_chooses_by_cv_and_says_whether_the_baseline_is_beaten(cross_validated):
    comparison = json.loads((cross_validated / "comparison" / "comparison.json").read_text())
    assert comparison["selected_by"] == "cv_macro_f1"
    by_cv = max(comparison["models"], key=lambda r: r["cv_macro_f1"])["model"]
    assert comparison["best"] == by_cv
    verdict = comparison["verdict"]
    assert isinstance(verdict["beats_baseline"], bool) and verdict["sentence"]
    report = (cross_validated / "comparison" / "report.html").read_text()
    assert report.index(verdict["sentence"].split(" ")[0]) < report.index("<table")
    assert "(baseline)" in report


def test_predictions_are_calibrated_by_the_models_temperature(cross_validated, tiny_wingbeat):
    from insectml.stats import apply_temperature
    from insectml.wingbeat.predict import decode_recording, load_predictor

    predictor = load_predictor(cross_validated / "gru")
    assert predictor.temperature != 1.0
    audio = decode_recording(next((tiny_wingbeat / "recordings").rglob("*.wav")), predictor.frontend)
    served = predictor.predict_audio(audio)
    raw = predictor._audio_probs(audio)
    expected = apply_temperature(raw, predictor.temperature)
    assert [served[c] for c in predictor.classes] == pytest.approx(expected.tolist(), abs=1e-6)


def test_the_mms_handler_serves_what_predict_prints(cross_validated, tiny_wingbeat, run_cli, monkeypatch):
    from insectml.serving import wingbeat_handler

    wav = next((tiny_wingbeat / "recordings").rglob("*.wav"))
    printed = json.loads(run_cli("wingbeat", "predict", "--model", cross_validated / "gru", wav).stdout)

    class Context:
        system_properties = {"model_dir": str(cross_validated / "gru")}

        def set_response_status(self, *args):
            raise AssertionError(args)

    monkeypatch.setattr(wingbeat_handler, "_service", wingbeat_handler.WingbeatService())
    context = Context()
    wingbeat_handler.handle(None, context)
    (answer,) = wingbeat_handler.handle([{"body": wav.read_bytes()}], context)
    assert answer["probabilities"] == printed["probabilities"]


def test_a_fold_of_another_model_is_refused(cross_validated, run_cli):
    done = run_cli(
        "wingbeat", "cv", "--refit", cross_validated / "gru_refit", "--folds-models",
        cross_validated / "baseline_fold0", cross_validated / "gru_fold1", cross_validated / "gru_fold2",
        "--out", cross_validated / "mixed",
    )  # fmt: skip
    assert done.returncode == 2 and "is a fold of 'baseline', not of 'gru'" in done.stderr
    assert "Traceback" not in done.stderr and not (cross_validated / "mixed").exists()
