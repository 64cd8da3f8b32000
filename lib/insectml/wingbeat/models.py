"""Classical wingbeat models on engineered features, built by name."""

from __future__ import annotations

from collections.abc import Callable

from insectml.errors import ConfigError


def _random_forest(seed: int, threads: int):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=300, min_samples_leaf=1, class_weight="balanced", random_state=seed, n_jobs=threads
    )


def _hist_gradient_boosting(seed: int, threads: int):
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)


def _logistic_regression(seed: int, threads: int):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=2000, random_state=seed)


def _svm(seed: int, threads: int):
    from sklearn.svm import SVC

    return SVC(C=10.0, gamma="scale", probability=True, random_state=seed)


CLASSICAL_MODELS: dict[str, Callable] = {
    "random_forest": _random_forest,
    "hist_gradient_boosting": _hist_gradient_boosting,
    "logistic_regression": _logistic_regression,
    "svm": _svm,
}


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """``["n_estimators=500", "max_depth=12"]`` → ``{"n_estimators": "500", ...}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out


def _coerce(key: str, text: str, current: object) -> object:
    if text.lower() in ("none", "null"):
        return None
    if isinstance(current, bool):
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"--set {key}={text}: expected true or false")
        return text.lower() == "true"
    for kind in (int, float):
        if isinstance(current, kind) or current is None:
            try:
                return kind(text)
            except ValueError:
                if current is not None:
                    raise ConfigError(f"--set {key}={text}: expected a {kind.__name__}") from None
    return text


def create_classical(name: str, seed: int, overrides: dict[str, str], threads: int = 1):
    """A scaler + classifier pipeline; ``overrides`` set the classifier's hyperparameters."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    if name not in CLASSICAL_MODELS:
        raise ConfigError(f"unknown model '{name}' (choose from: {', '.join(CLASSICAL_MODELS)})")
    estimator = CLASSICAL_MODELS[name](seed, threads)
    current = estimator.get_params()
    values = {}
    for key, text in overrides.items():
        if key not in current:
            raise ConfigError(f"--set {key}: not a parameter of {name} (valid: {', '.join(sorted(current))})")
        values[key] = _coerce(key, text, current[key])
    try:
        estimator.set_params(**values)
    except ValueError as exc:
        raise ConfigError(f"--set for {name}: {exc}") from None
    return Pipeline([("scale", StandardScaler()), ("model", estimator)])
