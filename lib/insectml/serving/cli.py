"""``insectml serve start|stop``: Multi Model Server on loopback; ``insectml package``: its archives."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import add_param, existing_dir, existing_file
from insectml.families import FAMILIES
from insectml.serving.mms import LOOPBACK, MAX_REQUEST_SIZE
from insectml.serving.predlog import (
    DEFAULT_FILES,
    DEFAULT_INPUTS_MAX_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_SUMMARY_SHARE,
    LOG_NAME,
    LogSettings,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "package",
        help="build a Multi Model Server archive (.mar) of a family's model",
        description="Pack the model folder, the insectml library and the family's handler (plus the "
        "detector's TorchScript export or the few-shot gallery) into OUT/NAME.mar.",
    )
    p.add_argument("family", choices=list(FAMILIES), help="the model's family")
    p.add_argument("--model", type=existing_dir, required=True, help="model folder from 'train'")
    p.add_argument("--name", help="model name in the server's URL (default: the family's name)")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for NAME.mar (default: .)")
    g = p.add_argument_group("detector")
    g.add_argument("--torchscript", type=existing_file, help="NAME.torchscript.pt from 'insectml detector export'")
    add_param(g, FAMILIES["detector"].group, "detector_score_threshold")
    g = p.add_argument_group("fewshot")
    g.add_argument("--gallery", type=existing_dir, help="gallery folder from 'insectml fewshot evaluate' or 'enrol'")
    add_param(g, FAMILIES["fewshot"].group, "fewshot_top_k")
    p.set_defaults(func=_package)

    serve = sub.add_parser("serve", help="start or stop Multi Model Server (127.0.0.1)")
    actions = serve.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = actions.add_parser(
        "start",
        help="start a server in the background and wait until it predicts",
        description="Start Multi Model Server with the given archives, its inference API bound to HOST and its "
        "management API to MANAGEMENT_HOST (both loopback by default); return when a probe prediction succeeds "
        "(or, without --probe, when every model has a ready worker).",
    )
    p.add_argument("--model-store", type=existing_dir, required=True, help="folder holding the .mar archives")
    p.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="NAME=ARCHIVE.mar",
        help="model to load, repeatable (e.g. wingbeat=wingbeat.mar); none: start empty, for 'insectml deploy'",
    )
    p.add_argument(
        "--state", type=Path, default=Path("serving"), help="folder for config, logs and PIDs (default: serving)"
    )
    p.add_argument(
        "--host", default=LOOPBACK, help=f"address the inference API binds (default: {LOOPBACK}; warns if not loopback)"
    )
    p.add_argument("--port", type=int, default=8080, help="inference port (default: 8080)")
    p.add_argument(
        "--management-host",
        default=LOOPBACK,
        help=f"address the management API binds, whatever --host is (default: {LOOPBACK}); it has no "
        "authentication and registers archives from any URL, so it warns if not loopback",
    )
    p.add_argument("--management-port", type=int, default=8081, help="management port (default: 8081)")
    p.add_argument(
        "--max-request-size",
        type=int,
        default=MAX_REQUEST_SIZE,
        metavar="BYTES",
        help=f"largest request body; larger ones get HTTP 413 (default: {MAX_REQUEST_SIZE}, MMS's own)",
    )
    p.add_argument("--probe", type=existing_file, help="a sample request body; ready = the first model predicts it")
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for readiness (default: 180)")
    g = p.add_argument_group(
        "prediction log",
        f"One JSON line per answered request in STATE/predictions/{LOG_NAME} (the input's sha256 and size, the "
        "answer, a summary of the input for 'insectml monitor'), rotated by size; on unless --no-prediction-log.",
    )
    g.add_argument(
        "--no-prediction-log",
        dest="prediction_log",
        action="store_false",
        help="keep no prediction log",
    )
    g.add_argument(
        "--log-max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help=f"size at which {LOG_NAME} is rotated to {LOG_NAME}.1 (default: {DEFAULT_MAX_BYTES})",
    )
    g.add_argument(
        "--log-files",
        type=int,
        default=DEFAULT_FILES,
        metavar="N",
        help=f"rotated files kept, {LOG_NAME}.1 to .N; the oldest goes (default: {DEFAULT_FILES})",
    )
    g.add_argument(
        "--log-inputs",
        action="store_true",
        help="also keep each request body, once per content, in STATE/predictions/inputs/ (for labelling)",
    )
    g.add_argument(
        "--log-inputs-max-bytes",
        type=int,
        default=DEFAULT_INPUTS_MAX_BYTES,
        metavar="BYTES",
        help=f"stop keeping bodies once they take this much; none is deleted (default: {DEFAULT_INPUTS_MAX_BYTES})",
    )
    g.add_argument(
        "--log-summary-share",
        type=float,
        default=DEFAULT_SUMMARY_SHARE,
        metavar="FRACTION",
        help="most of the serving time spent on summaries a model does not compute to answer (wingbeat features "
        "for a model not trained on them); the other lines get none; 1: every line "
        f"(default: {DEFAULT_SUMMARY_SHARE})",
    )
    p.set_defaults(func=_start)

    p = actions.add_parser("stop", help="stop the server started from a state folder, by its PIDs")
    p.add_argument(
        "--state", type=Path, default=Path("serving"), help="state folder given to 'start' (default: serving)"
    )
    p.set_defaults(func=_stop)


def _package(args: argparse.Namespace) -> int:
    from insectml.serving.package import package

    extras = {"torchscript": args.torchscript, "gallery": args.gallery}
    settings = {"score_threshold": args.score_threshold, "top_k": args.top_k}
    print(package(FAMILIES[args.family], args.model, args.name or args.family, args.out, extras, settings))
    return 0


def _start(args: argparse.Namespace) -> int:
    from insectml.errors import ConfigError
    from insectml.serving.mms import ServerConfig, start

    if args.max_request_size <= 0:
        raise ConfigError(f"--max-request-size {args.max_request_size}: expected a positive number of bytes")
    settings = LogSettings(
        max_bytes=args.log_max_bytes,
        files=args.log_files,
        inputs=args.log_inputs,
        inputs_max_bytes=args.log_inputs_max_bytes,
        summary_share=args.log_summary_share,
    )
    if settings.problems():
        raise ConfigError(settings.problems()[0])

    models = {}
    for spec in args.models:
        name, sep, archive = spec.partition("=")
        if not sep or not name or not archive:
            raise ConfigError(f"--model {spec!r}: expected NAME=ARCHIVE.mar")
        models[name] = archive
    cfg = ServerConfig(
        model_store=args.model_store,
        models=models,
        state_dir=args.state,
        host=args.host,
        port=args.port,
        management_host=args.management_host,
        management_port=args.management_port,
        max_request_size=args.max_request_size,
        prediction_log=settings if args.prediction_log else None,
    )
    if args.probe and not models:
        raise ConfigError("--probe needs a --model to send it to")
    probe = (next(iter(models)), args.probe.read_bytes()) if args.probe else None
    info = start(cfg, probe=probe, timeout=args.timeout)
    print(json.dumps(info))
    return 0


def _stop(args: argparse.Namespace) -> int:
    from insectml.serving.mms import stop

    print("stopped" if stop(args.state) else "no server was running")
    return 0
