"""``insectml fewshot …``: validate, train, evaluate, gallery, enrol, predict, package."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import add_manifest_args, add_resume_args, existing_dir, existing_file


def register(sub: argparse._SubParsersAction) -> None:
    from insectml.fewshot.names import LOSSES, MINERS

    fewshot = sub.add_parser("fewshot", help="few labels, many similar classes → embedding, prototypes, clusters")
    steps = fewshot.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every image, split classes (base / novel) and novel images (support / query)",
        description="Read <class>/<image> folders (--images) or a CSV with path,label (--labels), check every "
        "image, report every problem at once (exit 2), or write manifest.jsonl, dataset.json and "
        "validation_report.json. Classes are split seeded into base (train) and novel (val, test) classes; "
        "novel classes' images into support and query.",
    )
    p.add_argument("--root", type=existing_dir, required=True, help="folder the manifest's paths are relative to")
    p.add_argument("--images", type=existing_dir, help="<class>/<image> folders")
    p.add_argument("--labels", type=Path, help="CSV with columns path,label (paths relative to --root)")
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of classes for validation (default: 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="share of classes for test (default: 0.25)")
    p.add_argument("--support", type=int, default=2, help="support images per novel class, at most n-1 (default: 2)")
    p.add_argument("--max-classes", type=int, default=0, help="keep at most N classes, seeded (0 = all)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    p = steps.add_parser(
        "train",
        help="train the embedder on base classes (metric learning); early stopping on novel episodes",
        description="timm backbone (pretrained=False; --weights PATH for local weights) + projection head with "
        "L2-normalised output, trained with the shared loop on class-balanced batches. Early stopping on "
        "5-way 1-shot episode accuracy over the novel validation classes.",
    )
    add_manifest_args(p)
    p.add_argument("--backbone", default="resnet10t", help="timm model name (default: resnet10t)")
    p.add_argument("--weights", type=Path, help="local state dict (backbone or whole embedder); nothing is downloaded")
    p.add_argument("--dim", type=int, default=128, help="embedding size (default: 128)")
    p.add_argument("--image-size", type=int, default=64, help="input side in pixels (default: 64)")
    p.add_argument("--loss", choices=LOSSES, default="proto", help="metric-learning loss (default: proto)")
    p.add_argument("--miner", choices=MINERS, default="none", help="pair miner for supcon/arcface/cosface")
    p.add_argument("--shots", type=int, default=1, help="proto: support images per class in an episode (default: 1)")
    p.add_argument("--classes-per-batch", type=int, default=16, help="classes per batch/episode (default: 16)")
    p.add_argument("--per-class", type=int, default=3, help="images per class in a batch (default: 3)")
    p.add_argument("--epochs", type=int, default=40, help="most epochs (default: 40)")
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default: 0.001)")
    p.add_argument(
        "--patience", type=int, default=10, help="epochs without better val episode accuracy before stopping"
    )
    p.add_argument("--val-episodes", type=int, default=300, help="validation episodes per epoch (default: 300)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    add_resume_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "evaluate",
        help="novel-class top-1/top-5, episodes with 95%% CI, open-set AUROC, clusters, 2-D map, gallery",
        description="Score the embedder on the novel test classes and write metrics.json, report.html, "
        "embedding_map.png, clusters_*.csv (cluster → suggested class), and the serving gallery "
        "(every class; open-set threshold calibrated on the validation classes) into OUT/gallery.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    add_manifest_args(p)
    p.add_argument("--episodes", type=int, default=600, help="episodes per N-way K-shot setting (default: 600)")
    p.add_argument("--map", choices=["tsne", "umap"], default="tsne", help="2-D embedding map method (default: tsne)")
    p.add_argument("--seed", type=int, default=42, help="episode and open-set seed (default: 42)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.add_argument(
        "--sweep", type=existing_file, help="sweep.json of a sweep this model won: its table goes into the report"
    )
    p.set_defaults(func=_evaluate)

    p = steps.add_parser(
        "enrol",
        help="add a class to a gallery from a few images, no retraining",
        description="Embed the images with the model and add (or replace) class NAME in the gallery; "
        "writes the new gallery to --out (default: in place).",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder (gallery.npz + gallery.json)")
    p.add_argument("--name", required=True, help="class name to add")
    p.add_argument("--out", type=Path, help="write the new gallery here (default: update --gallery)")
    p.add_argument("images", nargs="+", type=Path, help="images of the new class")
    p.set_defaults(func=_enrol)

    p = steps.add_parser("predict", help="top-k classes (or unknown) for image files")
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder")
    p.add_argument("--top-k", type=int, default=5, help="classes per answer (default: 5)")
    p.add_argument("images", nargs="+", type=Path, help="JPEG/PNG files")
    p.set_defaults(func=_predict)

    p = steps.add_parser(
        "package",
        help="a .mar holding the embedder and a gallery",
        description="Pack the model folder and GALLERY into OUT/NAME.mar; POST an image → top-k classes or unknown.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--gallery", type=existing_dir, required=True, help="gallery folder")
    p.add_argument("--name", default="fewshot", help="archive and model name (default: fewshot)")
    p.add_argument("--top-k", type=int, default=5, help="classes per served answer (default: 5)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_package)


def _validate(args: argparse.Namespace) -> int:
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot

    dataset = validate_fewshot(
        FewshotValidateConfig(
            root=args.root,
            out_dir=args.out,
            images=args.images,
            labels=args.labels,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            support=args.support,
            max_classes=args.max_classes,
            seed=args.seed,
        )
    )
    print(json.dumps({k: dataset[k] for k in ("n_images", "classes_per_split", "images_per_split")}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from insectml.fewshot.train import FewshotTrainConfig, train_fewshot

    result = train_fewshot(
        FewshotTrainConfig(
            manifest=args.manifest,
            dataset=args.dataset,
            root=args.root,
            out_dir=args.out,
            backbone=args.backbone,
            dim=args.dim,
            image_size=args.image_size,
            weights=args.weights,
            loss=args.loss,
            miner=args.miner,
            shots=args.shots,
            epochs=args.epochs,
            classes_per_batch=args.classes_per_batch,
            per_class=args.per_class,
            lr=args.lr,
            patience=args.patience,
            val_episodes=args.val_episodes,
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
    import shutil

    from insectml.fewshot.predict import FewshotPredictor

    predictor = FewshotPredictor(args.model, args.gallery)
    images = _read_images(args.images)
    action = predictor.gallery.enrol(args.name, predictor.embed_images(images))
    out = args.out or args.gallery
    if out != args.gallery and out.exists():
        shutil.rmtree(out)
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


def _package(args: argparse.Namespace) -> int:
    from insectml.fewshot.gallery import Gallery
    from insectml.serving.package import build_mar

    Gallery.load(args.gallery)  # a clear error before packing a broken gallery
    mar = build_mar(
        args.model,
        args.name,
        "insectml.serving.fewshot_handler",
        args.out,
        extra_files={f"gallery/{n}": args.gallery / n for n in ("gallery.npz", "gallery.json")},
        serving={"top_k": args.top_k},
    )
    print(mar)
    return 0
