"""``insectml wingbeat …``: the wingbeat pipeline steps."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import add_loop_args, add_param, add_step_params, existing_dir, existing_file, step_settings
from insectml.runparams import GENERAL
from insectml.wingbeat.family import BASELINE, FAMILY, MEMBERS

P = FAMILY.group


def register(sub: argparse._SubParsersAction) -> None:
    wingbeat = sub.add_parser(FAMILY.name, help=FAMILY.help)
    steps = wingbeat.add_subparsers(dest="step", metavar="STEP", required=True)

    p = steps.add_parser(
        "validate",
        help="check every recording and label, then split (seeded, stratified, grouped)",
        description="Check the labels CSV and every recording it lists; report every problem at once "
        "(exit 2) or write manifest.jsonl, dataset.json and validation_report.json. "
        "The same in three steps, so that decoding the recordings can be spread over tasks: --list-only; "
        "then --check on each chunk of candidates.jsonl (cut it anywhere between lines); then --gather with "
        "every checked.jsonl. Give the steps the same settings; the result is byte for byte that of one run. "
        "--extra-labels EXPORT (with --gather, or in one run): the labelled items of an active-learning export "
        "('insectml select', labelled in Supervisely) join the train split, each row with its provenance.",
    )
    g = p.add_argument_group("in steps (scatter and gather)")
    mode = g.add_mutually_exclusive_group()
    mode.add_argument(
        "--list-only",
        action="store_true",
        help="step 1: check the rows of the labels without opening a recording; write candidates.jsonl and "
        "listing.json into --out",
    )
    mode.add_argument(
        "--check",
        type=existing_file,
        metavar="CANDIDATES",
        help="step 2: decode the recordings listed in CANDIDATES (candidates.jsonl or a chunk of its lines) below "
        "--data; write checked.jsonl into --out",
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
    add_step_params(p, P, "validate", skip=("wingbeat_layout", "wingbeat_extra_labels"))
    add_param(p, P, "wingbeat_extra_labels", type=existing_dir, metavar="EXPORT")
    add_param(p, GENERAL, "duplicates")
    add_param(p, GENERAL, "seed")
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.set_defaults(func=_validate)

    p = steps.add_parser(
        "features",
        help="log-mel spectrograms + engineered spectral features",
        description="Compute the log-mel spectrogram and engineered features (f0, harmonic ratios, "
        "spectral centroid/bandwidth/flatness, MFCC statistics) of every manifest row. To spread the work over "
        "tasks, run it on chunks of manifest.jsonl (cut anywhere between lines), each to its own --out, then "
        "join them with --gather: the same arrays as one run over the whole manifest.",
    )
    p.add_argument(
        "--manifest",
        type=existing_file,
        required=True,
        help="manifest.jsonl from 'validate', or a chunk of its lines; with --gather, the whole manifest, "
        "whose order the joined rows take",
    )
    p.add_argument("--dataset", type=existing_file, help="dataset.json from 'validate' (required unless --gather)")
    p.add_argument(
        "--data", type=existing_dir, help="folder the manifest's paths are relative to (required unless --gather)"
    )
    p.add_argument(
        "--gather",
        type=existing_file,
        nargs="+",
        metavar="PART",
        help="instead of computing: join the features files of the manifest's chunks (in any order) into --out",
    )
    add_param(p, P, "wingbeat_n_mels")
    p.add_argument("--n-fft", type=int, default=256, help="FFT size in samples (default: 256)")
    p.add_argument("--hop-length", type=int, default=64, help="hop in samples (default: 64)")
    add_param(p, P, "wingbeat_max_seconds")
    p.add_argument("--out", type=Path, default=Path("features.npz"), help="output file (default: features.npz)")
    p.set_defaults(func=_features)

    p = steps.add_parser(
        "train",
        help="train one model: features (classical), cnn, gru, transformer or the baseline",
        description="features: a scaler + classifier on engineered features (model.joblib). baseline: the mean "
        "log-mel power spectrum + logistic regression. cnn/gru/transformer: a PyTorch model on log-mel "
        "spectrograms, trained by the shared loop (weights.pt, history.jsonl, checkpoints/last.pt). All write "
        "config.json (with the temperature that calibrates the probabilities), labels.json, lineage.json and "
        "train_metrics.json. Without --folds: train on the train split, score and calibrate on val. With --folds "
        "and --fold I: train on every non-test recording outside fold I and write its predictions of fold I "
        "(heldout.npz). With --folds alone: the refit on every non-test recording (calibrated by 'cv').",
    )
    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument(
        "--model",
        default=MEMBERS[0],
        choices=(*MEMBERS, BASELINE),
        help=f"which model (default: {MEMBERS[0]})",
    )
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.add_argument("--folds", type=existing_file, help="folds.json from 'insectml cv plan': cross-validation")
    p.add_argument(
        "--fold",
        type=int,
        help="with --folds: the fold to hold out (0..K-1); without it, the refit on all non-test data",
    )
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
    add_param(g, P, "wingbeat_mixup")
    add_param(g, P, "wingbeat_pitch_jitter")
    add_param(g, P, "wingbeat_swa")
    p.set_defaults(func=_train)

    p = steps.add_parser(
        "cv",
        help="join a model's folds: out-of-fold metrics with CIs, its refit calibrated on them",
        description="Read the held-out predictions (heldout.npz) of every fold task of one model and its refit; "
        "write --out: a copy of the refit model folder whose temperature is fitted on the out-of-fold "
        "predictions, with cv.json (out-of-fold macro-F1 and accuracy with grouped bootstrap 95%% CIs, per-fold "
        "macro-F1 with its mean and t-interval, ECE before and after) and reliability_cv.png.",
    )
    p.add_argument("--refit", type=existing_dir, required=True, help="the refit model folder ('train --folds')")
    p.add_argument(
        "--folds-models", type=existing_dir, nargs="+", required=True, help="the fold model folders ('train --fold')"
    )
    add_param(p, GENERAL, "seed")
    p.add_argument("--out", type=Path, default=Path("model"), help="output model folder (default: model)")
    p.set_defaults(func=_cv)

    p = steps.add_parser(
        "compare",
        help="compare trained models; pick the best by CV (or validation) macro-F1; beat the baseline?",
        description="Read each model folder and its evaluation folder; pick the best by out-of-fold macro-F1 "
        "when every model was cross-validated, else by validation macro-F1; write comparison.csv, "
        "comparison.json, report.html (the verdict against the baseline first, the table with 95%% CIs, "
        "confusion matrices side by side, training curves) and best.txt.",
    )
    add_param(p, GENERAL, "seed")
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
        description="Score a model directory on one split: metrics.json (with grouped bootstrap 95%% CIs and "
        "the calibration error before and after the model's temperature), predictions.npz, confusion_matrix.png, "
        "reliability.png, report.html.",
    )
    add_param(p, GENERAL, "seed")
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--features", type=existing_file, required=True, help="features.npz from 'features'")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to score (default: test)")
    p.add_argument("--out", type=Path, default=Path("evaluation"), help="output folder (default: evaluation)")
    p.set_defaults(func=_evaluate)

    p = steps.add_parser("predict", help="predict species for WAV files with a model folder")
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("wavs", nargs="+", type=Path, help="WAV recordings")
    p.set_defaults(func=_predict)

    p = steps.add_parser(
        "explain",
        help="what a model looks at: a map over each recording's spectrogram",
        description="For each WAV recording: the predicted species, its calibrated probability and a map of what "
        "made the model choose it, drawn over the log-mel spectrogram (<stem>_explain.png in --out), all listed in "
        "explanations.json. cnn: Grad-CAM on the backbone's last spatial layer; gru and transformer: integrated "
        "gradients over the input frames. The features model and the baseline are explained in their evaluation "
        "report (permutation importance), not per recording. Existing outputs are kept unless --force.",
    )
    p.add_argument(
        "--model", type=existing_dir, required=True, help="model folder from 'train' (cnn, gru, transformer)"
    )
    p.add_argument("--out", type=Path, default=Path("."), help="output folder (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.add_argument("wavs", nargs="+", type=Path, metavar="FILE.wav", help="WAV recordings")
    p.set_defaults(func=_explain)


def _validate(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError
    from insectml.wingbeat import validate as v

    settings = {
        "seed": args.seed,
        "duplicates": args.duplicates,
        **step_settings(args, P, "validate", skip=("wingbeat_layout",)),
    }
    if (args.check or args.list_only) and args.extra_labels is not None:
        raise ConfigError("--extra-labels is merged by --gather (or a run in one step), not by --list-only or --check")
    if args.check:
        if args.data is None:
            raise ConfigError("--check needs --data, the folder the candidates' paths are relative to")
        cfg = v.ValidateConfig(labels=None, data_dir=args.data, out_dir=args.out, classes=None, **settings)
        checked, problems = v.check_candidates(args.check, cfg, args.out / v.CHECKED)
        print(json.dumps({"checked": checked, "problems": problems}))
        return 0
    if args.gather:
        if args.listing is None:
            raise ConfigError("--gather needs --listing, the listing.json from --list-only")
        # the gather opens no recording: data_dir is not read
        cfg = v.ValidateConfig(labels=None, data_dir=args.out, out_dir=args.out, classes=None, **settings)
        dataset = v.gather(args.listing, args.gather, cfg)
        print(json.dumps({"n_samples": dataset["n_samples"], "counts": dataset["counts"]}))
        return 0
    if args.layout == "csv" and args.labels is None:
        raise ConfigError("--labels is required for the csv layout")
    if args.layout == "folders" and args.data is None:
        raise ConfigError("--data is required for the folders layout")
    labels = args.labels if args.layout == "csv" else None
    data_dir = args.data or args.labels.parent
    classes = args.classes
    if classes is None and (data_dir / "classes.txt").is_file():
        classes = data_dir / "classes.txt"
    cfg = v.ValidateConfig(labels=labels, data_dir=data_dir, out_dir=args.out, classes=classes, **settings)
    if args.list_only:
        listing = v.list_candidates(cfg)
        if not listing["candidates"]:
            v.gather(args.out / v.LISTING, [], cfg)  # nothing left to check: report the problems now
        print(json.dumps({k: listing[k] for k in ("rows", "candidates")} | {"problems": len(listing["problems"])}))
        return 0
    dataset = v.validate_and_split(cfg)
    print(json.dumps({"n_samples": dataset["n_samples"], "counts": dataset["counts"]}))
    return 0


def _features(args: argparse.Namespace) -> int:
    from insectml.data.manifest import iter_manifest, read_json
    from insectml.errors import ConfigError
    from insectml.wingbeat.features import extract, gather_features
    from insectml.wingbeat.frontend import FrontendConfig

    if args.gather:
        gather_features(args.gather, args.manifest, args.out)
        return 0
    if args.dataset is None or args.data is None:
        raise ConfigError("--dataset and --data are required (unless --gather)")
    dataset = read_json(args.dataset, "dataset description")
    cfg = FrontendConfig(
        sample_rate=int(dataset.get("split", {}).get("sample_rate", 8000)),
        resample=bool(dataset.get("split", {}).get("resample", False)),
        min_seconds=float(dataset.get("split", {}).get("min_seconds", P.default("wingbeat_min_seconds"))),
        n_fft=args.n_fft,
        hop_length=args.hop_length,
        n_mels=args.n_mels,
        max_seconds=args.max_seconds,
    )
    extract(iter_manifest(args.manifest), args.data, cfg, args.out, dataset)
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.model in ("features", "rocket", BASELINE):
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
                model=args.model,
                folds=args.folds,
                fold=args.fold,
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
                folds=args.folds,
                fold=args.fold,
                mixup=args.mixup,
                pitch_jitter=args.pitch_jitter,
                swa=args.swa,
            )
        )
    val = result["val"] or {}
    print(json.dumps({"val_accuracy": val.get("accuracy"), "val_macro_f1": val.get("macro_f1")}))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from insectml.wingbeat.compare import compare

    print(compare(args.models, args.evaluations, args.out, sweep=args.sweep, seed=args.seed))
    return 0


def _cv(args: argparse.Namespace) -> int:
    from insectml.wingbeat.crossval import cross_validate

    summary = cross_validate(args.refit, args.folds_models, args.out, args.seed)
    print(json.dumps({k: summary[k] for k in ("model", "k", "temperature", "ece_before", "ece_after")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from insectml.wingbeat.evaluate import evaluate

    metrics = evaluate(args.model, args.features, args.out, args.split, seed=args.seed)
    print(json.dumps({k: metrics[k] for k in ("split", "n", "accuracy", "macro_f1")}))
    return 0


def _predict(args: argparse.Namespace) -> int:
    from insectml.wingbeat.predict import decode_recording, load_predictor

    predictor = load_predictor(args.model)
    # Every file is checked before any answer is printed: one bad file, no partial output.
    audios = [decode_recording(wav, predictor.frontend) for wav in args.wavs]
    for wav, audio in zip(args.wavs, audios, strict=True):
        print(json.dumps({"file": str(wav), "probabilities": predictor.predict_audio(audio)}))
    return 0


def _explain(args: argparse.Namespace) -> int:
    from insectml.wingbeat.explain import explain_recordings

    for result in explain_recordings(args.model, args.wavs, args.out, force=args.force):
        print(json.dumps(result))
    return 0
