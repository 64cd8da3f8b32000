"""Grouped k-fold cross-validation: the plan of folds and the summary of out-of-fold predictions.

With a few sessions per class, one validation split holds one or two groups per class and
the model it picks is chosen by noise. Cross-validation cuts the non-test data (train and
val of the manifest) into ``k`` folds by group (:func:`insectml.data.split.grouped_kfold`),
trains every model once per fold on the other folds, and predicts the held-out fold: every
non-test row is predicted exactly once by a model that did not see its group. Models are
chosen by the macro-F1 of these out-of-fold predictions, then refit on all non-test data
and scored once on test. The temperature that calibrates a model's probabilities is fitted
on its out-of-fold predictions too.

Class-disjoint families (few-shot: the embedder learns base classes and is judged on novel
ones) cut folds of classes instead (``unit="class"``: each class is its own group, so no
class is on two sides): every non-test class is held out once, from a model trained on the
other folds' classes.

``folds.json`` (``insectml cv plan``) is the plan every training task reads: the fold of
each group (or class), the seed, and why this many folds.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from insectml.errors import ConfigError, InputFileError
from insectml.fileio import write_json_atomic

log = logging.getLogger(__name__)

# --cv_folds auto: cross-validate when some class has fewer than this many groups outside
# the test split (its validation share would be one or two groups), with AUTO_FOLDS folds.
AUTO_MIN_GROUPS = 8
AUTO_FOLDS = 5
POOL = ("train", "val")
UNITS = ("group", "class")
# --cv_folds auto with folds of classes: cross-validate when fewer than this many classes lie
# outside test. At the default few-shot fractions (val 0.15, test 0.25) such a pool holds
# fewer than 10 validation classes, so early stopping, the open-set threshold and the
# temperature would all be chosen on 5-way episodes drawn again and again from a handful of
# classes. Few-shot data has hundreds of classes: auto normally means one train/val split.
AUTO_MIN_CLASSES = 50
# Each held-out fold must allow a 5-way episode.
MIN_CLASSES_PER_FOLD = 5
SELECTED_BY = "cv_macro_f1"
RULE = (
    "each model is trained once per fold on the other folds; the model with the highest macro-F1 of its "
    "out-of-fold predictions (every non-test recording predicted once, by a model that never saw its group) "
    "is chosen, refit on all non-test data and scored once on test"
)
CLASS_RULE = (
    "each fold's classes are held out once: the model is trained for a fixed budget on the other folds' classes "
    "and scored on episodes of the held-out classes it never saw; the refit on every non-test class, calibrated "
    "on the held-out folds, is scored once on the test classes"
)


def parse_requested(value: str | int) -> int | None:
    """``--cv_folds`` → folds (0 = one train/val split) or None for ``auto``."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        k = int(text)
    except ValueError:
        raise ConfigError(f"--cv-folds {value!r}: expected auto, 0 or a number of folds of at least 2") from None
    if k < 0 or k == 1:
        raise ConfigError(f"--cv-folds {value!r}: expected auto, 0 or a number of folds of at least 2")
    return k


def resolve_folds(requested: str | int, labels: Sequence[str], groups: Sequence[str]) -> tuple[int, str]:
    """The number of folds for the pool's ``labels`` and ``groups``, and why."""
    k = parse_requested(requested)
    per_class = defaultdict(set)
    for label, group in zip(labels, groups, strict=True):
        per_class[label].add(group)
    n_groups = len(set(groups))
    fewest = min((len(g) for g in per_class.values()), default=0)
    poorest = min(per_class, key=lambda c: (len(per_class[c]), c)) if per_class else None
    if k is None:
        if fewest >= AUTO_MIN_GROUPS:
            return 0, (
                f"auto: every class has at least {AUTO_MIN_GROUPS} groups outside test (fewest: {fewest}), "
                "so one train/val split"
            )
        k = min(AUTO_FOLDS, n_groups)
        reason = (
            f"auto: class '{poorest}' has only {fewest} group(s) outside test (fewer than {AUTO_MIN_GROUPS}), "
            f"so {k}-fold cross-validation"
        )
    else:
        reason = f"--cv_folds {k}"
    if k and k > n_groups:
        raise ConfigError(f"--cv-folds {k}: the data outside test has only {n_groups} groups; use at most {n_groups}")
    return k, reason


