"""``insectml wingbeat …``: the wingbeat pipeline steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cli import existing_dir, existing_file


def register(sub: argparse._SubParsersAction) -> None:
    wingbeat = sub.add_parser("wingbeat", help="wingbeat recordings → species")
    steps = wingbeat.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every recording and label, then split (seeded, stratified, grouped)",
        description="Check the labels CSV and every recording it lists; report every problem at once "
        "(exit 2) or write manifest.jsonl, dataset.json and validation_report.json.",
    )
    p.add_argument("--labels", type=Path, required=True, help="CSV with columns path, species and the group column")
    p.add_argument(
        "--data", type=existing_dir, help="folder the CSV's paths are relative to (default: the CSV's folder)"
    )
    p.add_argument(
        "--classes",
        type=Path,
        help="file with one species per line; others are 'unknown' "
        "(default: classes.txt in the data folder if present, else every species in the CSV)",
    )
    p.add_argument(
        "--group-by", default="event", help="CSV column that groups recordings for the split (default: event)"
    )
    p.add_argument("--sample-rate", type=int, default=8000, help="required sample rate in Hz (default: 8000)")
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
        help="fit a classical model on engineered features",
        description="Fit a scaler + classifier on the train split, score val, write a model directory "
        "with model.joblib, config.json, labels.json, lineage.json and train_metrics.json.",
    )
    from insectml.wingbeat.models import CLASSICAL_MODELS

    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument(
        "--model", default="random_forest", choices=sorted(CLASSICAL_MODELS), help="classifier (default: random_forest)"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="classifier hyperparameter, repeatable (e.g. --set n_estimators=500)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (default: 42)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for fitting (default: 1)")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_train)

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
    from insectml.wingbeat.validate import ValidateConfig, validate_and_split

    data_dir = args.data or args.labels.parent
    classes = args.classes
    if classes is None and (data_dir / "classes.txt").is_file():
        classes = data_dir / "classes.txt"
    dataset = validate_and_split(
        ValidateConfig(
            labels=args.labels,
            data_dir=data_dir,
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
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        max_seconds=args.max_seconds,
    )
    extract(read_manifest(args.manifest), args.data, cfg, args.out, dataset)
    return 0


def _train(args: argparse.Namespace) -> int:
    from insectml.wingbeat.models import parse_overrides
    from insectml.wingbeat.train import TrainConfig, train

    result = train(
        TrainConfig(
            features=args.features,
            out_dir=args.out,
            model=args.model,
            overrides=parse_overrides(args.overrides),
            seed=args.seed,
            threads=args.threads,
        )
    )
    print(json.dumps({"val_accuracy": result["val"]["accuracy"], "val_macro_f1": result["val"]["macro_f1"]}))
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
    from insectml.wingbeat.predict import WingbeatPredictor

    predictor = WingbeatPredictor.load(args.model)
    for wav in args.wavs:
        probs = predictor.predict_audio(decode_wav(wav, predictor.frontend.sample_rate))
        print(json.dumps({"file": str(wav), "probabilities": probs}))
    return 0
