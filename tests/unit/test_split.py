import numpy as np
import pytest
from insectml.data.split import grouped_split
from insectml.errors import ConfigError


def data(n_classes=4, n_groups=12, per=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"c{i % n_classes}" for i in range(per * n_classes)]
    groups = [f"g{g}" for g in rng.integers(n_groups, size=len(labels))]
    return labels, groups


def test_no_group_on_two_sides():
    labels, groups = data()
    split = grouped_split(labels, groups, 0.15, 0.2, seed=1)
    sides = {}
    for g, s in zip(groups, split, strict=True):
        sides.setdefault(g, set()).add(s)
    assert all(len(s) == 1 for s in sides.values())


def test_every_class_on_every_side():
    labels, groups = data()
    split = grouped_split(labels, groups, 0.15, 0.2, seed=1)
    for c in set(labels):
        assert {s for lab, s in zip(labels, split, strict=True) if lab == c} == {"train", "val", "test"}


def test_same_seed_same_split_other_seed_other_split():
    labels, groups = data()
    a = grouped_split(labels, groups, 0.15, 0.2, seed=3)
    assert a == grouped_split(labels, groups, 0.15, 0.2, seed=3)
    assert a != grouped_split(labels, groups, 0.15, 0.2, seed=4)


def test_class_in_too_few_groups_is_named():
    labels, groups = data()
    labels += ["rare"] * 5
    groups += ["g0", "g1", "g0", "g1", "g0"]
    with pytest.raises(ConfigError, match="class 'rare' has recordings from only 2 group"):
        grouped_split(labels, groups, 0.15, 0.2, seed=1)


def test_too_few_groups_overall_is_a_clear_error():
    labels, groups = data(n_groups=4)
    with pytest.raises(ConfigError, match="only 4 groups in the data"):
        grouped_split(labels, groups, 0.15, 0.2, seed=1)
