"""Validate a wingbeat dataset and split it, before anything trains on it.

Identical recordings (md5) of one species in different groups are handled by the
``duplicates`` policy (merge their groups, drop all but one, or refuse them); identical
recordings under two species are a label conflict, always refused.

Three steps, so that decoding every recording (the cost that grows with the data) can be
scattered over tasks: :func:`list_candidates` reads the labels and checks the rows
(candidates.jsonl, listing.json); :func:`check_candidates` decodes the recordings of a
chunk of the candidates (checked.jsonl); :func:`gather` reads every checked chunk,
settles duplicates, reports every problem at once and splits. :func:`validate_and_split`
runs the three in one process.

A labelled active-learning export (``extra_labels``: :func:`merge_extra_labels`) is merged
by the gather: its rows join the train split after the data is split, so val and test are
the data's own whatever the export holds.
"""

from __future__ import annotations

import itertools
import logging
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from insectml.data.chunks import CANDIDATES, CHECKED, LISTING, checked_rows, in_one_process, read_listing  # noqa: F401 - the step files, for the CLI
from insectml.data.duplicates import equal_pairs, resolve
from insectml.data.manifest import (
    content_version,
    file_digest,
    iter_manifest,
    split_counts,
    write_manifest,
)
from insectml.data.split import grouped_split
from insectml.errors import InputFileError, ValidationFailed
from insectml.fileio import write_json_atomic
from insectml.lineage import active_learning_rounds, data_source
from insectml.runparams import GENERAL
from insectml.wingbeat.audio import decode_wav
from insectml.wingbeat.family import PARAMS as P
from insectml.wingbeat.labels import read_classes, read_folder_layout, read_labels

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidateConfig:
    labels: Path | None  # None: folder-per-species layout below data_dir
    data_dir: Path
    out_dir: Path
    classes: Path | None
    group_by: str = P.default("wingbeat_group_by")
    sample_rate: int = P.default("wingbeat_sample_rate")
    val_fraction: float = P.default("wingbeat_val_fraction")
    test_fraction: float = P.default("wingbeat_test_fraction")
    seed: int = GENERAL.default("seed")
    duplicates: str = GENERAL.default("duplicates")  # group | drop | error: identical recordings
    max_per_class: int = P.default("wingbeat_max_per_class")  # 0 = keep all
    resample: bool = P.default("wingbeat_resample")
    min_seconds: float = P.default("wingbeat_min_seconds")  # carried into the model, which refuses shorter input
    extra_labels: Path | None = None  # a labelled active-learning export: its rows join train (gather step)


# The settings that the list step uses and the gather step records in dataset.json: both
# must have the same (a split recorded under another seed than the cap used would lie).
_LISTED_SETTINGS = {"group_by": "--group-by", "max_per_class": "--max-per-class", "seed": "--seed"}


def validate_and_split(cfg: ValidateConfig) -> dict:
    """Check every row and recording, then write manifest.jsonl, dataset.json and
    validation_report.json into ``cfg.out_dir``: :func:`list_candidates`,
    :func:`check_candidates` and :func:`gather` in one process, so the files are
    byte-identical to those of the steps run as chunks over several tasks.

    Raises :class:`ValidationFailed` listing every problem found; the report is
    written either way.
    """
    return in_one_process(cfg, list_candidates, check_candidates, gather)


