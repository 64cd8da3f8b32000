"""Validate detection data before anything trains on it, then split it.

Refused (problems, reported all at once): unreadable or truncated images, an
annotation whose size disagrees with its image, unknown classes, boxes outside the
image or of zero area under ``box_policy="reject"``. Under ``box_policy="clip"`` boxes
are clipped to the image and empty ones dropped, and each such change is listed as a
warning.

Exact or near-duplicate images (dHash) in different groups would land on both sides of a
split: under ``duplicates="group"`` their groups are merged (a warning each), under
``drop`` one image of each cluster is kept, under ``error`` each such pair is a problem.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.data.duplicates import clusters, near_pairs, resolve
from insectml.data.images import check_image
from insectml.data.manifest import content_version, file_digest, split_counts, write_manifest
from insectml.data.split import grouped_split
from insectml.detector.family import PARAMS as P
from insectml.detector.formats import locate_labels, read_boxes
from insectml.detector.supervisely_io import ImageRecord, read_species_folders
from insectml.errors import ValidationFailed
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
    """Write manifest.jsonl, dataset.json and validation_report.json into ``cfg.out_dir``;
    raise :class:`ValidationFailed` listing every problem (the report is written either way)."""
    from tqdm import tqdm

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

    kept, hashes, digests = [], {}, {}
    for record in tqdm(records, desc="validate", unit="img", disable=None):
        size, hashed, problem = check_image(cfg.root / record.path, record.path)
        if problem:
            problems.append(problem)
            continue
        if record.declared_size and tuple(record.declared_size) != tuple(size):
            problems.append(
                f"{record.path}: annotation says {record.declared_size[0]}x{record.declared_size[1]}, "
                f"image is {size[0]}x{size[1]}"
            )
            continue
        unknown = sorted({label for label in record.labels if label not in classes})
        if record.species is None and unknown:
            problems.append(f"{record.path}: unknown class(es) {', '.join(unknown)} (known: {', '.join(classes)})")
            continue
        box_problems, box_warnings = fix_boxes(record, size, cfg.box_policy)
        problems += box_problems
        warnings += box_warnings
        digest = file_digest(cfg.root / record.path)
        record.tags = {**record.tags, "width": size[0], "height": size[1], "md5": digest}
        hashes[record.path], digests[record.path] = hashed, digest
        kept.append(record)

    kept, dup_problems, dup_warnings, dup_summary = find_duplicates(
        kept, hashes, digests, cfg.near_duplicate_bits, cfg.duplicates
    )
    problems += dup_problems
    warnings += dup_warnings
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report_path = cfg.out_dir / "validation_report.json"
    report = {"images": len(records), "accepted": len(kept), "problems": problems, "warnings": warnings}
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    for line in warnings[:5]:
        log.warning("%s", line)
    if len(warnings) > 5:
        log.warning("… %d more warnings in %s", len(warnings) - 5, report_path)
    if problems:
        for line in problems:
            log.error("%s", line)
        raise ValidationFailed(cfg.labels or cfg.species, problems, report=report_path.name)

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
    }
    (cfg.out_dir / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return dataset


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
