"""``insectml pretrain train``: self-supervised pretraining of an image backbone (SimCLR)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from insectml.cliargs import LOOP_PARAMS, add_loop_args, add_step_params, step_settings
from insectml.pretrain.params import PARAMS
from insectml.runparams import GENERAL

LOOP = tuple(f"{PARAMS.name}_{n}" for n in LOOP_PARAMS)
PROJECT_DIR = "<projectDir>"  # in the declared default of --images: this checkout


def register(sub: argparse._SubParsersAction) -> None:
    pretrain = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining of an image backbone on unlabelled images (makes weights/NAME)",
    )
    steps = pretrain.add_subparsers(dest="step", metavar="STEP", required=True)
    p = steps.add_parser(
        "train",
        help="SimCLR-pretrain a timm backbone on a folder of images; write OUT/NAME as 'weights import' does",
        description="A timm backbone (pretrained=False, or --weights of the same architecture to continue from) "
        "and a projection head learn from two augmented views of every image of --images (recursively; labels "
        "and folder names ignored; unreadable images skipped with a warning) with the NT-Xent loss, for a fixed "
        "number of epochs of whole batches. Writes OUT/NAME/: weights.safetensors and manifest.json (the layout "
        "of 'insectml weights import': every --*_weights param takes the folder), model.safetensors and "
        "config.json (the Hugging Face timm layout) and history.jsonl; the projection head is dropped. OUT/NAME "
        "must not exist. Checkpoints and history go to OUT/.NAME.training/ (what --resume continues from), "
        "deleted once OUT/NAME is written. The same images, settings and seed give the same weights on the CPU.",
    )
    add_step_params(p, PARAMS, "train", skip=LOOP)
    add_loop_args(p, PARAMS, GENERAL)
    p.add_argument("--out", type=Path, default=Path("weights"), help="folder to write NAME/ into (default: weights)")
    p.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from insectml.cliargs import loop_settings
    from insectml.lineage import code_root
    from insectml.pretrain.ssl import PretrainConfig, pretrain
    from insectml.training.loop import LoopConfig
    from insectml.weights.store import resolve

    settings = step_settings(args, PARAMS, "train", skip=LOOP)
    settings["images"] = Path(str(settings["images"]).replace(PROJECT_DIR, str(code_root())))
    settings["weights"] = resolve(args.weights) if args.weights else None
    summary = pretrain(PretrainConfig(out_dir=args.out, loop=LoopConfig(**loop_settings(args)), **settings))
    print(json.dumps(summary))
    return 0
