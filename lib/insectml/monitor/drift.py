"""Two-sample drift tests: reference (what the model was released with) against served
traffic (the prediction log). Each test returns a :class:`Result` (statistic, p-value,
threshold, flagged); none reads files.

A test flags only when the difference is both significant (p below ``alpha``) and large
enough to matter (an effect size over its threshold: PSI, the KS distance, the
Jensen–Shannon distance, the rate difference, the classifier AUC). Significance alone
flags negligible shifts once the log holds many thousands of requests; an effect size
alone is noise on the few dozen requests of a quiet day.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np

from insectml.errors import ConfigError

# Embedding tests subsample each side to this many rows: the kernel matrix of MMD is
# (2 × MAX_ROWS)², and more rows add little power once a shift is visible.
MAX_ROWS = 1000
PERMUTATIONS = 500
PSI_BINS = 10
BANDWIDTHS = (0.25, 0.5, 1.0, 2.0, 4.0)  # MMD kernel bandwidths, × the median distance


@dataclass(frozen=True)
class Thresholds:
    """When a test flags: p < ``alpha`` (per-feature p-values Benjamini–Hochberg
    adjusted over the features) and its effect size at or over its threshold."""

    alpha: float = 0.01
    psi: float = 0.25  # population stability index of a feature (0.1 moderate, 0.25 large)
    ks: float = 0.1  # Kolmogorov–Smirnov distance of the top scores
    js: float = 0.1  # Jensen–Shannon distance (base 2, 0 … 1) of class mixes and box counts
    rate: float = 0.05  # absolute difference of the unknown rates
    auc: float = 0.65  # classifier two-sample test: AUC telling served from reference
    min_records: int = 20  # fewer usable log records than this: nothing can be said (exit 2)

    @classmethod
    def parse(cls, text: str | None) -> Thresholds:
        """``"alpha=0.05,psi=0.2"`` → thresholds (the rest at their defaults); a
        :class:`ConfigError` naming the bad item."""
        if not text:
            return cls()
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, float | int] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, raw = item.partition("=")
            key = key.strip()
            if not sep or key not in kinds:
                raise ConfigError(f"--thresholds: {item!r} is not NAME=VALUE with NAME one of {', '.join(kinds)}")
            try:
                value = int(raw) if kinds[key] == "int" else float(raw)
            except ValueError:
                kind = "a whole number" if kinds[key] == "int" else "a number"
                raise ConfigError(f"--thresholds: {key}={raw!r} is not {kind}") from None
            if value < 0 or (key == "alpha" and not 0 < value < 1) or not math.isfinite(value):
                raise ConfigError(f"--thresholds: {key}={raw} is out of range")
            values[key] = value
        return cls(**values)


@dataclass(frozen=True)
class Result:
    """One test. ``statistic`` is the test's own (KS D, chi², MMD², AUC, …), ``effect``
    the effect size the threshold applies to, ``threshold`` says when it flags."""

    name: str
    method: str
    statistic: float
    p_value: float | None
    effect: float
    threshold: str
    flagged: bool
    n_reference: int
    n_served: int
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: json_ready(v) for k, v in asdict(self).items()}

    def line(self) -> str:
        """One line for the terminal: which test, by how much, against what."""
        p = "—" if self.p_value is None else f"{self.p_value:.3g}"
        return (
            f"{self.name}: {self.method} statistic={self.statistic:.4g} effect={self.effect:.4g} p={p} "
            f"(flags when {self.threshold}; {self.n_served} served vs {self.n_reference} reference)"
        )


def json_ready(value):
    """``value`` with numpy numbers made Python ones and non-finite floats None (JSON has no NaN)."""
    if isinstance(value, float | np.floating):
        return float(f"{value:.6g}") if math.isfinite(float(value)) else None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def psi(reference: np.ndarray, served: np.ndarray, bins: int = PSI_BINS) -> float:
    """Population stability index: sum over the reference's quantile bins of
    (served share − reference share) × ln(served share / reference share). Shares are
    smoothed by half a count per bin, so an empty bin gives a large finite value."""
    inner = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    edges = np.unique(inner)
    ref = np.bincount(np.searchsorted(edges, reference, side="right"), minlength=len(edges) + 1) + 0.5
    cur = np.bincount(np.searchsorted(edges, served, side="right"), minlength=len(edges) + 1) + 0.5
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def feature_drift(
    reference: np.ndarray, served: np.ndarray, names: Sequence[str], th: Thresholds
) -> tuple[Result, list[dict]]:
    """Per feature (columns of both arrays, NaN = missing): PSI and the two-sample
    Kolmogorov–Smirnov test, p-values Benjamini–Hochberg adjusted over the features. A
    feature drifts when its adjusted p < alpha and its PSI ≥ psi; the summary test flags
    when any feature drifts. The per-feature rows come back most drifted first (by PSI)."""
    from scipy import stats

    rows = []
    for j, name in enumerate(names):
        ref, cur = reference[:, j], served[:, j]
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        if len(ref) < 2 or len(cur) < 2:
            rows.append({"feature": name, "psi": None, "ks": None, "p_value": None, "n_served": len(cur)})
            continue
        ks = stats.ks_2samp(ref, cur)
        rows.append(
            {
                "feature": name,
                "psi": psi(ref, cur),
                "ks": float(ks.statistic),
                "p_value": float(ks.pvalue),
                "n_served": len(cur),
                "reference_median": float(np.median(ref)),
                "served_median": float(np.median(cur)),
            }
        )
    tested = [r for r in rows if r["p_value"] is not None]
    adjusted = stats.false_discovery_control([r["p_value"] for r in tested], method="bh") if tested else []
    for r, q in zip(tested, adjusted, strict=True):
        r["p_adjusted"] = float(q)
        r["flagged"] = bool(q < th.alpha and r["psi"] >= th.psi)
    for r in rows:
        r.setdefault("p_adjusted", None)
        r.setdefault("flagged", False)
    rows.sort(key=lambda r: -1.0 if r["psi"] is None else r["psi"], reverse=True)
    drifted = [r["feature"] for r in rows if r["flagged"]]
    worst = min(tested, key=lambda r: r["p_adjusted"], default=None)
    summary = Result(
        name="features",
        method="KS + PSI per feature (BH)",
        statistic=float(len(drifted)),
        p_value=worst["p_adjusted"] if worst else None,
        effect=max((r["psi"] for r in tested), default=0.0),
        threshold=f"a feature has BH-adjusted KS p < {th.alpha:g} and PSI ≥ {th.psi:g}",
        flagged=bool(drifted),
        n_reference=len(reference),
        n_served=int(np.isfinite(served).any(axis=1).sum()),
        details={"drifted_features": drifted, "features_tested": len(tested), "features": len(names)},
    )
    return summary, rows


def ks_drift(name: str, reference: np.ndarray, served: np.ndarray, th: Thresholds) -> Result:
    """Two-sample KS test of a score (e.g. the top score of each answer)."""
    from scipy import stats

    ks = stats.ks_2samp(reference, served)
    return Result(
        name=name,
        method="two-sample Kolmogorov–Smirnov",
        statistic=float(ks.statistic),
        p_value=float(ks.pvalue),
        effect=float(ks.statistic),
        threshold=f"p < {th.alpha:g} and D ≥ {th.ks:g}",
        flagged=bool(ks.pvalue < th.alpha and ks.statistic >= th.ks),
        n_reference=len(reference),
        n_served=len(served),
        details={"reference_median": float(np.median(reference)), "served_median": float(np.median(served))},
    )


def proportion_drift(name: str, reference: np.ndarray, served: np.ndarray, th: Thresholds) -> Result:
    """Two-proportion z-test (pooled) of a yes/no rate, e.g. how often the answer is unknown."""
    from scipy import stats

    n1, n2 = len(reference), len(served)
    p1, p2 = float(np.mean(reference)), float(np.mean(served))
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (p2 - p1) / se if se > 0 else 0.0
    p = float(2 * stats.norm.sf(abs(z)))
    return Result(
        name=name,
        method="two-proportion z-test",
        statistic=z,
        p_value=p,
        effect=abs(p2 - p1),
        threshold=f"p < {th.alpha:g} and |difference| ≥ {th.rate:g}",
        flagged=bool(p < th.alpha and abs(p2 - p1) >= th.rate),
        n_reference=n1,
        n_served=n2,
        details={"reference_rate": p1, "served_rate": p2},
    )


def categorical_drift(name: str, reference: Sequence[str], served: Sequence[str], th: Thresholds) -> Result:
    """Chi-square test of the 2 × categories table (reference vs served counts) and the
    Jensen–Shannon distance of the two mixes; categories seen on one side only count."""
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    ref, cur = Counter(reference), Counter(served)
    categories = sorted(set(ref) | set(cur))
    table = np.array([[ref[c] for c in categories], [cur[c] for c in categories]], dtype=float)
    if len(categories) < 2:
        chi2, p = 0.0, 1.0
    else:
        test = stats.chi2_contingency(table)
        chi2, p = float(test.statistic), float(test.pvalue)
    js = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum(), base=2))
    mix = {
        c: {"reference": table[0, i] / table[0].sum(), "served": table[1, i] / table[1].sum()}
        for i, c in enumerate(categories)
    }
    return Result(
        name=name,
        method="chi-square + Jensen–Shannon",
        statistic=chi2,
        p_value=p,
        effect=js,
        threshold=f"p < {th.alpha:g} and JS distance ≥ {th.js:g}",
        flagged=bool(p < th.alpha and js >= th.js),
        n_reference=len(reference),
        n_served=len(served),
        details={"mix": mix, "new_categories": sorted(set(cur) - set(ref))},
    )


def _subsample(x: np.ndarray, rng: np.random.Generator, limit: int = MAX_ROWS) -> np.ndarray:
    return x if len(x) <= limit else x[rng.choice(len(x), limit, replace=False)]


def mmd_drift(
    name: str,
    reference: np.ndarray,
    served: np.ndarray,
    th: Thresholds,
    seed: int = 0,
    permutations: int = PERMUTATIONS,
) -> Result:
    """Maximum mean discrepancy with a Gaussian (RBF) kernel, unbiased MMD², p-value by
    ``permutations`` seeded label permutations; each side subsampled to :data:`MAX_ROWS`.
    The kernel is the mean of RBF kernels of bandwidths :data:`BANDWIDTHS` × the median
    distance of the pooled rows: the median alone is too wide for embeddings of many
    classes (most distances are between classes), and a narrower scale sees a new cluster.
    Flags when p < alpha: MMD² has no scale-free size, so significance is its threshold,
    and the subsample caps how small a shift it can call significant."""
    rng = np.random.default_rng(seed)
    x = _subsample(np.asarray(reference, np.float64), rng)
    y = _subsample(np.asarray(served, np.float64), rng)
    z = np.vstack([x, y])
    n, m, total = len(x), len(y), len(x) + len(y)
    sq = np.sum(z**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    off = d2[np.triu_indices(total, 1)]
    median2 = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    k = np.zeros_like(d2)
    for scale in BANDWIDTHS:
        k += np.exp(-d2 / (2 * scale * scale * median2))
    k /= len(BANDWIDTHS)

    # column 0: the observed split; the others: permutations. a = indicator of "reference".
    a = np.zeros((total, permutations + 1))
    a[:n, 0] = 1.0
    for col in range(1, permutations + 1):
        a[rng.permutation(total)[:n], col] = 1.0
    ka = k @ a
    rows = k.sum(axis=1)
    aka = np.einsum("ij,ij->j", a, ka)
    ak1 = a.T @ rows
    bkb = rows.sum() - 2 * ak1 + aka
    akb = ak1 - aka
    # the kernel's diagonal is 1: drop it from the within-sample means (unbiased MMD²)
    mmd2 = (aka - n) / (n * (n - 1)) + (bkb - m) / (m * (m - 1)) - 2 * akb / (n * m)
    p = float((1 + np.sum(mmd2[1:] >= mmd2[0])) / (1 + permutations))
    return Result(
        name=name,
        method=f"MMD (RBF, bandwidths {'/'.join(f'{b:g}' for b in BANDWIDTHS)} × median, {permutations} permutations)",
        statistic=float(mmd2[0]),
        p_value=p,
        effect=float(mmd2[0]),
        threshold=f"permutation p < {th.alpha:g}",
        flagged=bool(p < th.alpha),
        n_reference=n,
        n_served=m,
        details={"median_distance": math.sqrt(median2), "null_mean": float(mmd2[1:].mean())},
    )


def classifier_drift(name: str, reference: np.ndarray, served: np.ndarray, th: Thresholds, seed: int = 0) -> Result:
    """Classifier two-sample test: a logistic regression (standardised inputs, balanced
    classes) learns to tell served rows from reference rows; its out-of-fold AUC (5-fold)
    is 0.5 when they cannot be told apart. p-value: one-sided Mann–Whitney U of the
    out-of-fold scores; 95% interval: seeded bootstrap of the AUC."""
    from scipy import stats
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    x = _subsample(np.asarray(reference, np.float64), rng)
    y = _subsample(np.asarray(served, np.float64), rng)
    data = np.vstack([x, y])
    target = np.r_[np.zeros(len(x)), np.ones(len(y))]
    folds = StratifiedKFold(n_splits=min(5, len(x), len(y)), shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000))
    scores = cross_val_predict(model, data, target, cv=folds, method="predict_proba")[:, 1]
    auc = float(roc_auc_score(target, scores))
    p = float(stats.mannwhitneyu(scores[target == 1], scores[target == 0], alternative="greater").pvalue)
    boot = []
    for _ in range(500):
        idx = rng.integers(0, len(target), len(target))
        if 0 < target[idx].sum() < len(idx):
            boot.append(roc_auc_score(target[idx], scores[idx]))
    low, high = (float(v) for v in np.percentile(boot, [2.5, 97.5])) if boot else (None, None)
    return Result(
        name=name,
        method="classifier two-sample test (logistic regression, 5-fold AUC)",
        statistic=auc,
        p_value=p,
        effect=auc,
        threshold=f"p < {th.alpha:g} and AUC ≥ {th.auc:g}",
        flagged=bool(p < th.alpha and auc >= th.auc),
        n_reference=len(x),
        n_served=len(y),
        details={"auc_low": low, "auc_high": high, "level": 0.95},
    )