def list_candidates(cfg: ValidateConfig) -> dict:
    """Step 1: read the labels CSV (or the folder layout) and check each row without
    opening its recording: empty fields, a path listed twice, an unknown species; then
    keep at most ``max_per_class`` per species (seeded).

    Writes the rows left, numbered from 0, to ``cfg.out_dir/candidates.jsonl`` (row by
    row) and the listing (source, counts, known classes, problems, settings) to
    ``listing.json``; returns the listing. Reads labels, data_dir, classes, group_by,
    max_per_class and seed of ``cfg``.
    """
    if cfg.labels is None:
        rows = read_folder_layout(cfg.data_dir, cfg.group_by)
        name = f"{cfg.data_dir.name}/"
    else:
        rows = read_labels(cfg.labels, cfg.group_by)
        name = cfg.labels.name
    known = read_classes(cfg.classes) if cfg.classes else None
    problems: list[str] = []
    seen_path: dict[str, int] = {}
    accepted = []
    for row in rows:
        where = f"{name} line {row.line}" if cfg.labels else row.path
        empty = [c for c, v in (("path", row.path), ("species", row.species), (cfg.group_by, row.group)) if not v]
        if empty:
            problems.append(f"{where}: empty {', '.join(repr(c) for c in empty)}")
            continue
        if _escapes(row.path):
            problems.append(f"{where}: path '{row.path}' leads outside the data folder (absolute, or with '..')")
            continue
        if row.path in seen_path:
            problems.append(f"{where}: '{row.path}' is listed twice (first at line {seen_path[row.path]})")
            continue
        seen_path[row.path] = row.line
        if known is not None and row.species not in known:
            problems.append(f"{where}: unknown species '{row.species}' (known: {', '.join(known)})")
            continue
        accepted.append(row)

    accepted = _cap_per_class(accepted, cfg.max_per_class, cfg.seed)
    write_manifest(
        ({"n": n, "path": r.path, "label": r.species, "group": r.group} for n, r in enumerate(accepted)),
        cfg.out_dir / CANDIDATES,
    )
    listing = {
        "labels": str(cfg.labels or cfg.data_dir),
        "root": str(cfg.data_dir.resolve()),  # for the dataset's source; the gather may run without it
        "rows": len(rows),
        "candidates": len(accepted),
        "classes": known,
        "problems": problems,
        "settings": {k: v for k, v in asdict(cfg).items() if k in _LISTED_SETTINGS},
    }
    write_json_atomic(cfg.out_dir / LISTING, listing)
    return listing


def check_candidates(candidates: Path, cfg: ValidateConfig, out: Path) -> tuple[int, int]:
    """Step 2, over a chunk of candidates.jsonl (or all of it): decode each recording
    below ``cfg.data_dir`` with the checks of :func:`decode_wav`, and take its md5 and
    duration. Writes one line per candidate, in order, to ``out``: the manifest row (with
    its number ``n``), or ``{"n", "path", "problem"}``. Returns (candidates, problems).
    Reads data_dir, sample_rate, resample and min_seconds of ``cfg``.
    """
    from tqdm import tqdm

    problems = 0

    def checked() -> Iterator[dict]:
        nonlocal problems
        for number, row in enumerate(iter_manifest(candidates, "candidates file", allow_empty=True), start=1):
            if not isinstance(row, dict) or not _CANDIDATE_KEYS <= row.keys():
                raise InputFileError(candidates, f"line {number} is not a candidate (from 'validate --list-only')")
            path = cfg.data_dir / row["path"]
            try:
                audio = decode_wav(
                    path, cfg.sample_rate, name=row["path"], resample=cfg.resample, min_seconds=cfg.min_seconds
                )
            except InputFileError as exc:
                problems += 1
                yield {"n": row["n"], "path": row["path"], "problem": str(exc)}
                continue
            yield {
                "n": row["n"],
                "id": str(Path(row["path"]).with_suffix("")),
                "path": row["path"],
                "label": row["label"],
                "group": row["group"],
                "md5": file_digest(path),
                "duration_s": round(len(audio) / cfg.sample_rate, 4),
            }

    n = write_manifest(tqdm(checked(), desc="validate", unit="rec", disable=None), out)
    return n, problems


_CANDIDATE_KEYS = {"n", "path", "label", "group"}
_SAMPLE_KEYS = ("id", "path", "label", "group", "md5", "duration_s")


