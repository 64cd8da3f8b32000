#!/usr/bin/env python3
"""Neural wingbeat models on few recording sessions: what mixup, pitch jitter, weight averaging and a narrower GRU each do.

On data/wingbeat_hard (6 species × 4 recording sessions, split by session), once:
``insectml wingbeat validate --group-by session``, ``features`` and ``cv plan --cv-folds
K``. Then every variant trains the K folds through the library (``train_net``, or
``train`` for the baseline and MiniRocket; not Nextflow) with one fixed epoch budget,
each fold a task of its own in a fresh process with 1 torch thread (``--jobs`` at once),
all with one seed. Printed, measured side by side in one run: each variant's
out-of-fold macro-F1 with its grouped bootstrap 95% CI (``insectml.cv.summarise``:
sessions resampled), and the paired differences (same resamples) to the plain variant of
its net and to the baseline (mean log spectrum + logistic regression).

Variants per net: plain (today's defaults), + mixup (alpha ``--mixup``), + pitch jitter
(``--pitch-jitter``), + stochastic weight averaging, all three; for the GRU also a
narrower one (hidden 48 instead of 96, built by name from a registry entry replaced in
its own process: the GRU's width is no option of ``train_net``).

    python benchmarks/wingbeat_small_data.py [--epochs 15] [--cv-folds 4] [--nets gru,cnn] [--jobs 2] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

REFERENCES = ("baseline", "rocket")


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    options: dict = field(default_factory=dict)  # NetConfig fields
    net: dict = field(default_factory=dict)  # keyword arguments of the net's class (its width)


def variants(nets: list[str], mixup: float, jitter: float) -> list[Variant]:
    """The variants of each net, then the reference models."""
    out = []
    for net in nets:
        out += [
            Variant(f"{net}", net),
            Variant(f"{net} + mixup", net, {"mixup": mixup}),
            Variant(f"{net} + pitch jitter", net, {"pitch_jitter": jitter}),
            Variant(f"{net} + swa", net, {"swa": True}),
            Variant(f"{net} + all three", net, {"mixup": mixup, "pitch_jitter": jitter, "swa": True}),
        ]
        if net == "gru":
            out.append(Variant("gru hidden 48", net, net={"hidden": 48}))
    return out + [Variant(name, name) for name in REFERENCES]


def prepare(work: Path, k: int, seed: int) -> Path:
    """validate, features and the folds plan of the hard demo, by the CLI; returns the work folder."""
    data = ROOT / "data" / "wingbeat_hard"
    cli = [sys.executable, str(ROOT / "bin" / "insectml")]

    def run(*args: object) -> None:
        subprocess.run([*cli, *map(str, args)], check=True, stdout=subprocess.DEVNULL)

    run("wingbeat", "validate", "--labels", data / "labels.csv", "--group-by", "session", "--seed", seed,
        "--out", work)  # fmt: skip
    run("wingbeat", "features", "--manifest", work / "manifest.jsonl", "--dataset", work / "dataset.json",
        "--data", data, "--out", work / "features.npz")  # fmt: skip
    run("cv", "plan", "--manifest", work / "manifest.jsonl", "--cv-folds", k, "--seed", seed,
        "--out", work / "folds.json")  # fmt: skip
    return work


def train_fold(task: tuple[Variant, int, Path, int, int]) -> float:
    """Train one variant on one fold (in a worker process of its own); returns its fit seconds."""
    variant, fold, work, epochs, seed = task
    import functools
    import logging

    import torch

    logging.disable(logging.INFO)
    torch.set_num_threads(1)
    out = work / "models" / variant.name.replace(" ", "_") / f"fold{fold}"
    common = {"features": work / "features.npz", "out_dir": out, "folds": work / "folds.json", "fold": fold}
    if variant.model in REFERENCES:
        from insectml.wingbeat.train import TrainConfig, train

        return train(TrainConfig(model=variant.model, seed=seed, threads=1, **common))["fit_seconds"]
    from insectml.wingbeat import nets
    from insectml.wingbeat.train_net import NetConfig, train_net

    if variant.net:  # this process trains this task only (maxtasksperchild=1)
        nets.NETS[variant.model] = functools.partial(nets.NETS[variant.model], **variant.net)
    cfg = NetConfig(model=variant.model, **common, **variant.options)
    cfg = replace(cfg, loop=replace(cfg.loop, epochs=epochs, seed=seed, threads=1, device="cpu"))
    return train_net(cfg)["fit_seconds"]


def out_of_fold(work: Path, variant: Variant, k: int, seed: int) -> dict:
    """The variant's folds joined: ids, y, groups, fold, predicted class, scores, summary."""
    import numpy as np
    from insectml import stats
    from insectml.cv import summarise
    from insectml.wingbeat.crossval import load_heldout

    folder = work / "models" / variant.name.replace(" ", "_")
    held, _ = load_heldout([folder / f"fold{f}" for f in range(k)], variant.model)
    classes = json.loads((folder / "fold0" / "labels.json").read_text())
    summary = summarise(held["y"], held["scores"], held["groups"], held["fold"], classes, seed, held["logits"])
    probs = stats.softmax(held["scores"]) if held["logits"] else held["scores"]
    config = json.loads((folder / "fold0" / "config.json").read_text())
    return held | {
        "pred": np.asarray(probs).argmax(1),
        "summary": summary,
        "n_classes": len(classes),
        "params": config.get("n_parameters"),
    }


