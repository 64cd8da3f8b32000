"""``insectml detector …``: the detector pipeline steps built so far."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import existing_dir


def register(sub: argparse._SubParsersAction) -> None:
    detector = sub.add_parser("detector", help="photos + boxes → insect detectors")
    steps = detector.add_subparsers(dest="step", metavar="STEP", required=True)
    p = steps.add_parser(
        "validate",
        help="read Supervisely boxes and species folders, check every image and box, split",
        description="Read a Supervisely project (boxes) and/or a folder-per-species image set (labels only), "
        "check every image and box, report every problem at once (exit 2) or write manifest.jsonl, "
        "dataset.json and validation_report.json. Box-labelled images are split (seeded, grouped by the "
        "image tag 'group' when present); species images are marked 'unlabelled'.",
    )
    p.add_argument("--root", type=existing_dir, required=True, help="folder the manifest's paths are relative to")
    p.add_argument("--supervisely", type=existing_dir, help="Supervisely project export (meta.json + datasets)")
    p.add_argument("--species", type=existing_dir, help="<species>/<image> folders, image-level labels only")
    p.add_argument("--classes", default="", help="comma-separated classes to accept (default: the project's)")
    p.add_argument(
        "--box-policy",
        choices=["clip", "reject"],
        default="clip",
        help="boxes outside the image or of zero area: clip (and drop empty ones) or reject (default: clip)",
    )
    p.add_argument(
        "--near-duplicate-bits",
        type=int,
        default=4,
        help="dHash distance at or below which two images are near-duplicates (default: 4)",
    )
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of groups for validation (default: 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of groups for test (default: 0.2)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from insectml.detector.validate import DetectorValidateConfig, validate_detection
    from insectml.errors import ConfigError

    if args.supervisely is None and args.species is None:
        raise ConfigError("give --supervisely, --species or both")
    dataset = validate_detection(
        DetectorValidateConfig(
            root=args.root,
            out_dir=args.out,
            supervisely=args.supervisely,
            species=args.species,
            classes=tuple(c.strip() for c in args.classes.split(",") if c.strip()),
            box_policy=args.box_policy,
            near_duplicate_bits=args.near_duplicate_bits,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
        )
    )
    print(json.dumps({k: dataset[k] for k in ("n_images", "n_boxes", "images_per_split")}))
    return 0
