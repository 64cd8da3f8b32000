import numpy as np
import pytest
from insectml.stats import (
    accuracy_on,
    apply_temperature,
    bootstrap_ci,
    expected_calibration_error,
    fit_temperature,
    format_ci,
    macro_f1_on,
    mean_ci,
    paired_bootstrap_diff,
    plot_reliability,
    reliability_bins,
)
from scipy import stats
from sklearn.metrics import f1_score


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def sample_labels(probs, rng):
    """One label per row drawn from that row's distribution."""
    u = rng.random((len(probs), 1))
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def correlated_groups(n_groups=30, per=20, seed=0):
    """Predictions whose correctness is shared within a group (a session that is all easy or all hard)."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"session-{g}" for g in range(n_groups)], per)
    easy = np.repeat(rng.random(n_groups) < 0.6, per)
    y_true = rng.integers(0, 3, size=n_groups * per)
    right = np.where(easy, rng.random(len(y_true)) < 0.95, rng.random(len(y_true)) < 0.3)
    y_pred = np.where(right, y_true, (y_true + 1) % 3)
    return y_true, y_pred, groups


def width(ci):
    return ci["high"] - ci["low"]


def test_group_bootstrap_is_wider_than_row_bootstrap_for_correlated_rows():
    y_true, y_pred, groups = correlated_groups()
    metric = accuracy_on(y_true, y_pred)
    by_row = bootstrap_ci(metric, len(y_true))
    by_group = bootstrap_ci(metric, len(y_true), groups)
    assert (by_row["unit"], by_group["unit"], by_group["n_units"]) == ("row", "group", 30)
    assert width(by_group) > 2 * width(by_row)


def test_same_seed_gives_identical_intervals():
    y_true, y_pred, groups = correlated_groups()
    metric = macro_f1_on(y_true, y_pred, 3)
    runs = [bootstrap_ci(metric, len(y_true), groups, seed=7) for _ in range(2)]
    assert runs[0] == runs[1]


def test_other_seed_gives_other_interval():
    y_true, y_pred, groups = correlated_groups()
    metric = accuracy_on(y_true, y_pred)
    assert bootstrap_ci(metric, len(y_true), groups, seed=1) != bootstrap_ci(metric, len(y_true), groups, seed=2)


def test_nan_resamples_are_skipped_and_too_many_give_no_interval():
    rng = np.random.default_rng(0)
    metric = lambda idx: float("nan") if rng.random() < 0.7 else 1.0  # noqa: E731
    ci = bootstrap_ci(metric, 10, n_boot=200)
    assert (ci["low"], ci["high"], ci["n_skipped"] > 100) == (None, None, True)


def paired_predictions(seed=0, n=300):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 4, size=n)
    good = np.where(rng.random(n) < 0.9, y_true, (y_true + 1) % 4)
    poor = np.where(rng.random(n) < 0.5, y_true, (y_true + 2) % 4)
    return y_true, good, poor


def test_paired_difference_excludes_zero_when_a_is_clearly_better():
    y_true, good, poor = paired_predictions()
    diff = paired_bootstrap_diff(macro_f1_on(y_true, good, 4), macro_f1_on(y_true, poor, 4), len(y_true))
    assert diff["low"] > 0 and diff["p_not_better"] == 0


def test_paired_difference_of_identical_predictions_includes_zero():
    y_true, good, _ = paired_predictions()
    groups = np.arange(len(y_true)) // 10
    diff = paired_bootstrap_diff(accuracy_on(y_true, good), accuracy_on(y_true, good.copy()), len(y_true), groups)
    assert (diff["difference"], diff["low"], diff["high"], diff["p_not_better"]) == (0, 0, 0, 1)


@pytest.mark.parametrize("subset", [False, True])
def test_macro_f1_matches_sklearn_over_present_classes(subset):
    rng = np.random.default_rng(3)
    y_true = rng.choice([0, 1, 2, 4], size=500)  # class 3 never true, class 5 never anything
    y_pred = np.where(rng.random(500) < 0.7, y_true, rng.choice([0, 1, 3], size=500))
    idx = rng.integers(0, 500, size=500) if subset else np.arange(500)
    present = sorted(set(y_true[idx]) | set(y_pred[idx]))
    expected = f1_score(y_true[idx], y_pred[idx], labels=present, average="macro", zero_division=0)
    assert macro_f1_on(y_true, y_pred, 6)(idx) == pytest.approx(expected, abs=1e-12)


def calibrated(n=20000, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    probs = softmax(rng.normal(scale=1.5, size=(n, n_classes)))
    return probs, sample_labels(probs, rng)


def test_ece_is_small_for_calibrated_probabilities():
    probs, y = calibrated()
    assert expected_calibration_error(probs, y) < 0.02


def test_ece_is_large_for_overconfident_probabilities():
    probs, y = calibrated()
    assert expected_calibration_error(apply_temperature(probs, 0.3), y) > 0.1


def test_reliability_bins_count_every_row_once():
    probs, y = calibrated(n=1000)
    rows = reliability_bins(probs, y, n_bins=10)
    assert sum(r["count"] for r in rows) == 1000 and all(r["low"] <= r["confidence"] <= r["high"] for r in rows)


def test_fit_temperature_recovers_a_doubled_scale():
    rng = np.random.default_rng(1)
    z = rng.normal(scale=1.5, size=(5000, 5))
    y = sample_labels(softmax(z), rng)
    assert fit_temperature(2 * z, y) == pytest.approx(2.0, rel=0.15)


def test_fit_temperature_on_log_probabilities_equals_fit_on_logits():
    rng = np.random.default_rng(2)
    z = rng.normal(scale=3, size=(2000, 4))
    y = sample_labels(softmax(z / 2), rng)
    assert fit_temperature(np.log(softmax(z)), y) == pytest.approx(fit_temperature(z, y), rel=1e-3)


def test_temperature_one_returns_probabilities_unchanged():
    probs, _ = calibrated(n=50)
    assert np.array_equal(apply_temperature(probs, 1.0), probs)


def test_apply_temperature_gives_distributions():
    probs, _ = calibrated(n=50)
    assert np.allclose(apply_temperature(probs, 1.8).sum(axis=1), 1.0)


def test_mean_ci_matches_scipy_t_interval():
    folds = [0.71, 0.74, 0.69, 0.80, 0.77]
    low, high = stats.t.interval(0.95, len(folds) - 1, loc=np.mean(folds), scale=stats.sem(folds))
    ci = mean_ci(folds)
    assert (ci["low"], ci["high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))


def test_mean_ci_of_one_fold_has_no_interval():
    assert mean_ci([0.7]) == {"mean": 0.7, "low": None, "high": None, "sd": None, "n": 1, "level": 0.95}


def test_plot_reliability_writes_a_png(tmp_path):
    probs, y = calibrated(n=500)
    sharp = apply_temperature(probs, 0.5)
    curves = {
        f"before (ECE {expected_calibration_error(sharp, y):.2f})": (sharp, y),
        f"after (ECE {expected_calibration_error(probs, y):.2f})": (probs, y),
    }
    out = plot_reliability(curves, tmp_path / "reliability.png", "calibration")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and [p.name for p in tmp_path.iterdir()] == [out.name]


@pytest.mark.parametrize(
    ("ci", "text"),
    [
        ({"value": 0.7341, "low": 0.6519, "high": 0.8012}, "0.734 [0.652, 0.801]"),
        ({"mean": 0.5, "low": None, "high": None}, "0.500 [—, —]"),
        ({"difference": -0.02, "low": -0.05, "high": 0.01}, "-0.020 [-0.050, 0.010]"),
    ],
)
def test_format_ci(ci, text):
    assert format_ci(ci) == text
