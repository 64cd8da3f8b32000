"""``insectml wingbeat …``: the wingbeat pipeline steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import add_resume_args, existing_dir, existing_file


def register(sub: argparse._SubParsersAction) -> None:
    wingbeat = sub.add_parser("wingbeat", help="wingbeat recordings → species")
    steps = wingbeat.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every recording and label, then split (seeded, stratified, grouped)",
        description="Check the labels CSV and every recording it lists; report every problem at once "
        "(exit 2) or write manifest.jsonl, dataset.json and validation_report.json.",
    )
    p.add_argument(
        "--layout",
        choices=["csv", "folders"],
        default="csv",
        help="csv: a labels CSV; folders: <species>/<...>/<file>.wav below --data (default: csv)",
    )
    p.add_argument("--labels", type=Path, help="CSV with columns path, species and the group column (csv layout)")
    p.add_argument(
        "--data",
        type=existing_dir,
        help="folder the CSV's paths are relative to (default: the CSV's "
        "folder); for the folders layout, the root of the species folders",
    )
    p.add_argument(
        "--classes",
        type=Path,
        help="file with one species per line; others are 'unknown' "
        "(default: classes.txt in the data folder if present, else every species in the CSV)",
    )
    p.add_argument(
        "--group-by",
        default="event",
        help="what groups recordings for the split: a CSV column, or "
        "path:N, the N-th path component below the data folder (default: event)",
    )
    p.add_argument("--sample-rate", type=int, default=8000, help="required sample rate in Hz (default: 8000)")
    p.add_argument(
        "--resample", action="store_true", help="resample other rates to --sample-rate instead of refusing them"
    )
    p.add_argument("--val-fraction", type=float, default=0.15, help="share of groups for validation (default: 0.15)")
    p.add_argument("--test-fraction", type=float, default=0.2, help="share of groups for test (default: 0.2)")
    p.add_argument("--max-per-class", type=int, default=0, help="keep at most N recordings per class, seeded (0 = all)")
    p.add_argument("--seed", type=int, default=42, help="split seed (default: 42)")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    p = steps.add_parser(
        "features",
        help="log-mel spectrograms + engineered spectral features",
        description="Compute the log-mel spectrogram and engineered features (f0, harmonic ratios, "
        "spectral centroid/bandwidth/flatness, MFCC statistics) of every manifest row.",
    )
    p.add_argument("--manifest", type=existing_file, required=True, help="manifest.jsonl from 'validate'")
    p.add_argument("--dataset", type=existing_file, required=True, help="dataset.json from 'validate'")
    p.add_argument("--data", type=existing_dir, required=True, help="folder the manifest's paths are relative to")
    p.add_argument("--n-mels", type=int, default=64, help="mel bands (default: 64)")
    p.add_argument("--n-fft", type=int, default=256, help="FFT size in samples (default: 256)")
    p.add_argument("--hop-length", type=int, default=64, help="hop in samples (default: 64)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=1.5,
        help="spectrograms are centre-cropped or zero-padded to this length (default: 1.5)",
    )
    p.add_argument("--out", type=Path, default=Path("features.npz"), help="output file (default: features.npz)")
    p.set_defaults(func=_features)

    p = steps.add_parser(
        "train",
        help="train one model: features (classical), cnn, gru or transformer",
        description="features: a scaler + classifier on engineered features (model.joblib). cnn/gru/transformer: "
        "a PyTorch model on log-mel spectrograms, trained by the shared loop (weights.pt, history.jsonl, "
        "checkpoints/last.pt). Both write config.json, labels.json, lineage.json and train_metrics.json.",
    )
    from insectml.wingbeat.models import CLASSICAL_MODELS

    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument(
        "--model",
        default="features",
        choices=["features", "cnn", "gru", "transformer"],
        help="model family member (default: features)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (default: 1)")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    g = p.add_argument_group("features model")
    g.add_argument(
        "--classifier",
        default="random_forest",
        choices=sorted(CLASSICAL_MODELS),
        help="classifier on engineered features (default: random_forest)",
    )
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="classifier hyperparameter, repeatable (e.g. --set n_estimators=500)",
    )
    g = p.add_argument_group("neural models (cnn, gru, transformer)")
    g.add_argument("--epochs", type=int, default=30, help="most epochs (default: 30)")
    g.add_argument("--batch-size", type=int, default=32, help="batch size (default: 32)")
    g.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (default: 0.002)")
    g.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: 0.01)")
    g.add_argument(
        "--warmup-epochs", type=float, default=1.0, help="linear warm-up before the cosine decay (default: 1)"
    )
    g.add_argument(
        "--patience", type=int, default=8, help="stop after N epochs without a better val macro-F1 (default: 8)"
    )
    g.add_argument(
        "--backbone", default="mobilenetv3_small_050", help="timm backbone of the cnn (default: mobilenetv3_small_050)"
    )
    g.add_argument("--weights", type=Path, help="local state dict to start from (no downloads; default: random init)")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="turn off spectrogram augmentation")
    add_resume_args(g)
    g.add_argument("--device", default="auto", help="cpu, cuda or auto (default: auto)")
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "compare",
        help="compare trained models; pick the best by validation macro-F1",
        description="Read each model folder and its evaluation folder; write comparison.csv, comparison.json, "
        "report.html (table, confusion matrices side by side, training curves) and best.txt.",
    )
    p.add_argument("--models", type=existing_dir, nargs="+", required=True, help="model folders from 'train'")
    p.add_argument("--evaluations", type=existing_dir, nargs="+", required=True, help="folders from 'evaluate'")
    p.add_argument("--out", type=Path, default=Path("comparison"), help="output folder (default: comparison)")
    p.add_argument(
        "--sweep",
        type=existing_file,
        help="sweep.json of a sweep (from 'insectml sweep select'): its table goes into the report",
    )
    p.set_defaults(func=_compare)

    p = steps.add_parser(
        "evaluate",
        help="metrics, confusion matrix and HTML report on a split",
        description="Score a model directory on one split: metrics.json, confusion_matrix.png, report.html.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser(
        "package",
        help="build a Multi Model Server archive (.mar)",
        description="Pack the model folder, the insectml library and the wingbeat handler into NAME.mar.",
    )
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--name", default="wingbeat", help="model name in the server's URL (default: wingbeat)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for NAME.mar (default: .)")
    p.set_defaults(func=_package)

    p = steps.add_parser("predict", help="predict species for WAV files with a model folder")
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("wavs", nargs="+", type=Path, help="WAV recordings")
    p.set_defaults(func=_predict)


def _validate(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError
    from insectml.wingbeat.validate import ValidateConfig, validate_and_split

    if args.layout == "csv" and args.labels is None:
        raise ConfigError("--labels is required for the csv layout")
    if args.layout == "folders" and args.data is None:
        raise ConfigError("--data is required for the folders layout")
    labels = args.labels if args.layout == "csv" else None
    data_dir = args.data or args.labels.parent
    classes = args.classes
    if classes is None and (data_dir / "classes.txt").is_file():
        classes = data_dir / "classes.txt"
    dataset = validate_and_split(
        ValidateConfig(
            labels=labels,
            data_dir=data_dir,
            resample=args.resample,
            out_dir=args.out,
            classes=classes,
            group_by=args.group_by,
            sample_rate=args.sample_rate,
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            seed=args.seed,
            max_per_class=args.max_per_class,
        )
    )
    print(json.dumps({"n_samples": dataset["n_samples"], "counts": dataset["counts"]}))
    return 0


def _features(args: argparse.Namespace) -> int:
    from insectml.data.manifest import read_json, read_manifest
    from insectml.wingbeat.features import FrontendConfig, extract

    dataset = read_json(args.dataset, "dataset description")
    cfg = FrontendConfig(
        sample_rate=int(dataset.get("split", {}).get("sample_rate", 8000)),
        resample=bool(dataset.get("split", {}).get("resample", False)),
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        max_seconds=args.max_seconds,
    )
    extract(read_manifest(args.manifest), args.data, cfg, args.out, dataset)
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.model == "features":
        from insectml.wingbeat.models import parse_overrides
        from insectml.wingbeat.train import TrainConfig, train

        result = train(
            TrainConfig(
                features=args.features,
                out_dir=args.out,
                classifier=args.classifier,
                overrides=parse_overrides(args.overrides),
                seed=args.seed,
                threads=args.threads,
            )
        )
    else:
        from insectml.wingbeat.train_net import NetConfig, train_net

        result = train_net(
            NetConfig(
                features=args.features,
                out_dir=args.out,
                model=args.model,
                backbone=args.backbone,
                weights=args.weights,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                warmup_epochs=args.warmup_epochs,
                patience=args.patience,
                seed=args.seed,
                threads=args.threads,
                resume=args.resume,
                checkpoint_dir=args.checkpoint_dir,
                device=args.device,
                augment=args.augment,
            )
        )
    print(json.dumps({"val_accuracy": result["val"]["accuracy"], "val_macro_f1": result["val"]["macro_f1"]}))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from insectml.wingbeat.compare import compare

    print(compare(args.models, args.evaluations, args.out, sweep=args.sweep))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from insectml.wingbeat.evaluate import evaluate

    metrics = evaluate(args.model, args.features, args.out, args.split)
    print(json.dumps({k: metrics[k] for k in ("split", "n", "accuracy", "macro_f1")}))
    return 0


def _package(args: argparse.Namespace) -> int:
    from insectml.serving.package import build_mar

    print(build_mar(args.model, args.name, "insectml.serving.wingbeat_handler", args.out))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from insectml.wingbeat.audio import decode_wav
    from insectml.wingbeat.predict import load_predictor

    predictor = load_predictor(args.model)
    for wav in args.wavs:
        probs = predictor.predict_audio(decode_wav(wav, predictor.frontend.sample_rate))
        print(json.dumps({"file": str(wav), "probabilities": probs}))
    return 0
