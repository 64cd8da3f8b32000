#!/usr/bin/env python3
"""Log-mel front-end throughput: a per-file librosa loop vs insectml's batched torch front-end.

Both compute the same log-mel (same FrontendConfig) of the same recordings, already
decoded in memory, in one run, on the same threads; prints recordings/second for each,
the ratio, and the largest difference between the two outputs in dB.

    python benchmarks/wingbeat_frontend.py [--recordings 2000] [--threads 1]
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
    parser.add_argument("--recordings", type=int, default=2000, help="how many demo recordings (default: 2000)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for ours (default: 1)")
    args = parser.parse_args()

    import numpy as np
    import soundfile as sf
    import torch
    from insectml.caches import default_caches

    default_caches()
    from insectml.data.demo import SPECIES, write_wingbeat_demo
    from insectml.wingbeat.features import log_mel
    from insectml.wingbeat.frontend import FrontendConfig, batch_log_mel

    torch.set_num_threads(args.threads)
    cfg = FrontendConfig()
    per_class = -(-args.recordings // len(SPECIES))
    with tempfile.TemporaryDirectory() as tmp:
        root = write_wingbeat_demo(Path(tmp) / "wingbeat", per_class=per_class, seed=20240601)
        paths = sorted((root / "recordings").rglob("*.wav"))[: args.recordings]
        audios = [sf.read(p, dtype="float32")[0] for p in paths]

    log_mel(audios[0], cfg)  # warm up numba/librosa caches outside the timing
    batch_log_mel(audios[:8], cfg)

    tic = time.perf_counter()
    reference = np.stack([log_mel(a, cfg)[0] for a in audios])
    librosa_s = time.perf_counter() - tic

    timings = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        tic = time.perf_counter()
        ours, _ = batch_log_mel(audios, cfg, dtype=dtype)
        timings[name] = (time.perf_counter() - tic, float(np.abs(reference - ours).max()))

    n = len(audios)
    print(f"recordings:             {n} (demo, 8 kHz, cropped/padded to {cfg.max_seconds} s, decoded in memory)")
    print(f"librosa per-file loop:  {n / librosa_s:8.1f} rec/s")
    for name, (seconds, diff) in timings.items():
        print(
            f"insectml batched {name}: {n / seconds:8.1f} rec/s  ratio {librosa_s / seconds:5.2f}x  "
            f"max |diff| {diff:.1e} dB  ({args.threads} torch thread(s))"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
