import itertools
from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from insectml.data.split import SPLITS, grouped_kfold, grouped_split
from insectml.errors import ConfigError
from insectml.wingbeat.family import PARAMS as WINGBEAT

BOUNDED = settings(max_examples=150, deadline=None)
fraction = st.floats(min_value=0.001, max_value=0.499)


def data(n_classes=4, n_groups=12, per=60, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"c{i % n_classes}" for i in range(per * n_classes)]
    groups = [f"g{g}" for g in rng.integers(n_groups, size=len(labels))]
    return labels, groups


def samples(structure):
    """{group: {class: count}} -> (labels, groups), one entry per sample."""
    labels, groups = [], []
    for g, classes in structure.items():
        for c, n in classes.items():
            labels += [c] * n
            groups += [g] * n
    return labels, groups


def sides_of(labels, sides):
    on = defaultdict(set)
    for label, side in zip(labels, sides, strict=True):
        on[label].add(side)
    return on


def groups_split(groups, sides):
    on = defaultdict(set)
    for group, side in zip(groups, sides, strict=True):
        on[group].add(side)
    return [g for g, s in on.items() if len(s) > 1]


@st.composite
def single_class_groups(draw, min_groups=3, max_groups=8):
    """Each class in its own min..max groups of random sizes."""
    structure = {}
    for c in range(draw(st.integers(1, 6))):
        for i in range(draw(st.integers(min_groups, max_groups))):
            structure[f"c{c}-g{i}"] = {f"c{c}": draw(st.integers(1, 30))}
    return structure


@st.composite
def shared_groups(draw, max_groups=7):
    """Up to ``max_groups`` groups, each class in a random subset of at least three of
    them: whether a split exists then hangs on how the classes share groups."""
    n_groups = draw(st.integers(3, max_groups))
    structure = defaultdict(dict)
    for c in range(draw(st.integers(1, 6))):
        members = draw(st.lists(st.integers(0, n_groups - 1), min_size=3, max_size=n_groups, unique=True))
        for g in members:
            structure[f"g{g}"][f"c{c}"] = draw(st.integers(1, 5))
    return dict(structure)


def feasible(structure, n_sides=3):
    """Brute force: can the groups go to sides so that every class is on every side?"""
    names = list(structure)
    for sides in itertools.product(range(n_sides), repeat=len(names)):
        on = defaultdict(set)
        for g, s in zip(names, sides, strict=True):
            for c in structure[g]:
                on[c].add(s)
        if all(len(s) == n_sides for s in on.values()):
            return True
    return False


def test_no_group_on_two_sides():
    labels, groups = data()
    split = grouped_split(labels, groups, 0.15, 0.2, seed=1)
    assert groups_split(groups, split) == []


def test_every_class_on_every_side():
    labels, groups = data()
    split = grouped_split(labels, groups, 0.15, 0.2, seed=1)
    assert all(s == set(SPLITS) for s in sides_of(labels, split).values())


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
    labels, groups = data(n_groups=2)
    with pytest.raises(ConfigError, match="only 2 groups in the data"):
        grouped_split(labels, groups, 0.15, 0.2, seed=1, require_every_class=False, unit="image")


def test_three_sessions_per_species_split_with_the_default_fractions():
    # issue #15: six species, three recording sessions each, the wingbeat defaults
    structure = {f"s{s}-session{i}": {f"s{s}": 20 + 7 * i} for s in range(6) for i in range(3)}
    labels, groups = samples(structure)
    val, test = WINGBEAT.default("wingbeat_val_fraction"), WINGBEAT.default("wingbeat_test_fraction")
    split = grouped_split(labels, groups, val, test, seed=0)
    assert all(s == set(SPLITS) for s in sides_of(labels, split).values())


def test_groups_shared_so_that_no_split_exists_are_refused_naming_the_classes():
    # every pair of the 4 groups shares a class, so two groups on one side always leave a class short
    structure = defaultdict(dict)
    for c, gs in {"A": (1, 2, 3), "B": (1, 2, 4), "C": (1, 3, 4), "D": (2, 3, 4)}.items():
        for g in gs:
            structure[f"day{g}"][c] = 2
    with pytest.raises(ConfigError, match=r"^classes '[ABCD]', '[ABCD]', '[ABCD]', '[ABCD]' cannot all be placed") as e:
        grouped_split(*samples(structure), 0.15, 0.2, seed=0)
    assert "\n" not in str(e.value)


def test_shared_groups_split_when_only_a_careful_assignment_exists():
    # 'a' and 'b' share every group; 'b' has exactly three, so they must go to three different sides
    structure = {"d1": {"a": 30, "b": 1}, "d2": {"a": 30, "b": 1}, "d3": {"a": 30, "b": 1}, "d4": {"a": 1}}
    labels, groups = samples(structure)
    split = grouped_split(labels, groups, 0.15, 0.2, seed=0)
    assert all(s == set(SPLITS) for s in sides_of(labels, split).values())


@BOUNDED
@given(single_class_groups(), fraction, fraction, st.integers(0, 2**32 - 1))
def test_single_class_groups_always_split_every_class_on_every_side(structure, val, test, seed):
    labels, groups = samples(structure)
    split = grouped_split(labels, groups, val, test, seed=seed)
    assert all(s == set(SPLITS) for s in sides_of(labels, split).values())
    assert groups_split(groups, split) == []
    assert split == grouped_split(labels, groups, val, test, seed=seed)


