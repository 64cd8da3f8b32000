"""Honest numbers for small data: bootstrap intervals and calibration, shared by all families.

Intervals resample whole groups (recording sessions, sites, individuals) when groups are
given, because rows within a group are not independent and a row bootstrap would
understate the uncertainty. Everything is seeded: same inputs and seed, same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterator, Sequence
from pathlib import Path

import numpy as np

from insectml.fileio import open_atomic

Metric = Callable[[np.ndarray], float]

_PROB_FLOOR = 1e-12
_T_BOUNDS = (0.05, 20.0)


def _rounded(x: float | None) -> float | None:
    """``x`` rounded to 6 decimals, or None when it is missing or nan (JSON has no nan)."""
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), 6)


def _group_codes(groups: Sequence[Hashable], n: int) -> np.ndarray:
    """Integer codes 0..G-1 for any hashable group labels, in order of first appearance."""
    if len(groups) != n:
        raise ValueError(f"groups has {len(groups)} entries for {n} rows")
    index: dict[Hashable, int] = {}
    return np.fromiter((index.setdefault(g, len(index)) for g in groups), dtype=np.int64, count=n)


def _resamples(
    n: int, groups: Sequence[Hashable] | None, n_boot: int, seed: int
) -> tuple[str, int, Iterator[np.ndarray]]:
    """(unit, number of units, iterator over ``n_boot`` resampled row indices)."""
    if n < 1:
        raise ValueError("cannot bootstrap zero rows")
    rng = np.random.default_rng(seed)
    if groups is None:
        return "row", n, (rng.integers(0, n, size=n) for _ in range(n_boot))
    codes = _group_codes(groups, n)
    order = np.argsort(codes, kind="stable")  # rows of group g are order[starts[g]:starts[g]+counts[g]]
    counts = np.bincount(codes)
    starts = np.cumsum(counts) - counts
    n_groups = len(counts)

    def draw() -> np.ndarray:
        chosen = rng.integers(0, n_groups, size=n_groups)
        lengths = counts[chosen]
        shift = np.repeat(starts[chosen] - (np.cumsum(lengths) - lengths), lengths)
        return order[np.arange(lengths.sum()) + shift]

    return "group", n_groups, (draw() for _ in range(n_boot))


def _percentiles(values: list[float], n_boot: int, level: float) -> tuple[float | None, float | None]:
    """Percentile interval of the finite resample values; None when over half were nan."""
    if len(values) * 2 < n_boot or not values:
        return None, None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return _rounded(low), _rounded(high)


def bootstrap_ci(
    metric: Metric,
    n: int,
    groups: Sequence[Hashable] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Percentile bootstrap interval of ``metric`` over ``n`` rows (or over whole groups).

    ``metric(idx)`` scores the rows ``idx`` (repeats allowed). Resamples where it returns
    nan are skipped and counted in ``n_skipped``; if more than half are, low/high are None.
    """
    unit, n_units, draws = _resamples(n, groups, n_boot, seed)
    values = [v for v in (metric(idx) for idx in draws) if math.isfinite(v)]
    low, high = _percentiles(values, n_boot, level)
    return {
        "value": _rounded(metric(np.arange(n))),
        "low": low,
        "high": high,
        "level": level,
        "n_boot": n_boot,
        "n_skipped": n_boot - len(values),
        "unit": unit,
        "n_units": n_units,
    }