def paired(a: dict, b: dict, seed: int) -> str:
    """``a`` − ``b`` in out-of-fold macro-F1, with the grouped paired bootstrap 95% CI."""
    import numpy as np
    from insectml import stats

    if not np.array_equal(a["ids"], b["ids"]):
        raise RuntimeError("the variants' out-of-fold rows differ")
    n, c = len(a["y"]), a["n_classes"]
    d = stats.paired_bootstrap_diff(
        stats.macro_f1_on(a["y"], a["pred"], c), stats.macro_f1_on(b["y"], b["pred"], c), n, a["groups"], seed=seed
    )
    return f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="fixed epoch budget of every neural fold (default: 15)")
    parser.add_argument("--cv-folds", type=int, default=4, help="grouped folds (default: 4)")
    parser.add_argument("--nets", default="gru,cnn", help="nets to vary, comma-separated (default: gru,cnn)")
    parser.add_argument("--mixup", type=float, default=0.4, help="mixup alpha of the mixup variants (default: 0.4)")
    parser.add_argument("--pitch-jitter", type=float, default=0.08, help="of the jitter variants (default: 0.08)")
    parser.add_argument("--jobs", type=int, default=2, help="fold tasks at once, 1 thread each (default: 2)")
    parser.add_argument(
        "--seed", type=int, default=42, help="of the split, folds, training and bootstrap (default: 42)"
    )
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temp folder, removed)")
    args = parser.parse_args()

    if not (ROOT / "data" / "wingbeat_hard" / "labels.csv").is_file():
        print("data/wingbeat_hard is missing: run 'make data' first", file=sys.stderr)
        return 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="wingbeat-small-"))
    work.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    try:
        prepare(work, args.cv_folds, args.seed)
        todo = variants(args.nets.split(","), args.mixup, args.pitch_jitter)
        # the slow nets first, so the pool does not end waiting on one of them
        tasks = [(v, f, work, args.epochs, args.seed) for v in todo for f in range(args.cv_folds)]
        tasks.sort(key=lambda t: (t[0].model != "gru", t[0].model in REFERENCES))
        print(
            f"{len(tasks)} fold tasks ({len(todo)} variants × {args.cv_folds} folds), {args.jobs} at once", flush=True
        )
        with multiprocessing.get_context("fork").Pool(args.jobs, maxtasksperchild=1) as pool:
            seconds = pool.map(train_fold, tasks, chunksize=1)
        fit = {}
        for (v, *_), s in zip(tasks, seconds, strict=True):
            fit[v.name] = fit.get(v.name, 0.0) + s
        results = {v.name: out_of_fold(work, v, args.cv_folds, args.seed) for v in todo}
        report(todo, results, fit, args, time.perf_counter() - tic)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def report(todo: list[Variant], results: dict, fit: dict, args: argparse.Namespace, wall: float) -> None:
    from insectml.stats import format_ci

    first = next(iter(results.values()))["summary"]
    print(
        f"\ndata/wingbeat_hard: {first['n']} out-of-fold recordings, {args.cv_folds} folds by session; "
        f"{args.epochs} epochs per neural fold, seed {args.seed}; mixup alpha {args.mixup}, "
        f"pitch jitter ±{args.pitch_jitter:.0%}\n"
    )
    header = ("variant", "params", "fit s", "OOF macro-F1 [95% CI]", "vs its plain net", "vs baseline")
    rows = []
    for v in todo:
        r = results[v.name]
        plain = "" if v.model in REFERENCES or v.name == v.model else paired(r, results[v.model], args.seed)
        versus = "" if v.name == "baseline" else paired(r, results["baseline"], args.seed)
        params = f"{r['params']:,}" if r["params"] else ""
        rows.append((v.name, params, f"{fit[v.name]:.0f}", format_ci(r["summary"]["macro_f1"]), plain, versus))
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    print(f"\nwall time {wall:.0f} s (fit s: summed over the folds, 1 thread each)")


if __name__ == "__main__":
    sys.exit(main())
