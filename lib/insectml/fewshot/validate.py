"""Read a few-shot image set (folder per class, or a CSV manifest), check every image,
and split it twice, seeded: by class (base classes to train on; novel classes for
validation and test, never seen in training) and, inside each novel class, by image
(support images make the prototype; query images are classified).

Every image is its own group, except near-duplicates within a class (dHash), which are
grouped under ``duplicates="group"`` so they fall on one side of the support/query cut
(``drop`` keeps one of them, ``error`` refuses them). The same bytes under two classes are a
label conflict (a problem); near-duplicates across classes are a warning."""

from __future__ import annotations

import csv
import json
import logging
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.data.duplicates import near_pairs, resolve
from insectml.data.images import check_image
from insectml.data.manifest import content_version, file_digest, write_manifest
from insectml.errors import ConfigError, InputFileError, ValidationFailed
from insectml.fewshot.family import PARAMS as P
from insectml.runparams import GENERAL

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class FewshotValidateConfig:
    root: Path  # manifest paths are relative to it
    out_dir: Path
    images: Path | None = None  # <class>/<image> folders
    labels: Path | None = None  # CSV with path,label (paths relative to root)
    val_fraction: float = P.default("fewshot_val_fraction")  # share of classes held out for validation (novel)
    test_fraction: float = P.default("fewshot_test_fraction")  # share of classes held out for test (novel)
    support: int = P.default("fewshot_support")  # support images per novel class (at most n − 1)
    max_classes: int = P.default("fewshot_max_classes")  # keep at most N classes, seeded (0 = all)
    seed: int = GENERAL.default("seed")
    near_duplicate_bits: int = P.default("fewshot_near_duplicate_bits")  # dHash distance of near-duplicates
    duplicates: str = GENERAL.default("duplicates")  # group | drop | error


