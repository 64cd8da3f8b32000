"""Pseudo-labels: run a detector over images that carry only a species label, keep
boxes above a score threshold, give them the image's species, and merge them with
the box-labelled data for the target-species stage.

Every pseudo box keeps its provenance (model, threshold, score). The result is also
written as a Supervisely project, so people can review it in the labelling tool.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from insectml.data.manifest import read_json, read_manifest, write_manifest
from insectml.detector.family import PARAMS as P
from insectml.detector.models import load_detector
from insectml.errors import ConfigError
from insectml.fileio import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PseudoLabelConfig:
    model_dir: Path
    manifest: Path
    dataset: Path
    root: Path
    out_dir: Path
    threshold: float = P.default("detector_pseudo_threshold")
    keep: str = P.default("detector_pseudo_keep")  # top1 | all


def pseudo_label(cfg: PseudoLabelConfig) -> dict:
    """Write ``pseudo_manifest.jsonl`` (species images that gained boxes),
    ``merged_manifest.jsonl`` (box-labelled rows + pseudo rows in train),
    ``merged_dataset.json``, ``pseudo_report.json`` and ``pseudo_sly/``.

    When no species image gained a box (or there are none), the merged files are not
    written: a target stage would train a copy of the generic detector. Instead
    ``target_skipped.txt`` says why, in one line, and the report's ``target_stage`` is
    ``"skipped"``."""
    from PIL import Image
    from torchvision.transforms.functional import pil_to_tensor
    from tqdm import tqdm

    if not 0 < cfg.threshold < 1 or cfg.keep not in ("top1", "all"):
        raise ConfigError(f"threshold must be in (0, 1) and keep top1 or all; got {cfg.threshold}, {cfg.keep}")
    model, classes, config = load_detector(cfg.model_dir)
    dataset = read_json(cfg.dataset, "dataset description")
    rows = read_manifest(cfg.manifest)
    species_rows = [r for r in rows if r["source"] == "species"]
    unknown = sorted({r["species"] for r in species_rows} - set(classes))
    if unknown:
        raise ConfigError(f"{cfg.manifest}: species not among the detector's classes: {', '.join(unknown)}")
    pseudo, dropped = [], []
    provenance = {
        "model": config["model"],
        "model_dir": str(cfg.model_dir),
        "threshold": cfg.threshold,
        "keep": cfg.keep,
    }
    with torch.no_grad():
        for row in tqdm(species_rows, desc="pseudo-label", unit="img", disable=None):
            with Image.open(cfg.root / row["path"]) as image:
                # contiguous: PIL's HWC layout leaves a channels-last view, on which CPU convolutions crawl
                tensor = pil_to_tensor(image.convert("RGB")).contiguous().float() / 255
            out = model([tensor])[0]
            keep = torch.nonzero(out["scores"] >= cfg.threshold).flatten()
            if cfg.keep == "top1":
                keep = keep[:1]  # torchvision returns detections sorted by score
            if len(keep) == 0:
                dropped.append(row["path"])
                continue
            boxes = [[round(v, 2) for v in out["boxes"][i].tolist()] for i in keep]
            scores = [round(float(out["scores"][i]), 4) for i in keep]
            pseudo.append(
                {
                    **row,
                    "boxes": boxes,
                    "labels": [row["species"]] * len(boxes),
                    "split": "train",
                    "source": "pseudo",
                    "pseudo": {**provenance, "scores": scores},
                }
            )
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    write_manifest(pseudo, cfg.out_dir / "pseudo_manifest.jsonl")
    skipped = _why_no_target(len(species_rows), cfg.threshold) if not pseudo else None
    if skipped:
        log.warning("%s", skipped)
        write_text_atomic(cfg.out_dir / "target_skipped.txt", skipped + "\n")
    else:
        boxed = [r for r in rows if r["source"] == "boxes"]
        write_manifest(boxed + pseudo, cfg.out_dir / "merged_manifest.jsonl")
        merged = {
            **dataset,
            "n_pseudo_images": len(pseudo),
            "n_pseudo_boxes": sum(len(r["boxes"]) for r in pseudo),
            "pseudo_provenance": provenance,
        }
        write_json_atomic(cfg.out_dir / "merged_dataset.json", merged, indent=2)
    report = {
        "target_stage": "skipped" if skipped else "trained",
        **provenance,
        "species_images": len(species_rows),
        "gained_boxes": len(pseudo),
        "dropped": len(dropped),
        "dropped_images": dropped,
        "boxes_per_species": _count(pseudo),
    }
    (cfg.out_dir / "pseudo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_supervisely(pseudo, classes, cfg.root, cfg.out_dir / "pseudo_sly")
    return report


def _why_no_target(n_species: int, threshold: float) -> str:
    if n_species == 0:
        return (
            "detector: no species-only images (--detector_species not given or empty), "
            "so only the generic detector is trained; the target stage is skipped"
        )
    return (
        f"detector: none of the {n_species} species images gained a box at score threshold {threshold}, "
        "so the target stage is skipped (it would train a copy of the generic detector); "
        "lower --detector_pseudo_threshold or train the generic detector longer"
    )


def _count(rows: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        for label in row["labels"]:
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def _write_supervisely(rows: list[dict], classes: list[str], root: Path, project: Path) -> None:
    """A Supervisely project of the pseudo-labelled images, scores as object tags."""
    import shutil

    (project / "pseudo" / "img").mkdir(parents=True, exist_ok=True)
    (project / "pseudo" / "ann").mkdir(parents=True, exist_ok=True)
    meta = {
        "classes": [{"title": c, "shape": "rectangle", "color": "#E53935"} for c in classes],
        "tags": [{"name": "score", "value_type": "any_number", "color": "#1E88E5"}],
        "projectType": "images",
    }
    (project / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    for row in rows:
        name = row["path"].replace("/", "__")
        shutil.copy(root / row["path"], project / "pseudo" / "img" / name)
        objects = [
            {
                "classTitle": label,
                "geometryType": "rectangle",
                "tags": [{"name": "score", "value": score}],
                "points": {
                    "exterior": [[int(x1), int(y1)], [max(int(x1), int(x2) - 1), max(int(y1), int(y2) - 1)]],
                    "interior": [],
                },
            }
            for (x1, y1, x2, y2), label, score in zip(row["boxes"], row["labels"], row["pseudo"]["scores"], strict=True)
        ]
        ann = {
            "description": "",
            "tags": [],
            "size": {"height": row["height"], "width": row["width"]},
            "objects": objects,
        }
        (project / "pseudo" / "ann" / f"{name}.json").write_text(json.dumps(ann) + "\n")
