"""``insectml select``: the command line of :mod:`insectml.active`."""

from __future__ import annotations

import argparse
from pathlib import Path

from insectml.cliargs import existing_dir

STRATEGIES = ("uncertainty", "diversity", "novelty", "hybrid")  # checked against strategies.STRATEGIES by a test


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "select",
        help="pick the unlabelled samples most worth labelling and write them as a Supervisely project",
        description="Run the model (its family read from its config.json) over POOL, a folder of unlabelled "
        "files (wingbeat: .wav; detector, fewshot: .jpg/.png) or a prediction-log folder of a server started "
        "with --log-inputs, pick BUDGET samples by STRATEGY and write them to OUT as a Supervisely project "
        "(meta.json, round_N/img, round_N/ann; wingbeat: spectrogram PNGs with the WAVs in round_N/wav) with "
        "the model's answers as pre-annotations, and OUT/selection.json (round, strategy, model, and per sample "
        "its source, sha256, scores and rank). Labellers remove the 'unreviewed' tag of each item they label.",
    )
    p.add_argument("pool", type=existing_dir, metavar="POOL", help="folder of unlabelled files, or a prediction log")
    p.add_argument("--model", type=existing_dir, required=True, metavar="DIR", help="the model folder")
    p.add_argument(
        "--gallery", type=existing_dir, metavar="DIR", help="few-shot: the gallery folder (default: DIR/gallery)"
    )
    p.add_argument("--budget", type=int, required=True, metavar="K", help="how many samples to select")
    p.add_argument(
        "--strategy",
        choices=STRATEGIES,
        required=True,
        help="uncertainty (smallest margin between the two best classes), diversity (k-center on the "
        "embeddings), novelty (farthest from the few-shot gallery), hybrid (k-center among the 3K most "
        "uncertain, or most novel for few-shot)",
    )
    p.add_argument("--out", type=Path, required=True, metavar="PROJECT", help="the project folder to write")
    p.add_argument("--round", type=int, default=1, metavar="N", help="the labelling round (default: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of tie-breaks and k-center's start (default: 0)")
    p.add_argument("--force", action="store_true", help="replace a project this command wrote before")
    p.set_defaults(func=select_command)


def select_command(args: argparse.Namespace) -> int:
    from insectml.active import SelectConfig, run_selection

    cfg = SelectConfig(
        pool=args.pool,
        model=args.model,
        budget=args.budget,
        strategy=args.strategy,
        out=args.out,
        gallery=args.gallery,
        round=args.round,
        seed=args.seed,
        force=args.force,
    )
    print(run_selection(cfg))
    return 0