def resolve_class_folds(requested: str | int, labels: Sequence[str]) -> tuple[int, str]:
    """The number of folds of classes for the pool's ``labels``, and why: every fold must
    hold at least ``MIN_CLASSES_PER_FOLD`` classes."""
    k = parse_requested(requested)
    n = len(set(labels))
    most = n // MIN_CLASSES_PER_FOLD
    if k is None:
        if n >= AUTO_MIN_CLASSES:
            return 0, f"auto: {n} classes outside test (at least {AUTO_MIN_CLASSES}), so one train/val split"
        if most < 2:
            return 0, (
                f"auto: only {n} classes outside test, too few for 2 folds of {MIN_CLASSES_PER_FOLD} classes, "
                "so one train/val split"
            )
        k = min(AUTO_FOLDS, most)
        return k, (
            f"auto: only {n} classes outside test (fewer than {AUTO_MIN_CLASSES}), so {k}-fold cross-validation "
            "by class"
        )
    if k and k > most:
        hint = f"use at most {most}" if most >= 2 else "use 0"
        raise ConfigError(
            f"--cv-folds {k}: the data outside test has {n} classes, too few for {k} folds of at least "
            f"{MIN_CLASSES_PER_FOLD} classes (a 5-way episode); {hint}"
        )
    return k, f"--cv_folds {k}"


def _deal_classes(labels: Sequence[str], k: int, seed: int) -> list[int]:
    """The fold of each row when whole classes are dealt into ``k`` folds: the sorted
    classes shuffled with ``seed``, the i-th of them to fold i mod k (fold sizes differ by
    at most one class)."""
    classes = sorted(set(labels))
    order = np.random.default_rng(seed).permutation(len(classes))
    fold_of_class = {classes[c]: rank % k for rank, c in enumerate(order)}
    return [fold_of_class[label] for label in labels]


def plan(rows: Sequence[dict], requested: str | int, seed: int, unit: str = "group") -> dict:
    """The folds of a manifest's non-test rows (``rows``: manifest rows with label, group
    and split), as written to ``folds.json``. ``unit``: ``group`` (folds of the rows'
    groups, stratified by class) or ``class`` (folds of whole classes; ``group_fold`` then
    maps each class to its fold)."""
    if unit not in UNITS:
        raise ConfigError(f"--unit {unit!r}: expected one of {', '.join(UNITS)}")
    pool = [r for r in rows if r["split"] in POOL]
    if not pool:
        raise ConfigError("the manifest has no train or val rows to cross-validate")
    labels = [r["label"] for r in pool]
    by_class = unit == "class"
    groups = labels if by_class else [str(r["group"]) for r in pool]
    k, reason = resolve_class_folds(requested, labels) if by_class else resolve_folds(requested, labels, groups)
    result = {"requested": str(requested), "k": k, "seed": seed, "reason": reason, "warnings": []}
    if by_class:
        result["unit"] = "class"  # folds.json of the group unit stays as it was before units existed
    if not k:
        return result | {"group_fold": {}, "folds": []}
    if by_class:
        fold_of_row = _deal_classes(labels, k, seed)
    else:
        from insectml.data.split import grouped_kfold

        fold_of_row = grouped_kfold(labels, groups, k, seed, require_every_class=False, unit="group")
    group_fold = {g: int(f) for g, f in zip(groups, fold_of_row, strict=True)}
    folds = []
    for f in range(k):
        members = [i for i, fold in enumerate(fold_of_row) if fold == f]
        folds.append(
            {
                "fold": f,
                "rows": len(members),
                "groups": len({groups[i] for i in members}),
                "per_class": dict(sorted(Counter(labels[i] for i in members).items())),
            }
        )
    # a class is its own unit: one fold by design, nothing to warn about
    for label in [] if by_class else sorted(set(labels)):
        held = {group_fold[g] for lab, g in zip(labels, groups, strict=True) if lab == label}
        if len(held) == 1:
            result["warnings"].append(
                f"class '{label}' has one group outside test: in its fold it is absent from training, so its "
                "out-of-fold predictions say how the model does on a class it never saw"
            )
    rule = CLASS_RULE if by_class else RULE
    return result | {"group_fold": dict(sorted(group_fold.items())), "folds": folds, "rule": rule}


