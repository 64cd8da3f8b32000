"""Seeded, stratified, grouped train/val/test splits.

No group (specimen, recording event) ever lands on two sides of a split, and each
class is spread over every side in proportion, as far as its groups allow.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from insectml.errors import ConfigError

SPLITS = ("train", "val", "test")


def grouped_split(
    labels: Sequence[str],
    groups: Sequence[str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    require_every_class: bool = True,
    unit: str = "recording",
) -> list[str]:
    """Assign ``train``/``val``/``test`` to each sample.

    Raises :class:`ConfigError` naming the class when a class lives in too few
    groups to appear on every side (unless ``require_every_class`` is off, as for
    detection, where the stratification label is only an image's dominant class).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 0 < test_fraction < 0.5 or not 0 < val_fraction < 0.5:
        raise ConfigError(f"val/test fractions must be in (0, 0.5); got val={val_fraction}, test={test_fraction}")
    groups_of: dict[str, set[str]] = defaultdict(set)
    counts: dict[str, int] = defaultdict(int)
    for label, group in zip(labels, groups, strict=True):
        groups_of[label].add(group)
        counts[label] += 1
    for label, n in sorted(counts.items()) if require_every_class else ():
        if n < len(SPLITS):
            raise ConfigError(f"class '{label}' has {n} {unit}(s); a train/val/test split needs at least {len(SPLITS)}")
    for label, gs in sorted(groups_of.items()) if require_every_class else ():
        if len(gs) < len(SPLITS):
            raise ConfigError(
                f"class '{label}' has {unit}s from only {len(gs)} group(s); "
                f"a grouped train/val/test split needs at least {len(SPLITS)}"
            )

    y = np.asarray(labels)
    g = np.asarray(groups)
    split = np.full(len(y), "train", dtype=object)

    test_folds = max(2, round(1 / test_fraction))
    val_folds = max(2, round((1 - test_fraction) / val_fraction))
    n_groups = len(set(groups))
    if n_groups < test_folds:
        raise _too_few_groups(n_groups, test_fraction, val_fraction, max(test_folds, val_folds + 1))
    outer = StratifiedGroupKFold(n_splits=test_folds, shuffle=True, random_state=seed)
    rest_idx, test_idx = next(outer.split(np.zeros(len(y)), y, g))
    split[test_idx] = "test"

    rest_groups = len(set(g[rest_idx]))
    if rest_groups < val_folds:
        raise _too_few_groups(n_groups, test_fraction, val_fraction, n_groups - rest_groups + val_folds)
    inner = StratifiedGroupKFold(n_splits=val_folds, shuffle=True, random_state=seed + 1)
    _, val_rel = next(inner.split(np.zeros(len(rest_idx)), y[rest_idx], g[rest_idx]))
    split[rest_idx[val_rel]] = "val"

    for label in sorted(groups_of) if require_every_class else ():
        missing = [s for s in SPLITS if not np.any((y == label) & (split == s))]
        if missing:
            raise ConfigError(
                f"class '{label}' ends up with no samples in {'/'.join(missing)}; "
                f"it needs {unit}s from more groups ({len(groups_of[label])} now)"
            )
    return split.tolist()


def _too_few_groups(n_groups: int, test_fraction: float, val_fraction: float, needed: int) -> ConfigError:
    return ConfigError(
        f"only {n_groups} groups in the data; a grouped split with test fraction {test_fraction} and "
        f"val fraction {val_fraction} needs at least {needed} (use larger fractions or data from more groups)"
    )
