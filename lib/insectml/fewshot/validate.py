"""Read a few-shot image set (folder per class, or a CSV manifest), check every image,
and split it twice, seeded: by class (base classes to train on; novel classes for
validation and test, never seen in training) and, inside each novel class, by image
(support images make the prototype; query images are classified)."""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def _read(cfg: FewshotValidateConfig) -> tuple[list[dict], list[str]]:
    rows, problems = [], []
    if cfg.labels is not None:
        with cfg.labels.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"path", "label"} - set(reader.fieldnames or [])
            if missing:
                raise InputFileError(cfg.labels, f"missing column(s) {', '.join(sorted(missing))}")
            for line, rec in enumerate(reader, start=2):
                if not (rec["label"] or "").strip():
                    problems.append(f"{cfg.labels}:{line}: empty label")
                    continue
                rows.append({"path": rec["path"], "label": rec["label"].strip()})
    else:
        for folder in sorted(p for p in cfg.images.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                problems.append(f"{folder}: class '{folder.name}' has no images")
            rows += [{"path": str(f.relative_to(cfg.root)), "label": folder.name} for f in files]
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
    for row in rows:
        path = cfg.root / row["path"]
        if not path.is_file():
            problems.append(f"{row['path']}: file not found")
            continue
        _size, _hash, problem = check_image(path, row["path"])
        if problem:
            problems.append(problem)
            continue
        row["md5"] = file_digest(path)
        if row["md5"] in digests and digests[row["md5"]] != row["label"]:
            problems.append(f"{row['path']}: same bytes as an image of class '{digests[row['md5']]}' (label conflict)")
        digests.setdefault(row["md5"], row["label"])
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["label"]] = counts.get(row["label"], 0) + 1
    problems += [
        f"class '{c}' has 1 image; at least 2 are needed (support + query)" for c, n in sorted(counts.items()) if n < 2
    ]
    classes = sorted(counts)
    if len(classes) < 10 and not problems:
        problems.append(f"only {len(classes)} classes; a class-disjoint split needs at least 10")
    report = {"rows": len(rows), "classes": len(classes), "problems": problems}
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    (cfg.out_dir / "validation_report.json").write_text(json.dumps(report, indent=2) + "\n")
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
        picked = rng.permutation(len(members))
        n_support = min(cfg.support, len(members) - 1)
        for rank, j in enumerate(picked):
            row = dict(members[j])
            row["id"] = row["path"]
            row["split"] = role[c]
            row["subset"] = "train" if role[c] == "train" else ("support" if rank < n_support else "query")
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
        },
    }
    (cfg.out_dir / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    log.info("%d images, %d classes: %s", len(out), len(classes), dataset["classes_per_split"])
    return dataset
