"""``insectml detector …``: the detector pipeline steps built so far."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import add_manifest_args, add_resume_args, existing_dir


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
    p.add_argument(
        "--max-images", type=int, default=0, help="keep at most N box-labelled and N species images, seeded (0 = all)"
    )
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    from insectml.detector.models import DETECTORS

    p = steps.add_parser(
        "train",
        help="train a torchvision detector (weights=None; --weights PATH for local weights)",
        description="Train on the manifest's train split with the shared loop; early stopping on val mAP@.5. "
        "Writes weights.pt, config.json, labels.json, lineage.json, train_metrics.json, history.jsonl, "
        "checkpoints/last.pt.",
    )
    add_manifest_args(p)
    p.add_argument(
        "--model",
        default="ssdlite320_mobilenet_v3_large",
        choices=sorted(DETECTORS),
        help="detector (default: ssdlite320_mobilenet_v3_large)",
    )
    p.add_argument("--weights", type=Path, help="local state dict to start from (nothing is downloaded)")
    p.add_argument("--image-size", type=int, default=320, help="input size of the FPN models (default: 320)")
    p.add_argument("--epochs", type=int, default=100, help="most epochs (default: 100)")
    p.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    p.add_argument("--lr", type=float, default=5e-3, help="peak AdamW learning rate (default: 0.005)")
    p.add_argument("--patience", type=int, default=15, help="epochs without a better val mAP@.5 before stopping")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    add_resume_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "evaluate",
        help="COCO mAP, per-class AP, confusion matrix at IoU 0.5, prediction grid",
        description="Score a detector on one split: metrics.json, confusion_matrix.png, predictions.png.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    add_manifest_args(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser(
        "pseudo-label",
        help="boxes for species-labelled images from a detector; merge with the box labels",
        description="Run a detector over the manifest's species-labelled images, keep boxes scoring at least "
        "--threshold (the best one, or all), label them with the image's species, and write "
        "pseudo_manifest.jsonl, merged_manifest.jsonl (box labels + pseudo labels, the latter in train), "
        "merged_dataset.json, pseudo_report.json and a Supervisely project pseudo_sly/ for review.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="detector model folder from 'train'")
    add_manifest_args(p)
    p.add_argument("--threshold", type=float, default=0.5, help="lowest score kept (default: 0.5)")
    p.add_argument(
        "--keep",
        choices=["top1", "all"],
        default="top1",
        help="per image: the best box only, or every box above the threshold (default: top1)",
    )
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_pseudo_label)

    p = steps.add_parser(
        "export",
        help="TorchScript (and ONNX) export, checked against the model, plus a .mar for MMS",
        description="Script the detector with TorchScript (and export ONNX with --export onnx), check each "
        "export against the eager model on a sample image, and pack the TorchScript model into OUT/NAME.mar "
        "whose handler answers an image body with [{label, score, box: [x1, y1, x2, y2]}].",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--name", default="detector", help="archive and model name (default: detector)")
    p.add_argument(
        "--export",
        default="torchscript",
        help="comma-separated formats: torchscript, onnx (default: torchscript; the .mar always holds TorchScript)",
    )
    p.add_argument("--score-threshold", type=float, default=0.3, help="served boxes score at least this (default: 0.3)")
    p.add_argument("--no-mar", action="store_true", help="write the exports only, no .mar")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_export)

    p = steps.add_parser(
        "predict",
        help="boxes for image files with a model folder (the served code path)",
        description="Print one JSON line per image: {file, detections: [{label, score, box}]}.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--score-threshold", type=float, default=0.3, help="lowest score printed (default: 0.3)")
    p.add_argument("images", nargs="+", type=Path, help="JPEG/PNG files")
    p.set_defaults(func=_predict)


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
            max_images=args.max_images,
        )
    )
    print(json.dumps({k: dataset[k] for k in ("n_images", "n_boxes", "images_per_split")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from insectml.detector.train import DetectorTrainConfig, train_detector

    result = train_detector(
        DetectorTrainConfig(
            manifest=args.manifest,
            dataset=args.dataset,
            root=args.root,
            out_dir=args.out,
            model=args.model,
            weights=args.weights,
            image_size=args.image_size,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            patience=args.patience,
            seed=args.seed,
            threads=args.threads,
            resume=args.resume,
            checkpoint_dir=args.checkpoint_dir,
            device=args.device,
        )
    )
    print(json.dumps({k: v for k, v in result.items() if k.startswith("best")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from insectml.detector.evaluate import evaluate_detector

    metrics = evaluate_detector(args.model, args.manifest, args.dataset, args.root, args.out, args.split)
    print(json.dumps({k: metrics[k] for k in ("split", "n_images", "map", "map_50")}))
    return 0


def _pseudo_label(args: argparse.Namespace) -> int:
    from insectml.detector.pseudolabel import PseudoLabelConfig, pseudo_label

    report = pseudo_label(
        PseudoLabelConfig(
            model_dir=args.model,
            manifest=args.manifest,
            dataset=args.dataset,
            root=args.root,
            out_dir=args.out,
            threshold=args.threshold,
            keep=args.keep,
        )
    )
    print(json.dumps({k: report[k] for k in ("species_images", "gained_boxes", "dropped")}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from insectml.detector.export import export_detector
    from insectml.errors import ConfigError
    from insectml.serving.package import build_mar

    if not 0 <= args.score_threshold <= 1:
        raise ConfigError(f"--score-threshold {args.score_threshold}: expected a score in [0, 1]")
    formats = tuple(f.strip() for f in args.export.split(",") if f.strip())
    written = export_detector(args.model, args.out, args.name, ("torchscript", *formats))
    if not args.no_mar:
        written["mar"] = str(
            build_mar(
                args.model,
                args.name,
                "insectml.serving.detector_handler",
                args.out,
                extra_files={"model.torchscript.pt": Path(written["torchscript"])},
                serving={"score_threshold": args.score_threshold},
            )
        )
    print(json.dumps(written))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from insectml.detector.predict import DetectorPredictor, decode_image
    from insectml.errors import InputFileError

    predictor = DetectorPredictor(args.model, args.score_threshold)
    for path in args.images:
        if not path.is_file():
            raise InputFileError(path, "image not found")
        (answer,) = predictor.predict([decode_image(path.read_bytes(), name=str(path))])
        print(json.dumps({"file": str(path), "detections": answer}))
    return 0