def load_plan(path: Path) -> dict:
    import json

    if not path.is_file():
        raise InputFileError(path, "folds plan not found")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not a folds plan ({exc.msg})") from None
    if not {"k", "seed", "group_fold"} <= set(data):
        raise InputFileError(path, "not a folds plan (no k, seed or group_fold)")
    return data


def fold_masks(plan: dict, groups: np.ndarray, split: np.ndarray, fold: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, held-out rows) of ``fold``; ``None``: the refit, every non-test row to
    train on and nothing held out."""
    pool = np.isin(split, POOL)
    if fold is None:
        return pool, np.zeros_like(pool)
    if not 0 <= fold < plan["k"]:
        raise ConfigError(f"--fold {fold}: the plan has folds 0..{plan['k'] - 1}")
    group_fold = plan["group_fold"]
    unknown = sorted({str(g) for g in groups[pool]} - set(group_fold))
    if unknown:
        raise ConfigError(f"groups not in the folds plan (made from another manifest?): {', '.join(unknown[:5])}")
    of_row = np.asarray([group_fold.get(str(g), -1) for g in groups])
    held = pool & (of_row == fold)
    return pool & ~held, held


def task_lineage(role: str, fold: int | None, plan: dict | None, assigned: str = "group_fold") -> dict:
    """What a training task's lineage.json records of its rows: the role and, with a folds
    plan, the fold, k, the fold seed, why k, and the plan's assignment (under ``assigned``)."""
    if plan is None:
        return {"role": role}
    return {
        "role": role,
        "fold": fold,
        "k": plan["k"],
        "fold_seed": plan["seed"],
        "reason": plan.get("reason"),
        assigned: plan["group_fold"],
    }


def read_json(path: Path, what: str) -> dict:
    """A model folder's JSON file; a clear error when it is missing."""
    import json

    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    return json.loads(path.read_text())


def task_rows(model_dir: Path) -> dict:
    """The rows a model folder's training task used (role, fold, k, …: its lineage's ``params.rows``)."""
    return read_json(model_dir / "lineage.json", "lineage").get("params", {}).get("rows", {})


def read_folds(fold_dirs: Sequence[Path], heldout: str) -> tuple[list[dict], dict]:
    """The ``heldout`` arrays of every fold task's model folder, in fold order, and the
    plan they came from (k, fold_seed, reason): each fold of one plan exactly once, else
    an :class:`InputFileError` naming the folder."""
    parts, plan = {}, None
    for d in fold_dirs:
        rows = task_rows(d)
        if rows.get("role") != "fold":
            raise InputFileError(d, "is not a fold task's model (trained without --fold)")
        this = {k: rows.get(k) for k in ("k", "fold_seed", "reason")}
        if plan is not None and this != plan:
            raise InputFileError(d, "comes from another folds plan than the other folds")
        plan = this
        if rows["fold"] in parts:
            raise InputFileError(d, f"fold {rows['fold']} given twice")
        if not (d / heldout).is_file():
            raise InputFileError(d / heldout, "missing from the fold's model folder")
        with np.load(d / heldout, allow_pickle=False) as data:
            parts[rows["fold"]] = {k: data[k] for k in data.files}
    missing = sorted(set(range(plan["k"])) - set(parts)) if plan else []
    if missing or plan is None:
        raise InputFileError(fold_dirs[0] if fold_dirs else Path("."), f"folds missing: {missing or 'all'}")
    return [parts[f] for f in sorted(parts)], plan


