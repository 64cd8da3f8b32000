#!/usr/bin/env python3
"""Detector training throughput: insectml's shared loop vs a bare torchvision-reference loop.

Same model (same seed), same images, same batch size, same optimiser and threads, in one
run; the two are interleaved, alternating which goes first and each side's best run counts.
Ours is the whole `insectml.training.loop.fit` (progress bar, schedule, history,
checkpoint every epoch) with validation stubbed out: the bare loop has none, and the
cost of validating is a separate question. Prints images/second and ours ÷ bare.

    python benchmarks/detector_train.py [--images 64] [--epochs 2] [--repeats 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="training images (default: 64)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per timed run (default: 2)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per side (default: 2)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch size (default: 8)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides (default: 1)")
    parser.add_argument("--model", default="ssdlite320_mobilenet_v3_large", help="detector name")
    args = parser.parse_args()

    import torch
    from insectml.caches import default_caches

    default_caches()
    from insectml.data.detector_demo import write_detector_demo
    from insectml.data.manifest import read_json, read_manifest
    from insectml.detector.data import DetectionSet, collate
    from insectml.detector.models import create_detector
    from insectml.detector.validate import DetectorValidateConfig, validate_detection
    from insectml.training.loop import LoopConfig, fit

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-det-") as tmp:
        tmp = Path(tmp)
        root = write_detector_demo(tmp / "data", n_box_images=args.images, n_species_images=0, seed=11)
        validate_detection(DetectorValidateConfig(root=root, out_dir=tmp / "v", labels=root / "insects_sly"))
        classes = read_json(tmp / "v" / "dataset.json", "dataset")["classes"]
        rows = list(read_manifest(tmp / "v" / "manifest.jsonl"))
        data = DetectionSet(rows, root, classes, train=True)
        n = len(data)

        def step(model, batch, device):
            images, targets = batch
            return sum(model(list(images), list(targets)).values())

        def ours(run: int) -> float:
            torch.manual_seed(0)
            model = create_detector(args.model, len(classes))
            cfg = LoopConfig(
                out_dir=tmp / f"ours{run}",
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=5e-3,
                weight_decay=1e-4,
                patience=args.epochs + 1,
                monitor="map_50",
                threads=args.threads,
                device="cpu",
            )
            tic = time.perf_counter()
            fit(model, data, step, lambda m, d: {"map_50": 0.0}, cfg, collate=collate)
            return time.perf_counter() - tic

        def bare(run: int) -> float:
            # torchvision's references/detection train_one_epoch, minus logging
            torch.manual_seed(0)
            model = create_detector(args.model, len(classes))
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3, weight_decay=1e-4)
            loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size, shuffle=True, collate_fn=collate)
            tic = time.perf_counter()
            model.train()
            for _ in range(args.epochs):
                for images, targets in loader:
                    loss = sum(model(list(images), list(targets)).values())
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
            return time.perf_counter() - tic

        times = {"bare": [], "ours": []}
        for run in range(args.repeats):
            # alternate which side goes first, so warm-up and drift do not favour one
            for side in ("bare", "ours") if run % 2 == 0 else ("ours", "bare"):
                times[side].append(bare(run) if side == "bare" else ours(run))
            print(f"run {run + 1}: bare {times['bare'][-1]:.1f} s, ours {times['ours'][-1]:.1f} s", file=sys.stderr)
    rate = {k: n * args.epochs / min(v) for k, v in times.items()}
    print(f"{args.model}, {n} images × {args.epochs} epochs, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"bare loop (torchvision reference pattern): {rate['bare']:.2f} images/s")
    print(f"insectml fit:                              {rate['ours']:.2f} images/s")
    print(f"ratio ours/bare: {rate['ours'] / rate['bare']:.3f} (target ≥ 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