def gather(listing_path: Path, checked: Sequence[Path], cfg: ValidateConfig) -> dict:
    """Step 3: read the checked chunks (in any order; each must be there once) and the
    listing, settle identical recordings by ``cfg.duplicates``, and write
    validation_report.json; with no problem, split (seeded, stratified, grouped) and
    write manifest.jsonl and dataset.json into ``cfg.out_dir``. Returns the dataset
    description.

    Raises :class:`ValidationFailed` listing every problem of every step at once.
    """
    listing = read_listing(listing_path, {"labels", "rows", "candidates", "classes", "problems"}, cfg, _LISTED_SETTINGS)
    source = listing["labels"]
    problems = list(listing["problems"])
    samples: dict[str, list] = {k: [] for k in _SAMPLE_KEYS}
    n = 0
    for row in checked_rows(checked, listing["candidates"]):
        n += 1
        if "problem" in row:
            problems.append(row["problem"])
            continue
        for k in _SAMPLE_KEYS:
            # labels and groups repeat: one string object each, not one per sample
            samples[k].append(sys.intern(row[k]) if k in ("label", "group") else row[k])
    if n != listing["candidates"]:
        raise InputFileError(
            listing_path, f"lists {listing['candidates']} candidates; the checked files hold {n}: a chunk is missing"
        )
    keep, dup_problems, warnings, dup_summary = _duplicates(samples, cfg.duplicates)
    problems += dup_problems
    samples = {k: [v for v, kept in zip(values, keep, strict=True) if kept] for k, values in samples.items()}
    extra, extra_report = [], None
    if cfg.extra_labels is not None:
        extra, extra_problems, extra_warnings, extra_report = merge_extra_labels(cfg, samples, listing["classes"])
        problems += extra_problems
        warnings += extra_warnings

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report_path = cfg.out_dir / "validation_report.json"
    report = {
        "labels": source,
        "rows": listing["rows"],
        "accepted": len(samples["id"]),
        "problems": problems,
        "warnings": warnings,
    }
    if extra_report is not None:
        report["extra_labels"] = extra_report
    write_json_atomic(report_path, report)
    if problems:
        for problem in problems:
            log.error("%s", problem)
        raise ValidationFailed(source, problems, report=report_path.name)

    samples["split"] = grouped_split(samples["label"], samples["group"], cfg.val_fraction, cfg.test_fraction, cfg.seed)
    present = set(samples["label"]) | {row["label"] for row in extra}
    known = listing["classes"]
    classes = [c for c in known if c in present] if known is not None else sorted(present)
    manifest = cfg.out_dir / "manifest.jsonl"
    write_manifest(
        itertools.chain(
            (dict(zip(samples, values, strict=True)) for values in zip(*samples.values(), strict=True)), extra
        ),
        manifest,
    )
    dataset = {
        "family": "wingbeat",
        "classes": classes,
        "n_samples": len(samples["id"]),
        "counts": split_counts(iter_manifest(manifest)),
        "version": content_version(iter_manifest(manifest)),
        "split": {
            k: v
            for k, v in asdict(cfg).items()
            if k
            in (
                "group_by",
                "val_fraction",
                "test_fraction",
                "seed",
                "max_per_class",
                "sample_rate",
                "resample",
                "min_seconds",
            )
        },
    }
    dataset["split"].update(duplicates=cfg.duplicates, **dup_summary)
    dataset["source"] = data_source(
        listing.get("root", str(cfg.data_dir)), zip(samples["path"], samples["md5"], strict=True)
    )
    if cfg.extra_labels is not None:
        dataset["active_learning"] = active_learning_rounds(extra, Path(cfg.extra_labels).resolve())
        dataset["source"]["active_learning"] = dataset["active_learning"]  # so every model's lineage has it
    write_json_atomic(cfg.out_dir / "dataset.json", dataset)
    return dataset


