"""Validate a wingbeat dataset and split it, before anything trains on it."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from insectml.data.manifest import content_version, file_digest, split_counts, write_manifest
from insectml.data.split import grouped_split
from insectml.errors import InputFileError, ValidationFailed
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
    max_per_class: int = P.default("wingbeat_max_per_class")  # 0 = keep all
    resample: bool = P.default("wingbeat_resample")


def validate_and_split(cfg: ValidateConfig) -> dict:
    """Check every row and recording, then write manifest.jsonl, dataset.json and
    validation_report.json into ``cfg.out_dir``.

    Raises :class:`ValidationFailed` listing every problem found; the report is
    written either way.
    """
    from tqdm import tqdm

    if cfg.labels is None:
        rows = read_folder_layout(cfg.data_dir, cfg.group_by)
        name = f"{cfg.data_dir.name}/"
    else:
        rows = read_labels(cfg.labels, cfg.group_by)
        name = cfg.labels.name
    source = cfg.labels or cfg.data_dir
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
        if row.path in seen_path:
            problems.append(f"{where}: '{row.path}' is listed twice (first at line {seen_path[row.path]})")
            continue
        seen_path[row.path] = row.line
        if known is not None and row.species not in known:
            problems.append(f"{where}: unknown species '{row.species}' (known: {', '.join(known)})")
            continue
        accepted.append(row)

    accepted = _cap_per_class(accepted, cfg.max_per_class, cfg.seed)
    samples = []
    by_digest: dict[str, str] = {}
    for row in tqdm(accepted, desc="validate", unit="rec", disable=None):
        path = cfg.data_dir / row.path
        try:
            audio = decode_wav(path, cfg.sample_rate, name=row.path, resample=cfg.resample)
        except InputFileError as exc:
            problems.append(str(exc))
            continue
        digest = file_digest(path)
        if digest in by_digest:
            problems.append(f"{row.path}: identical content to {by_digest[digest]} (duplicate recording)")
            continue
        by_digest[digest] = row.path
        samples.append(
            {
                "id": str(Path(row.path).with_suffix("")),
                "path": row.path,
                "label": row.species,
                "group": row.group,
                "md5": digest,
                "duration_s": round(len(audio) / cfg.sample_rate, 4),
            }
        )

    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report_path = cfg.out_dir / "validation_report.json"
    report = {"labels": str(source), "rows": len(rows), "accepted": len(samples), "problems": problems}
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    if problems:
        for problem in problems:
            log.error("%s", problem)
        raise ValidationFailed(source, problems, report=report_path.name)

    splits = grouped_split(
        [s["label"] for s in samples],
        [s["group"] for s in samples],
        cfg.val_fraction,
        cfg.test_fraction,
        cfg.seed,
    )
    for sample, split in zip(samples, splits, strict=True):
        sample["split"] = split
    classes = known if known is not None else sorted({s["label"] for s in samples})
    classes = [c for c in classes if any(s["label"] == c for s in samples)]
    write_manifest(samples, cfg.out_dir / "manifest.jsonl")
    dataset = {
        "family": "wingbeat",
        "classes": classes,
        "n_samples": len(samples),
        "counts": split_counts(samples),
        "version": content_version(samples),
        "split": {
            k: v
            for k, v in asdict(cfg).items()
            if k in ("group_by", "val_fraction", "test_fraction", "seed", "max_per_class", "sample_rate", "resample")
        },
    }
    (cfg.out_dir / "dataset.json").write_text(json.dumps(dataset, indent=2) + "\n")
    return dataset


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
