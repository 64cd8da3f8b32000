#!/usr/bin/env python3
"""Self-supervised pretraining on the few-shot demo: does SimCLR on the base classes' images
help on novel classes it never saw?

One run on data/fewshot, split as ``insectml fewshot validate`` splits it (base / novel val /
novel test classes): SimCLR-pretrain the backbone on the base classes' images only (labels
unused; ``insectml.pretrain.ssl.pretrain``), then score 5-way 1-shot and 5-shot episodes on
the novel test classes (``insectml.fewshot.embed.episode_scores``, the same episodes for
every row, mean ± 95 % CI) for

- the backbone frozen (its normalised features; no training): random init vs SSL;
- the supervised few-shot training (``insectml fewshot train``'s library call, its defaults:
  finetune, prototypical loss, early stopping on the novel val classes; a backbone from
  weights trains at ``--backbone-lr-scale`` 0.1 × lr) with the same epoch budget: from random
  init vs from the SSL weights;

with the paired difference of each pair on the same episodes (± 1.96 σ/√n), and a colour
histogram as the no-learning reference.

    python benchmarks/ssl_pretrain.py [--epochs 15] [--fewshot-epochs 15] [--batch-size 64] [--threads 2]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

SHOTS = (1, 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="SimCLR epochs (default: 15)")
    parser.add_argument("--fewshot-epochs", type=int, default=15, help="supervised few-shot epochs (default: 15)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default: 2)")
    parser.add_argument("--backbone", default="resnet10t", help="timm backbone (default: resnet10t)")
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels (default: 64)")
    parser.add_argument("--batch-size", type=int, default=64, help="SimCLR images per batch (default: 64)")
    parser.add_argument("--episodes", type=int, default=600, help="test episodes per row (default: 600)")
    parser.add_argument("--seed", type=int, default=42, help="split, training and episode seed (default: 42)")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "fewshot", help="the few-shot demo folder")
    parser.add_argument("--work", type=Path, help="keep the intermediate files here (default: a temporary folder)")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=False)
        return run(args, args.work)
    with tempfile.TemporaryDirectory(prefix="ssl-bench-") as tmp:
        return run(args, Path(tmp))


def run(args: argparse.Namespace, work: Path) -> int:
    import numpy as np
    import torch
    from insectml.data.manifest import read_manifest
    from insectml.fewshot.data import ImageSet
    from insectml.fewshot.embed import ColourHistogram, embed, episode_scores, episode_summary, load_embedder
    from insectml.fewshot.evaluate import paired_difference
    from insectml.fewshot.family import PARAMS as FEWSHOT
    from insectml.fewshot.model import create_embedder
    from insectml.fewshot.train import FewshotTrainConfig, train_fewshot
    from insectml.fewshot.validate import FewshotValidateConfig, validate_fewshot
    from insectml.pretrain.params import PARAMS as PRETRAIN
    from insectml.pretrain.ssl import PretrainConfig, pretrain
    from insectml.training.loop import declared_loop
    from insectml.weights.store import resolve

    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    seconds: dict[str, float] = {}

    validate_fewshot(
        FewshotValidateConfig(root=args.data, out_dir=work / "split", images=args.data / "images", seed=args.seed)
    )
    manifest, dataset = work / "split" / "manifest.jsonl", work / "split" / "dataset.json"
    rows = read_manifest(manifest)
    base = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    labels = [r["label"] for r in test]
    # the base classes' images only, linked into a folder of their own: SimCLR never sees a novel class
    for r in base:
        link = work / "base" / r["path"]
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to((args.data / r["path"]).resolve())

    tic = time.perf_counter()
    ssl = pretrain(
        PretrainConfig(
            images=work / "base",
            out_dir=work / "weights",
            backbone=args.backbone,
            image_size=args.image_size,
            loop=replace(
                declared_loop(PRETRAIN),
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=args.seed,
                threads=args.threads,
                device="cpu",
            ),
        )
    )
    seconds["SimCLR"] = time.perf_counter() - tic
    weights = resolve(ssl["weights"])

    test_images = ImageSet(test, args.data, [], args.image_size, False, mean=weights.mean, std=weights.std)
    embeddings = {"colour histogram (no learning)": embed(ColourHistogram(), test_images, cpu)}
    for name, start in (("random init", None), ("SSL", weights)):
        torch.manual_seed(args.seed)
        frozen = create_embedder(args.backbone, 0, start, mode="frozen")
        embeddings[f"frozen, {name}"] = embed(frozen, test_images, cpu)

    loop = replace(
        declared_loop(FEWSHOT), epochs=args.fewshot_epochs, seed=args.seed, threads=args.threads, device="cpu"
    )
    for name, start in (("random init", None), ("SSL", weights)):
        out = work / f"fewshot-{name.replace(' ', '-')}"
        tic = time.perf_counter()
        trained = train_fewshot(
            FewshotTrainConfig(
                manifest=manifest,
                dataset=dataset,
                root=args.data,
                out_dir=out,
                backbone=args.backbone,
                image_size=args.image_size,
                weights=start,
                loop=loop,
            )
        )
        seconds[f"few-shot training from {name}"] = time.perf_counter() - tic
        model, config = load_embedder(out)
        images = ImageSet(test, args.data, [], args.image_size, False, mean=config["mean"], std=config["std"])
        epochs = len((out / "history.jsonl").read_text().splitlines())
        row = f"few-shot finetune, {name} (best epoch {trained['best_epoch']}/{epochs})"
        embeddings[row] = embed(model, images, cpu)

    scores = {
        name: {shot: episode_scores(emb, labels, 5, shot, args.episodes, args.seed) for shot in SHOTS}
        for name, emb in embeddings.items()
    }

    def cell(accs: np.ndarray, shot: int) -> str:
        s = episode_summary(accs, labels, shot)
        return "—" if s["mean"] is None else f"{s['mean']:.3f} ± {s['ci95']:.3f}"

    width = max(map(len, scores)) + 2
    print(
        f"few-shot demo ({args.data}): SimCLR on {ssl['images']} images of "
        f"{len({r['label'] for r in base})} base classes, {args.epochs} epochs, batch {min(args.batch_size, ssl['images'])}; "
        f"{args.backbone} at {args.image_size} px; {len(set(labels))} novel test classes, {args.episodes} episodes "
        f"per cell, seed {args.seed}, {args.threads} thread(s)"
    )
    print(f"{'':{width}}" + "".join(f"{f'5-way {k}-shot ± 95% CI':>24}" for k in SHOTS))
    for name, per_shot in scores.items():
        print(f"{name:{width}}" + "".join(f"{cell(per_shot[k], k):>24}" for k in SHOTS))
    print("paired differences on the same episodes (mean [95% CI]):")
    names = list(scores)
    for better, worse in ((names[2], names[1]), (names[4], names[3])):
        parts = []
        for k in SHOTS:
            if len(scores[better][k]):
                d = paired_difference(scores[better][k], scores[worse][k])
                parts.append(f"{k}-shot {d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]")
        print(f"  {better.split(' (')[0]} − {worse.split(' (')[0]}: " + "; ".join(parts))
    print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
