"""``insectml wingbeat …``: the wingbeat pipeline steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import add_loop_args, add_param, add_step_params, existing_dir, existing_file, step_settings
from insectml.runparams import GENERAL
from insectml.wingbeat.family import FAMILY, MEMBERS

P = FAMILY.group


def register(sub: argparse._SubParsersAction) -> None:
    wingbeat = sub.add_parser(FAMILY.name, help=FAMILY.help)
    steps = wingbeat.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every recording and label, then split (seeded, stratified, grouped)",
        description="Check the labels CSV and every recording it lists; report every problem at once "
        "(exit 2) or write manifest.jsonl, dataset.json and validation_report.json.",
    )
    add_param(p, P, "wingbeat_layout")
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
    add_step_params(p, P, "validate", skip=("wingbeat_layout",))
    add_param(p, GENERAL, "seed")
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
    add_param(p, P, "wingbeat_n_mels")
    p.add_argument("--n-fft", type=int, default=256, help="FFT size in samples (default: 256)")
    p.add_argument("--hop-length", type=int, default=64, help="hop in samples (default: 64)")
    add_param(p, P, "wingbeat_max_seconds")
    p.add_argument("--out", type=Path, default=Path("features.npz"), help="output file (default: features.npz)")
    p.set_defaults(func=_features)

    p = steps.add_parser(
        "train",
        help="train one model: features (classical), cnn, gru or transformer",
        description="features: a scaler + classifier on engineered features (model.joblib). cnn/gru/transformer: "
        "a PyTorch model on log-mel spectrograms, trained by the shared loop (weights.pt, history.jsonl, "
        "checkpoints/last.pt). Both write config.json, labels.json, lineage.json and train_metrics.json.",
    )
    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument("--model", default=MEMBERS[0], choices=MEMBERS, help=f"which model (default: {MEMBERS[0]})")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    g = p.add_argument_group("features model")
    add_param(g, P, "wingbeat_feature_model")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="classifier hyperparameter, repeatable (e.g. --set n_estimators=500)",
    )
    g = p.add_argument_group("neural models (cnn, gru, transformer)")
    add_loop_args(g, P, GENERAL)
    add_param(g, P, "wingbeat_backbone")
    add_param(g, P, "wingbeat_weights")
    g.add_argument("--no-augment", dest="augment", action="store_false", help="turn off spectrogram augmentation")
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
            out_dir=args.out,
            classes=classes,
            seed=args.seed,
            **step_settings(args, P, "validate", skip=("wingbeat_layout",)),
        )
    )
    print(json.dumps({"n_samples": dataset["n_samples"], "counts": dataset["counts"]}))
    return 0


def _features(args: argparse.Namespace) -> int:
    from insectml.data.manifest import read_json, read_manifest
    from insectml.wingbeat.features import extract
    from insectml.wingbeat.frontend import FrontendConfig

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
        from insectml.cliargs import loop_settings
        from insectml.training.loop import LoopConfig
        from insectml.wingbeat.train_net import NetConfig, train_net

        result = train_net(
            NetConfig(
                features=args.features,
                out_dir=args.out,
                model=args.model,
                backbone=args.backbone,
                weights=args.weights,
                loop=LoopConfig(**loop_settings(args)),
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


def _predict(args: argparse.Namespace) -> int:
    from insectml.wingbeat.audio import decode_wav
    from insectml.wingbeat.predict import load_predictor

    predictor = load_predictor(args.model)
    for wav in args.wavs:
        probs = predictor.predict_audio(decode_wav(wav, predictor.frontend.sample_rate))
        print(json.dumps({"file": str(wav), "probabilities": probs}))
    return 0