def summarise(
    y: np.ndarray,
    scores: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    classes: list[str],
    seed: int,
    log_scores: bool,
) -> dict:
    """Out-of-fold metrics of one model: pooled macro-F1 and accuracy with grouped bootstrap
    CIs, per-fold macro-F1 with its mean ± t-interval, and the temperature fitted on them
    with the expected calibration error before and after. ``scores``: logits
    (``log_scores``) or probabilities, one row per pooled recording."""
    from insectml import stats

    probs = stats.softmax(scores) if log_scores else scores
    pred = probs.argmax(1)
    n = len(y)
    f1 = stats.bootstrap_ci(stats.macro_f1_on(y, pred, len(classes)), n, groups, seed=seed)
    acc = stats.bootstrap_ci(stats.accuracy_on(y, pred), n, groups, seed=seed)
    per_fold = [stats.macro_f1_on(y, pred, len(classes))(np.flatnonzero(folds == f)) for f in np.unique(folds)]
    temperature = stats.fit_temperature(scores if log_scores else np.log(np.clip(probs, 1e-12, None)), y)
    calibrated = stats.apply_temperature(probs, temperature)
    return {
        "n": int(n),
        "macro_f1": f1,
        "accuracy": acc,
        "per_fold_macro_f1": [round(float(v), 6) for v in per_fold],
        "fold_mean": stats.mean_ci(per_fold),
        "temperature": round(float(temperature), 6),
        "ece_before": round(stats.expected_calibration_error(probs, y), 6),
        "ece_after": round(stats.expected_calibration_error(calibrated, y), 6),
    }


def register(sub: argparse._SubParsersAction) -> None:
    from insectml.cliargs import add_param, existing_file
    from insectml.runparams import GENERAL

    cv = sub.add_parser("cv", help="grouped (or class-disjoint) k-fold cross-validation")
    cv_sub = cv.add_subparsers(dest="cv_command", metavar="COMMAND", required=True)
    p = cv_sub.add_parser(
        "plan",
        help="cut a manifest's non-test rows into folds by group or by class (folds.json)",
        description="Read manifest.jsonl (from a family's 'validate'); assign each group outside the test split "
        "to one of K folds, stratified by class, and write folds.json (the fold of each group, the seed, the "
        "reason for K). With --cv-folds auto: cross-validation when some class has fewer than "
        f"{AUTO_MIN_GROUPS} groups outside test ({AUTO_FOLDS} folds, or as many as there are groups), else K = 0 "
        "(one train/val split). With --unit class (class-disjoint families: few-shot) whole classes are dealt "
        f"into folds of at least {MIN_CLASSES_PER_FOLD} classes, and auto means {AUTO_FOLDS} folds (fewer when "
        f"the classes do not fill them) when fewer than {AUTO_MIN_CLASSES} classes lie outside test, else K = 0.",
    )
    p.add_argument("--manifest", type=existing_file, required=True, help="manifest.jsonl from 'validate'")
    add_param(p, GENERAL, "cv_folds")
    add_param(p, GENERAL, "seed")
    p.add_argument(
        "--unit",
        choices=UNITS,
        default="group",
        help="what a fold holds: groups (default; stratified by class) or whole classes (class-disjoint folds)",
    )
    p.add_argument("--out", type=Path, default=Path("folds.json"), help="output file (default: folds.json)")
    p.set_defaults(func=_plan)


def _plan(args: argparse.Namespace) -> int:
    import json

    from insectml.data.manifest import read_manifest

    result = plan(read_manifest(args.manifest), args.cv_folds, args.seed, args.unit)
    write_json_atomic(args.out, result, indent=2)
    for warning in result["warnings"]:
        log.warning(warning)
    print(json.dumps({"k": result["k"], "reason": result["reason"]}))
    return 0
