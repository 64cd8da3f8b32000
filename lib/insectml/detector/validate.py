"""Validate detection data before anything trains on it, then split it.

Refused (problems, reported all at once): unreadable or truncated images, an
annotation whose size disagrees with its image, unknown classes, boxes outside the
image or of zero area under ``box_policy="reject"``. Under ``box_policy="clip"`` boxes
are clipped to the image and empty ones dropped, and each such change is listed as a
warning.

Exact or near-duplicate images (dHash) in different groups would land on both sides of a
split: under ``duplicates="group"`` their groups are merged (a warning each), under
``drop`` one image of each cluster is kept, under ``error`` each such pair is a problem.

Three steps, so that decoding every image (the cost that grows with the data) can be
scattered over tasks: :func:`list_candidates` reads the labels (candidates.jsonl,
listing.json); :func:`check_candidates` checks the images of a chunk of the candidates
(checked.jsonl); :func:`gather` settles duplicates, reports every problem at once and
splits. :func:`validate_detection` runs the three in one process.

A labelled active-learning export (``extra_labels``: :func:`merge_extra_labels`) is merged
by the gather after the split: its images join the train split, so val and test are the
data's own.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.data.chunks import CANDIDATES, CHECKED, LISTING, checked_rows, in_one_process, read_listing  # noqa: F401 - the step files, for the CLI
from insectml.data.duplicates import clusters, near_pairs, resolve
from insectml.data.images import check_image
from insectml.data.manifest import (
    content_version,
    file_digest,
    iter_manifest,
    split_counts,
    write_manifest,
)
from insectml.data.split import grouped_split
from insectml.detector.family import PARAMS as P
from insectml.detector.formats import locate_labels, read_boxes
from insectml.detector.supervisely_io import ImageRecord, read_species_folders
from insectml.errors import InputFileError, ValidationFailed
from insectml.fileio import write_json_atomic
from insectml.lineage import active_learning_rounds, data_source
from insectml.runparams import GENERAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorValidateConfig:
    root: Path  # paths in the manifest are relative to it
    out_dir: Path
    labels: Path | None = None  # box labels: a Supervisely project, COCO JSON, YOLO data.yaml, VOC XML folder
    format: str = P.default("detector_format")  # auto | supervisely | coco | yolo | voc
    species: Path | None = None
    classes: tuple[str, ...] = ()  # empty: the classes the box labels declare
    box_policy: str = P.default("detector_box_policy")  # clip | reject
    near_duplicate_bits: int = P.default(
        "detector_near_duplicate_bits"
    )  # dHash Hamming distance at or below which images are near-duplicates
    val_fraction: float = P.default("detector_val_fraction")
    test_fraction: float = P.default("detector_test_fraction")
    seed: int = GENERAL.default("seed")
    duplicates: str = GENERAL.default("duplicates")  # group | drop | error
    max_images: int = P.default(
        "detector_max_images"
    )  # keep at most N box-labelled and N species images, seeded (0 = all)
    extra_labels: Path | None = None  # a labelled active-learning export: its rows join train (gather step)


def fix_boxes(record: ImageRecord, size: tuple[int, int], policy: str) -> tuple[list[str], list[str]]:
    """Clip or reject boxes outside the image and boxes of zero area; returns (problems, warnings)."""
    width, height = size
    problems, warnings, boxes, labels = [], [], [], []
    for (x1, y1, x2, y2), label in zip(record.boxes, record.labels, strict=True):
        where = f"{record.path}: {label} box [{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
        outside = x1 < 0 or y1 < 0 or x2 > width or y2 > height
        clipped = [max(0, x1), max(0, y1), min(width, x2), min(height, y2)]
        empty = clipped[2] <= clipped[0] or clipped[3] <= clipped[1]
        if policy == "reject" and (outside or empty):
            problems.append(
                f"{where} {'has zero area' if empty and not outside else f'lies outside the {width}x{height} image'}"
            )
            continue
        if empty:
            warnings.append(f"{where}: zero area after clipping to {width}x{height}; dropped")
            continue
        if outside:
            warnings.append(f"{where}: clipped to the {width}x{height} image")
        boxes.append(clipped)
        labels.append(label)
    record.boxes, record.labels = boxes, labels
    return problems, warnings


def validate_detection(cfg: DetectorValidateConfig) -> dict:
    """Write manifest.jsonl, dataset.json and validation_report.json into ``cfg.out_dir``:
    :func:`list_candidates`, :func:`check_candidates` and :func:`gather` in one process,
    so the files are byte-identical to those of the steps run as chunks over several tasks.

    Raises :class:`ValidationFailed` listing every problem (the report is written either way).
    """
    return in_one_process(cfg, list_candidates, check_candidates, gather)


# The settings the list step uses and the gather step records in dataset.json: both must
# have the same (a split recorded under another seed than the cap used would lie).
_LISTED_SETTINGS = {"seed": "--seed"}
_RECORD_KEYS = ("path", "group", "boxes", "labels", "species", "tags", "declared_size")


def list_candidates(cfg: DetectorValidateConfig) -> dict:
    """Step 1: read the box labels (found in ``cfg.labels`` in ``cfg.format``) and the
    species folders, keep at most ``max_images`` of each (seeded), and refuse box-labelled
    images with a class outside the known ones, without opening an image.

    Writes the records left, numbered from 0, to ``cfg.out_dir/candidates.jsonl`` and the
    listing (source, counts, classes, problems, warnings, settings) to ``listing.json``;
    returns the listing. Reads root, labels, format, species, classes, max_images and
    seed of ``cfg``.
    """
    problems: list[str] = []
    warnings: list[str] = []
    records: list[ImageRecord] = []
    classes: list[str] = list(cfg.classes)
    if cfg.labels is not None:
        found = read_boxes(locate_labels(cfg.labels, cfg.format), cfg.format, cfg.root)
        classes = classes or found.classes
        problems += found.problems
        warnings += found.warnings
        records += _cap(found.records, cfg.max_images, cfg.seed)
    if cfg.species is not None and not cfg.species.is_dir():
        # the default 'species' folder is optional: without it, the generic stage only
        warnings.append(f"{cfg.species.name}: no species image folder; no pseudo-labels, the generic stage only")
    elif cfg.species is not None:
        records += _cap(read_species_folders(cfg.species, cfg.root), cfg.max_images, cfg.seed)

    known = set(classes)
    candidates = []
    for record in records:
        unknown = sorted({label for label in record.labels if label not in known})
        if record.species is None and unknown:
            problems.append(f"{record.path}: unknown class(es) {', '.join(unknown)} (known: {', '.join(classes)})")
            continue
        candidates.append(record)
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(
        ({"n": n, **{k: getattr(r, k) for k in _RECORD_KEYS}} for n, r in enumerate(candidates)),
        cfg.out_dir / CANDIDATES,
    )
    listing = {
        "source": str(cfg.labels or cfg.species),
        "images": len(records),
        "candidates": len(candidates),
        "classes": classes,
        "problems": problems,
        "warnings": warnings,
        "settings": {k: getattr(cfg, k) for k in _LISTED_SETTINGS},
    }
    write_json_atomic(cfg.out_dir / LISTING, listing)
    return listing


def check_candidates(candidates: Path, cfg: DetectorValidateConfig, out: Path) -> tuple[int, int]:
    """Step 2, over a chunk of candidates.jsonl (or all of it): decode each image below
    ``cfg.root`` (:func:`check_image`: readable, whole, its size and dHash), compare its
    size with the annotation's, apply ``cfg.box_policy`` to its boxes and take its md5.
    Writes one line per candidate, in order, to ``out``: ``{"n", "path", "problems",
    "warnings"}`` and, for an image kept, its record (boxes fixed, size and md5 in its
    tags) and ``dhash``. Returns (candidates, candidates with a problem). Reads root and
    box_policy of ``cfg``.
    """
    from tqdm import tqdm

    failed = 0

    def checked() -> Iterator[dict]:
        nonlocal failed
        for number, row in enumerate(iter_manifest(candidates, "candidates file", allow_empty=True), start=1):
            if not isinstance(row, dict) or not {"n", *_RECORD_KEYS} <= row.keys():
                raise InputFileError(candidates, f"line {number} is not a candidate (from 'validate --list-only')")
            record = ImageRecord(**{k: row[k] for k in _RECORD_KEYS})
            size, hashed, problem = check_image(cfg.root / record.path, record.path)
            if not problem and record.declared_size and tuple(record.declared_size) != tuple(size):
                problem = (
                    f"{record.path}: annotation says {record.declared_size[0]}x{record.declared_size[1]}, "
                    f"image is {size[0]}x{size[1]}"
                )
            if problem:
                failed += 1
                yield {"n": row["n"], "path": record.path, "problems": [problem], "warnings": []}
                continue
            box_problems, box_warnings = fix_boxes(record, size, cfg.box_policy)
            failed += bool(box_problems)
            digest = file_digest(cfg.root / record.path)
            record.tags = {**record.tags, "width": size[0], "height": size[1], "md5": digest}
            yield {
                "n": row["n"],
                **{k: getattr(record, k) for k in _RECORD_KEYS},
                "dhash": hashed,
                "problems": box_problems,
                "warnings": box_warnings,
            }

    out.parent.mkdir(parents=True, exist_ok=True)
    n = write_manifest(tqdm(checked(), desc="validate", unit="img", disable=None), out)
    return n, failed


def gather(listing_path: Path, checked: Sequence[Path], cfg: DetectorValidateConfig) -> dict:
    """Step 3: read the checked chunks (in any order; each must be there once) and the
    listing, settle duplicates (:func:`find_duplicates`) and write validation_report.json;
    with no problem, split the box-labelled images (seeded, grouped; species images are
    'unlabelled') and write manifest.jsonl and dataset.json into ``cfg.out_dir``.
    Returns the dataset description.

    Raises :class:`ValidationFailed` listing every problem of every step at once.
    """
    listing = read_listing(
        listing_path, {"source", "images", "candidates", "classes", "problems", "warnings"}, cfg, _LISTED_SETTINGS
    )
    classes = listing["classes"]
    problems: list[str] = list(listing["problems"])
    warnings: list[str] = list(listing["warnings"])
    kept, hashes, digests = [], {}, {}
    n = 0
    for row in checked_rows(checked, listing["candidates"]):
        n += 1
        problems += row["problems"]
        warnings += row["warnings"]
        if "dhash" not in row:
            continue
        record = ImageRecord(**{k: row[k] for k in _RECORD_KEYS})
        hashes[record.path], digests[record.path] = row["dhash"], record.tags["md5"]
        kept.append(record)
    if n != listing["candidates"]:
        raise InputFileError(
            listing_path, f"lists {listing['candidates']} candidates; the checked files hold {n}: a chunk is missing"
        )

    kept, dup_problems, dup_warnings, dup_summary = find_duplicates(
        kept, hashes, digests, cfg.near_duplicate_bits, cfg.duplicates
    )
    problems += dup_problems
    warnings += dup_warnings
    extra, extra_report = [], None
    if cfg.extra_labels is not None:
        extra, extra_problems, extra_warnings, extra_report = merge_extra_labels(cfg, classes, kept, hashes)
        problems += extra_problems
        warnings += extra_warnings
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report_path = cfg.out_dir / "validation_report.json"
    report = {"images": listing["images"], "accepted": len(kept), "problems": problems, "warnings": warnings}
    if extra_report is not None:
        report["extra_labels"] = extra_report
    write_json_atomic(report_path, report)
    for line in warnings[:5]:
        log.warning("%s", line)
    if len(warnings) > 5:
        log.warning("… %d more warnings in %s", len(warnings) - 5, report_path)
    if problems:
        for line in problems:
            log.error("%s", line)
        raise ValidationFailed(listing["source"], problems, report=report_path.name)

    rows = [_row(r) for r in kept]
    boxed = [row for row in rows if row["source"] == "boxes"]
    if boxed:
        dominant = [Counter(r["labels"]).most_common(1)[0][0] if r["labels"] else "(empty)" for r in boxed]
        for row, split in zip(
            boxed,
            grouped_split(
                dominant,
                [r["group"] for r in boxed],
                cfg.val_fraction,
                cfg.test_fraction,
                cfg.seed,
                require_every_class=False,
                unit="image",
            ),
            strict=True,
        ):
            row["split"] = split
    for row in rows:
        row.setdefault("split", "unlabelled")
    rows += extra
    write_manifest(rows, cfg.out_dir / "manifest.jsonl")
    dataset = {
        "family": "detector",
        "classes": classes,
        "species": sorted({r["species"] for r in rows if r["species"]}),
        "n_images": len(rows),
        "n_boxes": sum(len(r["boxes"]) for r in rows),
        "counts": split_counts([{"split": r["split"], "label": lab} for r in rows for lab in r["labels"]]),
        "images_per_split": dict(Counter(r["split"] for r in rows)),
        "version": content_version([{**r, "label": ",".join(r["labels"]) or r["species"] or ""} for r in rows]),
        "split": {
            "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction,
            "seed": cfg.seed,
            "box_policy": cfg.box_policy,
            "duplicates": cfg.duplicates,
            "near_duplicate_bits": cfg.near_duplicate_bits,
            **dup_summary,
        },
        "source": data_source(cfg.root, ((r["path"], r["md5"]) for r in rows if "provenance" not in r)),
    }
    if cfg.extra_labels is not None:
        dataset["active_learning"] = active_learning_rounds(extra, Path(cfg.extra_labels).resolve())
        dataset["source"]["active_learning"] = dataset["active_learning"]  # so every model's lineage has it
    write_json_atomic(cfg.out_dir / "dataset.json", dataset)
    return dataset


def merge_extra_labels(
    cfg: DetectorValidateConfig, classes: list[str], kept: list[ImageRecord], hashes: dict
) -> tuple[list[dict], list[str], list[str], dict]:
    """The labelled images of the active-learning export ``cfg.extra_labels``
    (:func:`insectml.active.merge.read_labelled_export`; an image left with no box is a
    negative) as manifest rows of the train split, each image and box checked like the
    data's (``cfg.box_policy``), its ``provenance`` kept and its path absolute (it lies
    outside the data folder).

    Returns (rows, problems, warnings, a summary for the report). A problem: an image that
    fails the checks or disagrees with its annotation's size, a box of a class outside
    ``classes`` (the data's; the file and the class named). An image that is a duplicate
    or near-duplicate (dHash within ``cfg.near_duplicate_bits``) of a data image (``kept``,
    ``hashes``: path → dHash) is left out with a warning: the data's split keeps it, so
    no copy of a val or test image reaches training."""
    from insectml.active.merge import read_labelled_export

    export = Path(cfg.extra_labels).resolve()
    labelled = read_labelled_export(export, "detector", allow_new_classes=True)
    known = set(classes)
    checked, problems, warnings = [], [], []
    for item in labelled:
        path = export / item["path"]
        unknown = sorted({name for name in item["labels"] if name not in known})
        if unknown:
            problems.append(f"{path}: class(es) {', '.join(unknown)} not in the data (classes: {', '.join(classes)})")
            continue
        size, hashed, problem = check_image(path, str(path))
        if not problem and (item["width"], item["height"]) != tuple(size):
            problem = f"{path}: annotation says {item['width']}x{item['height']}, image is {size[0]}x{size[1]}"
        if problem:
            problems.append(problem)
            continue
        record = ImageRecord(path=str(path), group=item["group"], boxes=item["boxes"], labels=item["labels"])
        box_problems, box_warnings = fix_boxes(record, size, cfg.box_policy)
        problems += box_problems
        warnings += box_warnings
        checked.append(({**item, "path": str(path), "boxes": record.boxes, "labels": record.labels}, hashed))
    twins = _twins_in_data([h for _, h in checked], [hashes[r.path] for r in kept], cfg.near_duplicate_bits)
    rows = []
    for (row, _), twin in zip(checked, twins, strict=True):
        if twin is not None:
            warnings.append(f"{row['path']}: duplicate of {kept[twin].path} of the data; left out (its split keeps it)")
            continue
        rows.append({**row, "split": "train"})
    summary = {"export": str(export), "merged": len(rows), "skipped": labelled.skipped}
    return rows, problems, warnings, summary


def _twins_in_data(extra: list[int], data: list[int], bits: int) -> list[int | None]:
    """For each of the ``extra`` dHashes, the index of a ``data`` dHash within ``bits``, or None."""
    pairs = near_pairs([*data, *extra], bits)
    twin: list[int | None] = [None] * len(extra)
    for i, j, _ in pairs.tolist():
        if i < len(data) <= j and twin[j - len(data)] is None:
            twin[j - len(data)] = i
    return twin


def find_duplicates(
    records: list[ImageRecord], hashes: dict, digests: dict, bits: int, policy: str
) -> tuple[list[ImageRecord], list[str], list[str], dict[str, int]]:
    """Exact (md5) and near (dHash distance <= ``bits``) duplicates under ``policy``
    (:func:`insectml.data.duplicates.resolve`): returns the records kept, with their groups
    merged under ``group``, the problems, the warnings and the counts of merges and drops.

    Under ``group`` a species image in a cluster with a box-labelled image is dropped too:
    species images are not split, and their pseudo-labels go to train whichever side the
    box-labelled twin is on."""
    # Identical bytes have identical dHashes, so the dHash search finds exact duplicates
    # too; the md5s only tell them apart in the report.
    pairs = near_pairs([hashes[r.path] for r in records], bits)
    done = resolve(
        [r.path for r in records],
        [r.group for r in records],
        pairs,
        policy,
        digests=[digests[r.path] for r in records],
    )
    keep, warnings = list(done.keep), list(done.warnings)
    if policy == "group":
        cluster = clusters(len(records), pairs)
        boxed = {cluster[k] for k, r in enumerate(records) if r.species is None}
        for k, record in enumerate(records):
            if record.species is not None and cluster[k] in boxed:
                keep[k] = False
                warnings.append(
                    f"{record.path}: duplicate of a box-labelled image; dropped, since its pseudo-labels would "
                    "go to train whichever split that image is in"
                )
    for record, group in zip(records, done.groups, strict=True):
        record.group = group
    kept = [r for r, k in zip(records, keep, strict=True) if k]
    summary = {"groups_merged": done.merged, "duplicates_dropped": len(records) - len(kept)}
    return kept, list(done.problems), warnings, summary


def _row(record: ImageRecord) -> dict:
    return {
        "id": str(Path(record.path).with_suffix("")),
        "path": record.path,
        "width": record.tags["width"],
        "height": record.tags["height"],
        "boxes": record.boxes,
        "labels": record.labels,
        "species": record.species,
        "group": record.group,
        "md5": record.tags["md5"],
        "source": "species" if record.species else "boxes",
        "tags": {k: v for k, v in record.tags.items() if k not in ("width", "height", "md5")},
    }


def _cap(records: list[ImageRecord], cap: int, seed: int) -> list[ImageRecord]:
    """At most ``cap`` records (0 keeps all), chosen with ``seed``, in their original order."""
    if cap <= 0 or len(records) <= cap:
        return records
    keep = set(np.random.default_rng(seed).choice(len(records), size=cap, replace=False).tolist())
    return [r for i, r in enumerate(records) if i in keep]
