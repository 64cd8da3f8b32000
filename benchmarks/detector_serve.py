#!/usr/bin/env python3
"""Served detector latency: a real Multi Model Server on loopback vs the raw model forward.

One run: export a detector (the trained demo target detector when `--model` points at a
model folder, else an untrained SSDlite), time the in-process forward of the TorchScript
model on the decoded image (1 thread, as the MMS worker), then start MMS with the .mar
and time sequential POSTs of the same JPEG. Prints both p50s and MMS ÷ raw, which holds
everything serving adds: HTTP, the Java front end, the worker hand-off, JPEG decoding and
JSON encoding.

    python benchmarks/detector_serve.py [--model results/detector/models/target] [--requests 100]
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))


def free_port() -> int:
    for port in random.sample(range(20000, 30000), 200):  # MMS rejects some high ports
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="detector model folder (default: an untrained SSDlite)")
    parser.add_argument("--image", type=Path, help="JPEG/PNG to send (default: a demo image)")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per side (default: 100)")
    args = parser.parse_args()

    import torch
    from insectml.caches import default_caches

    default_caches()
    from insectml.detector.export import export_detector
    from insectml.detector.models import create_detector
    from insectml.detector.predict import DetectorPredictor, decode_image
    from insectml.families import FAMILIES
    from insectml.serving.mms import ServerConfig, predict, start, stop
    from insectml.serving.package import package

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        model_dir = args.model
        if model_dir is None:
            model_dir = tmp / "model"
            model_dir.mkdir()
            torch.manual_seed(0)
            torch.save(create_detector("ssdlite320_mobilenet_v3_large", 7).state_dict(), model_dir / "weights.pt")
            (model_dir / "config.json").write_text(json.dumps({"model": "ssdlite320_mobilenet_v3_large"}))
            (model_dir / "labels.json").write_text(json.dumps([f"class{i}" for i in range(7)]))
            (model_dir / "lineage.json").write_text("{}")
        image = args.image
        if image is None:
            from insectml.data.detector_demo import write_detector_demo

            root = write_detector_demo(tmp / "data", n_box_images=1, n_species_images=0, seed=3)
            image = next((root / "insects_sly").glob("*/img/*"))
        body = image.read_bytes()

        store = tmp / "store"
        written = export_detector(model_dir, tmp / "export", "det")
        package(
            FAMILIES["detector"],
            model_dir,
            "det",
            store,
            {"torchscript": Path(written["torchscript"])},
            {"score_threshold": 0.3},
        )
        served_dir = tmp / "served"
        served_dir.mkdir()
        for name in ("config.json", "labels.json"):
            (served_dir / name).write_bytes((model_dir / name).read_bytes())
        (served_dir / "model.torchscript.pt").write_bytes(Path(written["torchscript"]).read_bytes())
        predictor = DetectorPredictor(served_dir, 0.3)
        tensor = decode_image(body)
        for _ in range(5):
            predictor.predict([tensor])
        raw = []
        for _ in range(args.requests):
            tic = time.perf_counter()
            predictor.predict([tensor])
            raw.append(time.perf_counter() - tic)

        cfg = ServerConfig(
            model_store=store,
            models={"det": "det.mar"},
            state_dir=tmp / "mms",
            port=free_port(),
            management_port=free_port(),
        )
        start(cfg, probe=("det", body), timeout=300)
        try:
            for _ in range(5):
                predict(cfg.inference_url, "det", body, content_type="image/jpeg")
            served = []
            for _ in range(args.requests):
                tic = time.perf_counter()
                predict(cfg.inference_url, "det", body, content_type="image/jpeg")
                served.append(time.perf_counter() - tic)
        finally:
            stop(cfg.state_dir)
    p50_raw, p50_mms = statistics.median(raw) * 1e3, statistics.median(served) * 1e3
    print(f"{image.name}: {args.requests} requests each, 1 thread")
    print(f"raw TorchScript forward p50: {p50_raw:.1f} ms")
    print(f"MMS POST round trip p50:     {p50_mms:.1f} ms")
    print(f"ratio MMS/raw: {p50_mms / p50_raw:.3f} (target ≤ 1.25)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