@BOUNDED
@given(shared_groups(), fraction, fraction, st.integers(0, 2**32 - 1))
def test_shared_groups_split_exactly_when_some_assignment_exists(structure, val, test, seed):
    labels, groups = samples(structure)
    try:
        split = grouped_split(labels, groups, val, test, seed=seed)
    except ConfigError:
        assert not feasible(structure)
    else:
        assert all(s == set(SPLITS) for s in sides_of(labels, split).values())
        assert groups_split(groups, split) == []
        assert split == grouped_split(labels, groups, val, test, seed=seed)


@BOUNDED
@given(st.integers(2, 4), st.data())
def test_kfold_on_shared_groups_succeeds_exactly_when_some_assignment_exists(k, draw):
    structure = draw.draw(shared_groups(max_groups=6))
    labels, groups = samples(structure)
    try:
        folds = grouped_kfold(labels, groups, k, seed=draw.draw(st.integers(0, 2**32 - 1)))
    except ConfigError:
        assert not feasible(structure, n_sides=k)
    else:
        assert all(s == set(range(k)) for s in sides_of(labels, folds).values())
        assert groups_split(groups, folds) == []


def misfit(labels, groups, sides, fractions):
    """Squared distance of every class's and of the overall side counts from their targets,
    each class weighted by 1 / its size."""
    n, got, overall = Counter(labels), Counter(zip(labels, sides, strict=True)), Counter(sides)
    per_class = sum((got[c, s] - f * n[c]) ** 2 / n[c] for c in n for s, f in fractions.items())
    return per_class + sum((overall[s] - f * len(labels)) ** 2 / len(labels) for s, f in fractions.items())


@BOUNDED
@given(shared_groups(), fraction, fraction, st.integers(0, 2**32 - 1))
def test_no_single_group_move_would_bring_the_split_closer_to_its_fractions(structure, val, test, seed):
    labels, groups = samples(structure)
    try:
        split = grouped_split(labels, groups, val, test, seed=seed)
    except ConfigError:
        return
    fractions = {"train": 1 - val - test, "val": val, "test": test}
    now = misfit(labels, groups, split, fractions)
    for g, s in itertools.product(set(groups), SPLITS):
        moved = [s if group == g else side for group, side in zip(groups, split, strict=True)]
        if all(on == set(SPLITS) for on in sides_of(labels, moved).values()):
            assert misfit(labels, groups, moved, fractions) >= now - 1e-9 * (1 + now)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fractions_are_met_within_one_group(seed):
    # groups of very different sizes, 30 per class: a careless order of placement misses
    # the targets by a large group, the greedy by less than a typical (median) one
    rng = np.random.default_rng(seed)
    structure = {f"c{c}-g{i}": {f"c{c}": int(np.ceil(rng.lognormal(2.5, 1.0)))} for c in range(20) for i in range(30)}
    labels, groups = samples(structure)
    fractions = {"train": 0.65, "val": 0.15, "test": 0.2}
    split = grouped_split(labels, groups, fractions["val"], fractions["test"], seed=seed)
    typical = np.median([n for classes in structure.values() for n in classes.values()])
    n, got, overall = Counter(labels), Counter(zip(labels, split, strict=True)), Counter(split)
    misses = [abs(got[c, s] - f * n[c]) for c in n for s, f in fractions.items()]
    misses += [abs(overall[s] - f * len(labels)) for s, f in fractions.items()]
    assert max(misses) < typical


@BOUNDED
@given(st.integers(2, 6), st.data())
def test_kfold_puts_every_class_in_every_fold(k, draw):
    structure = draw.draw(single_class_groups(min_groups=k, max_groups=k + 4))
    labels, groups = samples(structure)
    folds = grouped_kfold(labels, groups, k, seed=draw.draw(st.integers(0, 2**32 - 1)))
    assert all(s == set(range(k)) for s in sides_of(labels, folds).values())
    assert groups_split(groups, folds) == []


def test_kfold_without_the_requirement_still_covers_every_class_with_k_groups():
    structure = {f"c{c}-g{i}": {f"c{c}": 5 + i} for c in range(6) for i in range(c + 1)}
    labels, groups = samples(structure)
    folds = grouped_kfold(labels, groups, 4, seed=0, require_every_class=False)
    on = sides_of(labels, folds)
    assert all(on[f"c{c}"] == set(range(4)) for c in range(3, 6))


def test_kfold_folds_are_balanced():
    labels, groups = data(n_classes=5, n_groups=50, per=200)
    folds = Counter(grouped_kfold(labels, groups, 5, seed=0))
    sizes = Counter(groups)
    assert max(folds.values()) - min(folds.values()) <= max(sizes.values())


def test_kfold_needs_two_folds():
    labels, groups = data()
    with pytest.raises(ConfigError, match="number of folds must be an integer of at least 2"):
        grouped_kfold(labels, groups, 1, seed=0)


def test_detection_split_tolerates_classes_in_few_groups():
    # require_every_class off: a dominant label seen in one group only is not an error
    labels, groups = data()
    labels += ["rare"] * 3
    groups += ["g0"] * 3
    split = grouped_split(labels, groups, 0.15, 0.2, seed=1, require_every_class=False, unit="image")
    assert groups_split(groups, split) == []
