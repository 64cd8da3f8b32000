"""``insectml detector …``: the detector pipeline steps built so far."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import (
    add_loop_args,
    add_manifest_args,
    add_param,
    add_step_params,
    existing_dir,
    existing_file,
    step_settings,
)
from insectml.detector.family import FAMILY
from insectml.runparams import GENERAL

P = FAMILY.group


def register(sub: argparse._SubParsersAction) -> None:
    detector = sub.add_parser(FAMILY.name, help=FAMILY.help)
    steps = detector.add_subparsers(dest="step", metavar="STEP", required=True)
    p = steps.add_parser(
        "validate",
        help="read box labels (Supervisely, COCO, YOLO, VOC) and species folders, check every image and box, split",
        description="Read box labels (a Supervisely project, COCO JSON, YOLO data.yaml as Ultralytics and "
        "Roboflow write it, or Pascal VOC XML) and/or a folder-per-species image set (labels only), "
        "check every image and box, report every problem at once (exit 2) or write manifest.jsonl, "
        "dataset.json and validation_report.json. Box-labelled images are split (seeded, grouped by the "
        "image tag 'group' when present, Roboflow's copies of one photo together); species images are "
        "marked 'unlabelled'. "
        "The same in three steps, so that checking the images can be spread over tasks: --list-only; then "
        "--check on each chunk of candidates.jsonl (cut it anywhere between lines); then --gather with every "
        "checked.jsonl. Give the steps the same settings; the result is byte for byte that of one run. "
        "--extra-labels EXPORT (with --gather, or in one run): the labelled images of an active-learning export "
        "('insectml select', boxes corrected in Supervisely) join the train split, each row with its provenance.",
    )
    g = p.add_argument_group("in steps (scatter and gather)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--list-only",
        action="store_true",
        help="step 1: read the labels without opening an image; write candidates.jsonl and listing.json into --out",
    )
    mode.add_argument(
        "--check",
        type=existing_file,
        metavar="CANDIDATES",
        help="step 2: check the images and boxes listed in CANDIDATES (candidates.jsonl or a chunk of its lines) "
        "below --root; write checked.jsonl into --out",
    )
    mode.add_argument(
        "--gather",
        type=existing_file,
        nargs="+",
        metavar="CHECKED",
        help="step 3: join the checked.jsonl of every chunk (in any order) with --listing; write manifest.jsonl, "
        "dataset.json and validation_report.json into --out",
    )
    g.add_argument("--listing", type=existing_file, help="with --gather: listing.json from --list-only")
    p.add_argument(
        "--root", type=existing_dir, help="folder the manifest's paths are relative to (required unless --gather)"
    )
    p.add_argument(
        "--labels",
        type=_existing_path,
        help="box labels: a Supervisely project, a COCO JSON or its folder, a YOLO data.yaml or its folder, "
        "or a folder of Pascal VOC XML; or a folder with one such export directly below it",
    )
    # the old flag: --labels DIR --format supervisely
    p.add_argument("--supervisely", type=_existing_path, help=argparse.SUPPRESS)
    p.add_argument(
        "--species",
        type=Path,
        help="<species>/<image> folders, image-level labels only (missing: a warning, no species images)",
    )
    p.add_argument(
        "--classes",
        default="",
        help="comma-separated classes to accept (default: the ones the labels declare); names with a comma: --class",
    )
    p.add_argument(
        "--class",
        dest="class_names",
        action="append",
        default=[],
        metavar="NAME",
        help="one class to accept, written as it is (repeat it)",
    )
    add_step_params(p, P, "validate", skip=("detector_extra_labels",))
    add_param(p, P, "detector_extra_labels", type=existing_dir, metavar="EXPORT")
    add_param(p, GENERAL, "duplicates")
    add_param(p, GENERAL, "seed")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    p = steps.add_parser(
        "train",
        help="train a torchvision detector (weights=None; --weights FILE, folder or imported NAME to start from)",
        description="Train on the manifest's train split with the shared loop; early stopping on val mAP@.5. "
        "Writes weights.pt, config.json, labels.json, lineage.json, train_metrics.json, history.jsonl, "
        "checkpoints/last.pt.",
    )
    add_manifest_args(p)
    for name in ("detector_model", "detector_weights", "detector_image_size"):
        add_param(p, P, name)
    add_loop_args(p, P, GENERAL)
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "evaluate",
        help="COCO mAP with 95%% intervals, per-class AP and PR curves, confusion at IoU 0.5, explanations, report",
        description="Score a detector on one split: metrics.json (mAP and per-class AP with image-bootstrap 95% "
        "intervals), pr_curves.png, ap_per_class.png, confusion_matrix.png, predictions.png, training_curves.png "
        "(from the model folder's history.jsonl), explanations_classes.png (Grad-CAM of correct and wrong detections "
        "per class; explanations_pairs.png for the most-confused classes, when any are) and report.html. With --compare-with, the report sets another detector's "
        "evaluation (the generic detector's, for the target-species one) beside this one.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    add_manifest_args(p)
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument(
        "--name",
        help="what the report calls this evaluation, e.g. generic or target (default: the model folder's name)",
    )
    p.add_argument(
        "--compare-with",
        type=existing_dir,
        metavar="EVALDIR",
        help="the output folder of another 'detector evaluate' (its metrics.json), shown beside this one",
    )
    p.add_argument(
        "--explain-per-class",
        type=int,
        metavar="N",
        help="correct and wrong detections explained (Grad-CAM) per class in the report; 0: none (default: 2)",
    )
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser(
        "explain",
        help="Grad-CAM map of every detected box in image files",
        description="Run a detector over image files and explain each box scoring at least --score (the 12 most "
        "confident per image) with Grad-CAM (captum LayerGradCam on the backbone's last feature layer; target: "
        "the box's score). Writes OUT/<image stem>_explain.png (one panel per box: the image, the box, its map) and "
        "OUT/explanations.json (per image: label, score, box and the share of the map inside the box). "
        "Existing outputs are replaced only with --force.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train' (holding weights.pt)")
    p.add_argument("--out", type=Path, default=Path("explanations"), help="output folder (default: explanations)")
    p.add_argument(
        "--score",
        type=float,
        help="lowest score of a box explained, between 0 and 1 (default: 0.5, the evaluation's confusion threshold)",
    )
    p.add_argument("--force", action="store_true", help="replace existing outputs in --out")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG/PNG files")
    p.set_defaults(func=_explain)

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
    add_step_params(p, P, "pseudolabel")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_pseudo_label)

    p = steps.add_parser(
        "export",
        help="TorchScript (and ONNX) export, checked against the model",
        description="Script the detector with TorchScript (and export ONNX with --export onnx) into "
        "OUT/NAME.torchscript.pt (NAME.onnx) and check each export against the eager model on a sample image "
        "(NAME.export.json). 'insectml package detector --torchscript OUT/NAME.torchscript.pt' makes the .mar.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--name", default="detector", help="file name stem of the exports (default: detector)")
    add_param(p, P, "detector_export")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_export)

    p = steps.add_parser(
        "predict",
        help="boxes for image files with a model folder (the served code path)",
        description="Print one JSON line per image: {file, detections: [{label, score, box}]}.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    add_param(p, P, "detector_score_threshold", help="lowest score printed (default: 0.3)")
    p.add_argument("images", nargs="+", type=Path, help="JPEG/PNG files")
    p.set_defaults(func=_predict)


def _validate(args: argparse.Namespace) -> int:
    from insectml.detector import validate as v
    from insectml.detector.supervisely_io import class_name
    from insectml.errors import ConfigError

    settings = step_settings(args, P, "validate")
    if args.supervisely is not None:
        args.labels, settings["format"] = args.supervisely, "supervisely"
    if args.root is None and not args.gather:
        raise ConfigError("--root is required (unless --gather): the folder the manifest's paths are relative to")
    if (args.check or args.list_only) and args.extra_labels is not None:
        raise ConfigError("--extra-labels is merged by --gather (or a run in one step), not by --list-only or --check")
    classes = (class_name(c) for c in (*args.classes.split(","), *args.class_names))
    cfg = v.DetectorValidateConfig(
        # the gather opens no image: root is not read
        root=args.root or args.out,
        out_dir=args.out,
        labels=args.labels,
        species=args.species,
        classes=tuple(dict.fromkeys(c for c in classes if c)),
        seed=args.seed,
        duplicates=args.duplicates,
        **settings,
    )
    if args.check:
        checked, problems = v.check_candidates(args.check, cfg, args.out / v.CHECKED)
        print(json.dumps({"checked": checked, "problems": problems}))
        return 0
    if args.gather:
        if args.listing is None:
            raise ConfigError("--gather needs --listing, the listing.json from --list-only")
        dataset = v.gather(args.listing, args.gather, cfg)
    else:
        if args.labels is None and args.species is None:
            raise ConfigError("give --labels, --species or both")
        if args.list_only:
            listing = v.list_candidates(cfg)
            if not listing["candidates"]:
                v.gather(args.out / v.LISTING, [], cfg)  # nothing left to check: report the problems now
            summary = {k: listing[k] for k in ("images", "candidates")} | {"problems": len(listing["problems"])}
            print(json.dumps(summary))
            return 0
        dataset = v.validate_detection(cfg)
    print(json.dumps({k: dataset[k] for k in ("n_images", "n_boxes", "images_per_split")}))
    return 0


def _existing_path(value: str) -> Path:
    """argparse type: a file or folder that exists."""
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value}: not found")
    return path


def _train(args: argparse.Namespace) -> int:
    from insectml.cliargs import loop_settings
    from insectml.detector.train import DetectorTrainConfig, train_detector
    from insectml.training.loop import LoopConfig

    result = train_detector(
        DetectorTrainConfig(
            manifest=args.manifest,
            dataset=args.dataset,
            root=args.root,
            out_dir=args.out,
            model=args.model,
            weights=args.weights,
            image_size=args.image_size,
            loop=LoopConfig(**loop_settings(args)),
        )
    )
    print(json.dumps({k: v for k, v in result.items() if k.startswith("best")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from insectml.detector.evaluate import evaluate_detector

    metrics = evaluate_detector(
        args.model,
        args.manifest,
        args.dataset,
        args.root,
        args.out,
        args.split,
        name=args.name,
        compare_with=args.compare_with,
        explain_per_class=args.explain_per_class,
    )
    print(json.dumps({k: metrics[k] for k in ("split", "n_images", "map", "map_50")}))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from insectml.detector.explain import explain_files

    given = {} if args.score is None else {"score": args.score}  # the default is explain_files'
    result = explain_files(args.model, args.images, args.out, force=args.force, **given)
    boxes = sum(len(image["detections"]) for image in result["images"])
    print(json.dumps({"images": len(result["images"]), "boxes": boxes, "out": str(args.out)}))
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
            **step_settings(args, P, "pseudolabel"),
        )
    )
    print(json.dumps({k: report[k] for k in ("species_images", "gained_boxes", "dropped")}))
    return 0


def _export(args: argparse.Namespace) -> int:
    from insectml.detector.export import export_detector

    formats = tuple(f.strip() for f in args.export.split(",") if f.strip())
    print(json.dumps(export_detector(args.model, args.out, args.name, ("torchscript", *formats))))
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
