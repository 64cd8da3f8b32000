"""``insectml fewshot …``: validate, train, cv, evaluate, enrol, predict, explain."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import (
    LOOP_PARAMS,
    add_loop_args,
    add_manifest_args,
    add_param,
    add_step_params,
    existing_dir,
    existing_file,
    step_settings,
)
from insectml.fewshot.family import FAMILY
from insectml.runparams import GENERAL

P = FAMILY.group


def register(sub: argparse._SubParsersAction) -> None:
    fewshot = sub.add_parser(FAMILY.name, help=FAMILY.help)
    steps = fewshot.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every image, split classes (base / novel) and novel images (support / query)",
        description="Read <class>/<image> folders (--images) or a CSV with path,label (--labels), check every "
        "image, report every problem at once (exit 2), or write manifest.jsonl, dataset.json and "
        "validation_report.json. Classes are split seeded into base (train) and novel (val, test) classes; "
        "novel classes' images into support and query. "
        "The same in three steps, so that checking the images can be spread over tasks: --list-only; then "
        "--check on each chunk of candidates.jsonl (cut it anywhere between lines); then --gather with every "
        "checked.jsonl. Give the steps the same settings; the result is byte for byte that of one run. "
        "--extra-labels EXPORT (with --gather, or in one run): the labelled items of an active-learning export "
        "('insectml select', labelled in Supervisely) join the training classes (a new class too), each row with "
        "its provenance.",
    )
    g = p.add_argument_group("in steps (scatter and gather)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--list-only",
        action="store_true",
        help="step 1: read the folders or the CSV without opening an image; write candidates.jsonl and "
        "listing.json into --out",
    )
    mode.add_argument(
        "--check",
        type=existing_file,
        metavar="CANDIDATES",
        help="step 2: check the images listed in CANDIDATES (candidates.jsonl or a chunk of its lines) below "
        "--root; write checked.jsonl into --out",
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
    p.add_argument("--images", type=existing_dir, help="<class>/<image> folders")
    p.add_argument("--labels", type=Path, help="CSV with columns path,label (paths relative to --root)")
    add_step_params(p, P, "validate", skip=("fewshot_extra_labels",))
    add_param(p, P, "fewshot_extra_labels", type=existing_dir, metavar="EXPORT")
    add_param(p, GENERAL, "duplicates")
    add_param(p, GENERAL, "seed")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    p = steps.add_parser(
        "train",
        help="train the embedder on base classes (metric learning); early stopping on novel episodes",
        description="An image backbone (timm, pretrained=False; or --weights: imported timm or open_clip weights "
        "such as BioCLIP, or a local state dict) + projection head with L2-normalised output, trained with the shared "
        "loop on class-balanced batches; --mode frozen trains nothing (the backbone's normalised features are the "
        "embedding), --mode probe only the head. Without --folds: on the "
        "base classes, early stopping on 5-way 1-shot episode accuracy over the novel validation classes, and "
        "the temperature of the probabilities (softmax of cosine / T) fitted on their nearest-prototype "
        "classification (config.json). With --folds (a plan of classes, 'insectml cv plan --unit class') and "
        "--fold I: --epochs on every non-test class outside fold I, then fold I's classes scored "
        "(heldout.npz: episodes of the model and the baselines, prototype cosines, open-set scores). With "
        "--folds alone: the refit on every non-test class (calibrated by 'fewshot cv').",
    )
    add_manifest_args(p)
    add_step_params(p, P, "train", skip=tuple(f"fewshot_{n}" for n in LOOP_PARAMS))
    add_loop_args(p, P, GENERAL)
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.add_argument(
        "--folds", type=existing_file, help="folds.json of 'insectml cv plan --unit class': cross-validation"
    )
    p.add_argument(
        "--fold",
        type=int,
        help="with --folds: the fold of classes to hold out (0..K-1); without it, the refit on every non-test class",
    )
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "cv",
        help="join the folds: CV episode accuracy with t-intervals and baselines, the refit calibrated on them",
        description="Read the held-out scores (heldout.npz) of every fold task and the refit; write --out: a "
        "copy of the refit model folder whose temperature and open-set threshold are fitted on the held-out "
        "folds, with cv.json (per fold and over folds, mean ± 95%% t-interval: the 5-way 1-shot and 5-shot "
        "episode accuracy of the model and the two baselines, the paired difference to the better baseline) "
        "and reliability_cv.png.",
    )
    p.add_argument("--refit", type=existing_dir, required=True, help="the refit model folder ('train --folds')")
    p.add_argument(
        "--folds-models", type=existing_dir, nargs="+", required=True, help="the fold model folders ('train --fold')"
    )
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_cv)

    p = steps.add_parser(
        "evaluate",
        help="novel-class top-1/top-5, episodes with 95%% CI, open-set AUROC, clusters, 2-D map, gallery",
        description="Score the embedder on the novel test classes and write metrics.json, report.html, "
        "embedding_map.png, clusters_*.csv (cluster → suggested class), and the serving gallery "
        "(every class; open-set threshold calibrated on the validation classes) into OUT/gallery.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    add_manifest_args(p)
    add_step_params(p, P, "evaluate")
    add_param(p, GENERAL, "seed")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.add_argument(
        "--sweep", type=existing_file, help="sweep.json of a sweep this model won: its table goes into the report"
    )
    p.set_defaults(func=_evaluate)

    p = steps.add_parser(
        "enrol",
        help="add a class to a gallery from a few images, no retraining",
        description="Embed the images with the model and add (or replace) class NAME in the gallery; "
        "writes the new gallery to --out (default: in place). --out must be a new or empty folder or a gallery "
        "folder (gallery.npz and gallery.json only), which is replaced whole; anything else is refused.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder (gallery.npz + gallery.json)")
    p.add_argument("--name", required=True, help="class name to add")
    p.add_argument(
        "--out", type=Path, help="write the new gallery here: a new folder or a gallery (default: update --gallery)"
    )
    p.add_argument("images", nargs="+", type=Path, help="images of the new class")
    p.set_defaults(func=_enrol)

    p = steps.add_parser(
        "predict",
        help="top-k classes (or unknown) for image files",
        description="One JSON line per image: label (or unknown below the gallery's threshold), the cosine score, "
        "the threshold, the model's temperature and the top-k classes, each with its cosine score and, when the "
        "model has a temperature, its calibrated probability (softmax of cosine / T over every gallery class).",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder")
    add_param(p, P, "fewshot_top_k", help="classes per answer (default: 5)")
    p.add_argument("images", nargs="+", type=Path, help="JPEG/PNG files")
    p.set_defaults(func=_predict)

    p = steps.add_parser(
        "explain",
        help="what makes an image similar to its nearest class: a Grad-CAM map per image",
        description="For each image: its nearest class in the gallery, the cosine similarity to that class's "
        "prototype, the served label (unknown below the gallery's threshold) and a map of what raised that "
        "similarity (Grad-CAM on the backbone's last spatial feature layer, with the cosine as target) drawn over "
        "the image: <stem>_explain.png in --out, all listed in explanations.json; one JSON line per image on "
        "stdout. A backbone without a spatial layer (a vision transformer) cannot be explained this way. "
        "Existing outputs are kept unless --force.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder (e.g. EVALUATION/gallery)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="JPEG/PNG files")
    p.set_defaults(func=_explain)


def _validate(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError
    from insectml.fewshot import validate as v

    if args.root is None and not args.gather:
        raise ConfigError("--root is required (unless --gather): the folder the manifest's paths are relative to")
    if (args.check or args.list_only) and args.extra_labels is not None:
        raise ConfigError("--extra-labels is merged by --gather (or a run in one step), not by --list-only or --check")
    cfg = v.FewshotValidateConfig(
        # the gather opens no image: root is not read
        root=args.root or args.out,
        out_dir=args.out,
        images=args.images,
        labels=args.labels,
        seed=args.seed,
        duplicates=args.duplicates,
        **step_settings(args, P, "validate"),
    )
    if args.check:
        checked, problems = v.check_candidates(args.check, cfg, args.out / v.CHECKED)
        print(json.dumps({"checked": checked, "problems": problems}))
        return 0
    if args.gather:
        if args.listing is None:
            raise ConfigError("--gather needs --listing, the listing.json from --list-only")
        dataset = v.gather(args.listing, args.gather, cfg)
    elif args.list_only:
        listing = v.list_candidates(cfg)
        if not listing["candidates"]:
            v.gather(args.out / v.LISTING, [], cfg)  # nothing left to check: report the problems now
        print(json.dumps({"candidates": listing["candidates"], "problems": len(listing["problems"])}))
        return 0
    else:
        dataset = v.validate_fewshot(cfg)
    print(json.dumps({k: dataset[k] for k in ("n_images", "classes_per_split", "images_per_split")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from insectml.cliargs import loop_settings
    from insectml.fewshot.train import FewshotTrainConfig, train_fewshot
    from insectml.training.loop import LoopConfig
    from insectml.weights.store import resolve

    result = train_fewshot(
        FewshotTrainConfig(
            manifest=args.manifest,
            dataset=args.dataset,
            root=args.root,
            out_dir=args.out,
            backbone=args.backbone,
            dim=args.dim,
            image_size=args.image_size,
            weights=resolve(args.weights) if args.weights else None,
            mode=args.mode,
            backbone_lr_scale=args.backbone_lr_scale,
            loss=args.loss,
            miner=args.miner,
            shots=args.shots,
            classes_per_batch=args.classes_per_batch,
            per_class=args.per_class,
            val_episodes=args.val_episodes,
            folds=args.folds,
            fold=args.fold,
            loop=LoopConfig(**loop_settings(args)),
        )
    )
    print(json.dumps({k: v for k, v in result.items() if k.startswith("best") or k == "epochs"}))
    return 0


def _cv(args: argparse.Namespace) -> int:
    from insectml.fewshot.crossval import cross_validate

    summary = cross_validate(args.refit, args.folds_models, args.out)
    one = summary["episodes_5way_1shot"]
    print(
        json.dumps(
            {
                "k": summary["k"],
                "5way1shot": one["model"] if one else None,
                "temperature": summary["temperature"],
                "threshold": summary["threshold"],
            }
        )
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from insectml.fewshot.evaluate import build_gallery, evaluate_fewshot

    metrics = evaluate_fewshot(
        args.model, args.manifest, args.dataset, args.root, args.out, args.episodes, args.seed, args.map, args.sweep
    )
    build_gallery(args.model, args.manifest, args.root, args.out / "gallery", metrics["open_set"]["threshold"])
    one = metrics["episodes_5way_1shot"]
    print(
        json.dumps(
            {
                "top1": metrics["top1"],
                "top5": metrics["top5"],
                "5way1shot": one["mean"],
                "auroc": metrics["open_set"]["auroc"],
            }
        )
    )
    return 0


def _read_images(paths: list[Path]) -> list:
    from insectml.data.images import open_image
    from insectml.errors import InputFileError

    images = []
    for path in paths:
        if not path.is_file():
            raise InputFileError(path, "image not found")
        images.append(open_image(path.read_bytes(), name=str(path)))
    return images


def _enrol(args: argparse.Namespace) -> int:
    from insectml.fewshot.gallery import check_replaceable
    from insectml.fewshot.predict import FewshotPredictor

    out = args.out or args.gallery
    check_replaceable(out)  # before any work: --out may name a folder that is not ours
    predictor = FewshotPredictor(args.model, args.gallery)
    images = _read_images(args.images)
    action = predictor.gallery.enrol(args.name, predictor.embed_images(images))
    predictor.gallery.save(out)
    print(
        json.dumps(
            {
                "class": args.name,
                "action": action,
                "images": len(images),
                "classes": len(predictor.gallery.classes),
                "gallery": str(out),
            }
        )
    )
    return 0


def _predict(args: argparse.Namespace) -> int:
    from insectml.fewshot.predict import FewshotPredictor

    predictor = FewshotPredictor(args.model, args.gallery)
    for path, answer in zip(args.images, predictor.predict(_read_images(args.images), args.top_k), strict=True):
        print(json.dumps({"file": str(path), **answer}))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from insectml.fewshot.explain import explain_images

    for result in explain_images(args.model, args.gallery, args.images, args.out, force=args.force):
        print(json.dumps(result))
    return 0