def _read(cfg: FewshotValidateConfig) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    if cfg.labels is not None:
        # UTF-8 whatever the locale: class names such as "Anophèles" must read the same everywhere.
        try:
            with cfg.labels.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = {"path", "label"} - set(reader.fieldnames or [])
                if missing:
                    raise InputFileError(cfg.labels, f"missing column(s) {', '.join(sorted(missing))}")
                for line, rec in enumerate(reader, start=2):
                    if not (rec["label"] or "").strip():
                        problems.append(f"{cfg.labels}:{line}: empty label")
                        continue
                    rows.append({"path": rec["path"], "label": unicodedata.normalize("NFC", rec["label"].strip())})
        except UnicodeDecodeError:
            raise InputFileError(cfg.labels, "not a UTF-8 text CSV file") from None
    else:
        for folder in sorted(p for p in cfg.images.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append(f"{folder}: class '{folder.name}' has no images")
            # NFC: a folder copied from macOS spells "è" as e + accent; the CSV and the user, as one letter.
            label = unicodedata.normalize("NFC", folder.name)
            rows += [{"path": str(f.relative_to(cfg.root)), "label": label} for f in files]
        if not rows and not problems:
            problems.append(f"{cfg.images}: no <class>/<image> folders found")
    return rows, problems


def validate_fewshot(cfg: FewshotValidateConfig) -> dict:
    """Write manifest.jsonl, dataset.json, validation_report.json; every problem at once."""
    if (cfg.images is None) == (cfg.labels is None):
        raise ConfigError("give either --images (folder per class) or --labels (CSV path,label)")
    if not 0 < cfg.val_fraction < 0.5 or not 0 < cfg.test_fraction < 0.5:
        raise ConfigError(f"class fractions must be in (0, 0.5); got val={cfg.val_fraction}, test={cfg.test_fraction}")
    rows, problems = _read(cfg)
    digests: dict[str, str] = {}
    checked, hashes = [], []
    for row in rows:
        path = cfg.root / row["path"]
        if not path.is_file():
            problems.append(f"{row['path']}: file not found")
            continue
        _size, hashed, problem = check_image(path, row["path"])
        if problem:
            problems.append(problem)
            continue
        row["md5"] = file_digest(path)
        if row["md5"] in digests and digests[row["md5"]] != row["label"]:
            problems.append(f"{row['path']}: same bytes as an image of class '{digests[row['md5']]}' (label conflict)")
        digests.setdefault(row["md5"], row["label"])
        checked.append(row)
        hashes.append(hashed)
    dup_problems, warnings, dropped, merged = _duplicates(checked, hashes, cfg)
    problems += dup_problems
    rows = [r for r in rows if id(r) not in dropped]
    counts: dict[str, int] = {}
    groups: dict[str, set[str]] = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
        groups.setdefault(row["label"], set()).add(row.get("group", row["path"]))
    problems += [
        f"class '{c}' has 1 image; at least 2 are needed (support + query)" for c, n in sorted(counts.items()) if n < 2
    ]
    problems += [
        f"class '{c}': its {counts[c]} images are all near-duplicates of each other (one group); support and query "
        "need images from at least 2"
        for c, gs in sorted(groups.items())
        if len(gs) < 2 <= counts[c]
    ]
    classes = sorted(counts)
    if len(classes) < 10 and not problems:
        problems.append(f"only {len(classes)} classes; a class-disjoint split needs at least 10")
    report = {"rows": len(rows), "classes": len(classes), "problems": problems, "warnings": warnings}
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "validation_report.json").write_text(json.dumps(report, indent=2) + "\n")
    for line in warnings[:5]:
        log.warning("%s", line)
    if len(warnings) > 5:
        log.warning("… %d more warnings in %s", len(warnings) - 5, cfg.out_dir / "validation_report.json")
    if problems:
        raise ValidationFailed(cfg.images or cfg.labels, problems, cfg.out_dir / "validation_report.json")

    rng = np.random.default_rng(cfg.seed)
    if cfg.max_classes and len(classes) > cfg.max_classes:
        classes = sorted(rng.choice(classes, cfg.max_classes, replace=False).tolist())
        rows = [r for r in rows if r["label"] in set(classes)]
    order = rng.permutation(len(classes))
    n_test = max(2, round(cfg.test_fraction * len(classes)))
    n_val = max(2, round(cfg.val_fraction * len(classes)))
    role = {}
    for rank, i in enumerate(order):
        role[classes[i]] = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
    by_class: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["path"]):
        by_class.setdefault(row["label"], []).append(row)
    out = []
    for c in classes:
        members = by_class[c]
        # The support/query cut is made by group, so near-duplicates stay on one side; with
        # every image its own group this is the cut by image.
        grouped: dict[str, list[dict]] = {}
        for row in members:
            grouped.setdefault(row["group"], []).append(row)
        units = list(grouped.values())
        picked = rng.permutation(len(units))
        n_support = min(cfg.support, len(members) - 1)
        in_support = 0
        for rank, j in enumerate(picked):
            support = in_support < n_support and rank < len(units) - 1  # at least one group of queries
            in_support += len(units[j]) if support else 0
            for member in units[j]:
                row = dict(member)
                row["id"] = row["path"]
                row["split"] = role[c]
                row["subset"] = "train" if role[c] == "train" else ("support" if support else "query")
                out.append(row)
    write_manifest(out, cfg.out_dir / "manifest.jsonl")
    split_classes = {s: sorted(c for c in classes if role[c] == s) for s in ("train", "val", "test")}
    dataset = {
        "family": "fewshot",
        "classes": classes,
        "n_images": len(out),
        "classes_per_split": {s: len(v) for s, v in split_classes.items()},
        "images_per_split": {s: sum(1 for r in out if r["split"] == s) for s in ("train", "val", "test")},
        "split_classes": split_classes,
        "version": content_version(
            {"id": r["id"], "label": r["label"], "group": r["subset"], "split": r["split"], "md5": r["md5"]}
            for r in out
        ),
        "split": {
            "seed": cfg.seed,
            "val_fraction": cfg.val_fraction,
            "test_fraction": cfg.test_fraction,
            "support": cfg.support,
            "duplicates": cfg.duplicates,
            "near_duplicate_bits": cfg.near_duplicate_bits,
            "groups_merged": merged,
            "duplicates_dropped": len(dropped),
        },
    }
    (cfg.out_dir / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    log.info("%d images, %d classes: %s", len(out), len(classes), dataset["classes_per_split"])
    return dataset


def _duplicates(
    rows: list[dict], hashes: list[int], cfg: FewshotValidateConfig
) -> tuple[list[str], list[str], set[str], int]:
    """Give every row its group (its path, or the merged group of its near-duplicates within
    its class) under ``cfg.duplicates``; returns (problems, warnings, the ``id`` of each dropped row, merges).
    Across classes, identical bytes are the label conflict reported by the caller; other
    near-duplicates are a warning."""
    pairs = near_pairs(hashes, cfg.near_duplicate_bits)
    same_class = np.asarray([rows[i]["label"] == rows[j]["label"] for i, j, _ in pairs.tolist()], dtype=bool)
    warnings = [
        f"{rows[j]['path']}: near-duplicate (dHash distance {d}) of {rows[i]['path']} of class '{rows[i]['label']}'"
        for i, j, d in pairs[~same_class].tolist()
        if rows[i]["md5"] != rows[j]["md5"]
    ]
    done = resolve(
        [r["path"] for r in rows],
        [r["path"] for r in rows],
        pairs[same_class].reshape(-1, 3),
        cfg.duplicates,
        digests=[r["md5"] for r in rows],
    )
    for row, group in zip(rows, done.groups, strict=True):
        row["group"] = group
    dropped = {id(r) for r, keep in zip(rows, done.keep, strict=True) if not keep}
    return list(done.problems), warnings + list(done.warnings), dropped, done.merged