def merge_extra_labels(
    cfg: ValidateConfig, samples: dict[str, list], known: list[str] | None
) -> tuple[list[dict], list[str], list[str], dict]:
    """The labelled items of the active-learning export ``cfg.extra_labels``
    (:func:`insectml.active.merge.read_labelled_export`) as manifest rows of the train split,
    each recording decoded with the data's checks and its ``provenance`` (round, strategy,
    sha256, source) kept; their paths are absolute, since they lie outside the data folder.

    Returns (rows, problems, warnings, a summary for the report). A problem: a recording
    that fails the checks, a species neither in the data nor in ``known`` (the file and the
    species named), the same bytes as a data recording of another species. A recording
    identical to one of the data (``samples``) is left out with a warning: the data's own
    split keeps it (test stays untouched)."""
    from insectml.active.merge import read_labelled_export

    export = Path(cfg.extra_labels).resolve()
    labelled = read_labelled_export(export, "wingbeat", allow_new_classes=True)
    species = set(samples["label"]) | set(known or ())
    in_data = dict(zip(samples["md5"], zip(samples["path"], samples["label"], strict=True), strict=True))
    rows, problems, warnings = [], [], []
    for item in labelled:
        path = export / item["path"]
        if item["label"] not in species:
            problems.append(
                f"{path}: species '{item['label']}' is not in the data (species: {', '.join(sorted(species))})"
            )
            continue
        try:
            audio = decode_wav(
                path, cfg.sample_rate, name=str(path), resample=cfg.resample, min_seconds=cfg.min_seconds
            )
        except InputFileError as exc:
            problems.append(str(exc))
            continue
        if item["md5"] in in_data:
            twin, twin_label = in_data[item["md5"]]
            if twin_label != item["label"]:
                problems.append(f"{path}: identical content to {twin} of species '{twin_label}' (label conflict)")
            else:
                warnings.append(f"{path}: identical to {twin} of the data; left out (the data's split keeps it)")
            continue
        rows.append(
            {
                "id": item["id"],
                "path": str(path),
                "label": item["label"],
                "group": item["group"],
                "md5": item["md5"],
                "duration_s": round(len(audio) / cfg.sample_rate, 4),
                "split": "train",
                "provenance": item["provenance"],
            }
        )
    summary = {"export": str(export), "merged": len(rows), "skipped": labelled.skipped}
    return rows, problems, warnings, summary


def _duplicates(samples: dict[str, list], policy: str) -> tuple[list[bool], list[str], list[str], dict[str, int]]:
    """Identical recordings under ``policy``, over the sample columns: returns which
    samples are kept (their groups merged in ``samples["group"]`` under ``group``),
    problems (label conflicts; pairs across groups under ``error``), warnings, and the
    counts of merges and drops."""
    paths, labels, digests = samples["path"], samples["label"], samples["md5"]
    pairs = equal_pairs(digests)
    conflict = np.asarray([labels[i] != labels[j] for i, j, _ in pairs.tolist()], dtype=bool)
    problems = [
        f"{paths[j]}: identical content to {paths[i]} of species '{labels[i]}' (label conflict)"
        for i, j, _ in pairs[conflict].tolist()
    ]
    done = resolve(paths, samples["group"], pairs[~conflict].reshape(-1, 3), policy, digests=digests)
    samples["group"] = list(done.groups)
    for line in done.warnings[:5]:
        log.warning("%s", line)
    summary = {"groups_merged": done.merged, "duplicates_dropped": done.dropped}
    return list(done.keep), problems + list(done.problems), list(done.warnings), summary


def _escapes(path: str) -> bool:
    """Whether a labels row's ``path`` leads outside the data folder it is relative to:
    absolute, or with a ``..`` part. (Symbolic links below the folder are the user's own
    layout, DVC's cache links among them, and are followed.)"""
    return Path(path).is_absolute() or ".." in Path(path).parts


def _cap_per_class(rows: list, cap: int, seed: int) -> list:
    """Keep at most ``cap`` rows per class (0 keeps all), chosen with ``seed``."""
    if cap <= 0:
        return rows
    by_class: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_class[row.species].append(i)
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for species in sorted(by_class):
        idx = by_class[species]
        keep.update(idx if len(idx) <= cap else rng.choice(idx, size=cap, replace=False).tolist())
    return [r for i, r in enumerate(rows) if i in keep]
