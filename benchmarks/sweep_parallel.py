#!/usr/bin/env python3
"""Sweep parallelism on Slurm: the wall time of a 4-configuration sweep over the wall time
of its longest single job, on the one-node test cluster (tests/slurm/cluster.sh).

One run: ``nextflow run train_evaluate.nf -profile slurm,test --task wingbeat --sweep
conf/sweeps/wingbeat_cnn.yaml`` with longer training (``--epochs``); then, from Slurm's
job records (``sacct -c``) of the four training jobs: sweep wall time = last end − first
start, longest job = max(end − start), and their ratio (1.0 = all ran at once; 4.0 = one
after another). Also printed: the sum of the four jobs over the sweep wall time (the
parallelism achieved; the node's CPUs divided by the jobs' CPUs bounds it).

Uses the running cluster of ``$SLURM_CONF`` if set, else starts one and stops it after.

    python benchmarks/sweep_parallel.py [--epochs 12] [--keep DIR]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="epochs per configuration (default: 12)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder, removed)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    started_cluster = None
    if not env.get("SLURM_CONF"):
        started_cluster = work / "cluster"
        subprocess.run(["bash", str(ROOT / "tests/slurm/cluster.sh"), "up", str(started_cluster)], check=True)
        env["SLURM_CONF"] = str(started_cluster / "slurm.conf")
    try:
        cmd = [
            "nextflow",
            "run",
            str(ROOT / "train_evaluate.nf"),
            "-ansi-log",
            "false",
            "-profile",
            "slurm,test",
            "--task",
            "wingbeat",
            "--sweep",
            str(ROOT / "conf/sweeps/wingbeat_cnn.yaml"),
            "--wingbeat_epochs",
            str(args.epochs),
            "--wingbeat_patience",
            str(args.epochs),
            "--outdir",
            str(work / "results"),
        ]
        print("running:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        trace = max((work / "results/pipeline_info").glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
        with trace.open() as fh:
            ids = [
                r["native_id"] for r in csv.DictReader(fh, delimiter="\t") if r["process"].endswith("WINGBEAT_TRAIN")
            ]
        out = subprocess.run(
            ["sacct", "-c", "-n", "-P", "-o", "JobID,Start,End,AllocCPUS"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        spans = {}
        for line in out.splitlines():
            job, start, end, cpus = line.split("|")
            if job in ids:
                spans[job] = (datetime.fromisoformat(start), datetime.fromisoformat(end), cpus)
        if len(spans) != 4:
            print(f"expected 4 training jobs in sacct, found {len(spans)}", file=sys.stderr)
            return 1
        wall = (max(e for _, e, _ in spans.values()) - min(s for s, _, _ in spans.values())).total_seconds()
        lengths = [(e - s).total_seconds() for s, e, _ in spans.values()]
        cpus = os.cpu_count()
        print(f"node CPUs {cpus}; training jobs {len(spans)} x {next(iter(spans.values()))[2]} CPU")
        print(f"job wall times (s): {', '.join(f'{x:.0f}' for x in sorted(lengths))}")
        print(f"sweep wall time {wall:.0f} s; longest job {max(lengths):.0f} s; sum of jobs {sum(lengths):.0f} s")
        print(f"sweep wall / longest job = {wall / max(lengths):.2f}  (target <= 1.5; 1.0 = all at once)")
        print(f"sum of jobs / sweep wall = {sum(lengths) / wall:.2f}  (parallelism; at most {cpus} here)")
    finally:
        if started_cluster is not None:
            subprocess.run(["bash", str(ROOT / "tests/slurm/cluster.sh"), "down", str(started_cluster)], check=False)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