def paired_bootstrap_diff(
    metric_a: Metric,
    metric_b: Metric,
    n: int,
    groups: Sequence[Hashable] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Bootstrap interval of ``metric_a - metric_b``, both scored on the same resamples.

    ``p_not_better`` is the share of (non-nan) resamples where a does not beat b.
    """
    unit, n_units, draws = _resamples(n, groups, n_boot, seed)
    diffs = [d for d in (metric_a(idx) - metric_b(idx) for idx in draws) if math.isfinite(d)]
    low, high = _percentiles(diffs, n_boot, level)
    everything = np.arange(n)
    return {
        "difference": _rounded(metric_a(everything) - metric_b(everything)),
        "low": low,
        "high": high,
        "p_not_better": _rounded(float(np.mean(np.asarray(diffs) <= 0))) if low is not None else None,
        "level": level,
        "n_boot": n_boot,
        "n_skipped": n_boot - len(diffs),
        "unit": unit,
        "n_units": n_units,
    }


def mean_ci(values: Sequence[float], level: float = 0.95) -> dict:
    """Mean of fold scores with a Student-t interval; one fold gives no interval (None)."""
    from scipy import stats

    scores = np.asarray(values, dtype=float)
    if scores.size == 0:
        raise ValueError("mean_ci needs at least one value")
    mean = float(scores.mean())
    if scores.size == 1:
        return {"mean": _rounded(mean), "low": None, "high": None, "sd": None, "n": 1, "level": level}
    sd = float(scores.std(ddof=1))
    half = float(stats.t.ppf((1 + level) / 2, scores.size - 1)) * sd / math.sqrt(scores.size)
    return {
        "mean": _rounded(mean),
        "low": _rounded(mean - half),
        "high": _rounded(mean + half),
        "sd": _rounded(sd),
        "n": int(scores.size),
        "level": level,
    }


def macro_f1_on(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> Metric:
    """A metric ``idx -> macro-F1`` over the classes present in truth or prediction on ``idx``.

    Classes absent from a resample are left out rather than scored 0. Built on a bincount
    confusion matrix so that a thousand resamples stay fast; nan for an empty ``idx``.
    """
    cells = np.asarray(y_true, dtype=np.int64) * n_classes + np.asarray(y_pred, dtype=np.int64)

    def metric(idx: np.ndarray) -> float:
        confusion = np.bincount(cells[idx], minlength=n_classes * n_classes).reshape(n_classes, n_classes)
        marginals = confusion.sum(axis=0) + confusion.sum(axis=1)
        present = marginals > 0
        if not present.any():
            return float("nan")
        return float(np.mean(2 * np.diag(confusion)[present] / marginals[present]))

    return metric


def accuracy_on(y_true: np.ndarray, y_pred: np.ndarray) -> Metric:
    """A metric ``idx -> accuracy`` on the rows ``idx``; nan for an empty ``idx``."""
    correct = (np.asarray(y_true) == np.asarray(y_pred)).astype(float)

    def metric(idx: np.ndarray) -> float:
        return float(correct[idx].mean()) if len(idx) else float("nan")

    return metric


def _top_label(probs: np.ndarray, y_true: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(confidence, correct as 0/1, bin index) per row; bins are (k/n, (k+1)/n], 0 in the first."""
    probs = np.asarray(probs, dtype=float)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == np.asarray(y_true)).astype(float)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    return confidence, correct, bins


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> list[dict]:
    """Per non-empty equal-width confidence bin: its edges, row count, mean confidence and accuracy."""
    confidence, correct, bins = _top_label(probs, y_true, n_bins)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sum = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(bins, weights=correct, minlength=n_bins)
    return [
        {
            "low": _rounded(k / n_bins),
            "high": _rounded((k + 1) / n_bins),
            "count": int(counts[k]),
            "confidence": _rounded(conf_sum[k] / counts[k]),
            "accuracy": _rounded(correct_sum[k] / counts[k]),
        }
        for k in range(n_bins)
        if counts[k]
    ]


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """Top-label ECE: the count-weighted mean gap between confidence and accuracy per bin."""
    confidence, correct, bins = _top_label(probs, y_true, n_bins)
    gap = np.bincount(bins, weights=confidence - correct, minlength=n_bins)
    return float(np.abs(gap).sum() / len(confidence))


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fit_temperature(logits_or_logprobs: np.ndarray, y_true: np.ndarray) -> float:
    """The T in [0.05, 20] minimising the mean NLL of ``softmax(z / T)`` on ``y_true``.

    ``z`` may be logits or log-probabilities (log of ``predict_proba`` clipped at 1e-12):
    softmax is unchanged by a per-row shift, so both give the same T.
    """
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    z = np.asarray(logits_or_logprobs, dtype=float)
    if z.ndim != 2 or len(z) == 0 or not np.isfinite(z).all():
        raise ValueError("fit_temperature needs a non-empty, finite (rows, classes) array")
    z_true = z[np.arange(len(z)), np.asarray(y_true)]

    def nll(log_t: float) -> float:
        t = math.exp(log_t)
        return float(np.mean(logsumexp(z / t, axis=1) - z_true / t))

    result = minimize_scalar(nll, bounds=tuple(math.log(b) for b in _T_BOUNDS), method="bounded")
    return float(math.exp(result.x))


def apply_temperature(probs: np.ndarray, T: float) -> np.ndarray:
    """``softmax(log(clip(probs, 1e-12)) / T)`` along the last axis; T == 1 returns ``probs`` itself."""
    if T == 1.0:
        return probs
    if not T > 0:
        raise ValueError(f"temperature must be > 0, got {T}")
    return softmax(np.log(np.clip(np.asarray(probs, dtype=float), _PROB_FLOOR, None)) / T)


def plot_reliability(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, n_bins: int = 15
) -> Path:
    """A reliability diagram, one line per named ``(probs, y_true)`` curve, with per-bin
    counts below; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    for name, (probs, y_true) in curves.items():
        rows = reliability_bins(probs, y_true, n_bins)
        line = top.plot([r["confidence"] for r in rows], [r["accuracy"] for r in rows], marker="o", label=name)
        counts = np.bincount(_top_label(probs, y_true, n_bins)[2], minlength=n_bins)
        bottom.stairs(counts, np.linspace(0, 1, n_bins + 1), color=line[0].get_color())
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title)
    top.legend(loc="upper left", fontsize=8)
    bottom.set(xlabel="confidence (top label)", ylabel="count")
    fig.tight_layout()
    with open_atomic(Path(path), "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)
    return Path(path)


def format_ci(ci: dict, digits: int = 3) -> str:
    """``"0.734 [0.652, 0.801]"`` from a dict of this module; "—" for a missing part."""
    key = next(k for k in ("value", "mean", "difference") if k in ci)

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.{digits}f}"

    return f"{fmt(ci[key])} [{fmt(ci['low'])}, {fmt(ci['high'])}]"
