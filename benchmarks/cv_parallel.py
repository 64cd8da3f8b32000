#!/usr/bin/env python3
"""Cross-validation parallelism on Slurm: how busy a 5-fold × 3-model CV keeps the cluster.

One run: ``nextflow run train_evaluate.nf -profile slurm,test --task wingbeat
--wingbeat_input data/wingbeat_hard --wingbeat_group_by session --cv_folds 5
--wingbeat_models features,rocket,gru`` (the baseline trains beside them: 4 models × 6
tasks, 5 folds and the refit) on the one-node test cluster (tests/slurm/cluster.sh).
Then, for the training jobs: their summed CPU time (Nextflow's trace: realtime × %cpu;
the test cluster keeps no accounting database, so ``sacct`` has no TotalCPU) over the
training phase's wall time (first start to last end, from Slurm's job-completion log,
``sacct -c``) × the node's CPUs. 1.0: every CPU busy training from the first job to the last; the target is ≥ 0.85.
Also printed: the summed job wall times over the phase (the parallelism achieved).

Uses the running cluster of ``$SLURM_CONF`` if set, else starts one and stops it after.

    python benchmarks/cv_parallel.py [--epochs 6] [--keep DIR]
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


def duration(text: str) -> float:
    """A Nextflow trace duration (``1m 2s``, ``850ms``, ``1h 3m 4s``) → seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    total = 0.0
    for part in text.split():
        number = part.rstrip("msdh")
        total += float(number) * units[part[len(number) :]]
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the GRU per task (default: 6)")
    parser.add_argument("--keep", type=Path, help="run in this folder and keep it (default: a temp folder, removed)")
    args = parser.parse_args()

    data = ROOT / "data" / "wingbeat_hard"
    if not (data / "labels.csv").is_file():
        print("data/wingbeat_hard is missing: run 'make data' first", file=sys.stderr)
        return 1
    work = args.keep or Path(tempfile.mkdtemp(prefix="cv-bench-"))
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
            "nextflow", "run", str(ROOT / "train_evaluate.nf"), "-ansi-log", "false",
            "-profile", "slurm,test",
            "--task", "wingbeat",
            "--wingbeat_input", str(data),
            "--wingbeat_group_by", "session",
            "--wingbeat_max_per_class", "0",
            "--cv_folds", "5",
            "--wingbeat_models", "features,rocket,gru",
            "--wingbeat_epochs", str(args.epochs),
            "--outdir", str(work / "results"),
        ]  # fmt: skip
        print("running:", " ".join(cmd[2:]), flush=True)
        subprocess.run(cmd, cwd=work, env=env, check=True, stdout=subprocess.DEVNULL)
        trace = max((work / "results/pipeline_info").glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
        with trace.open() as fh:
            rows = [r for r in csv.DictReader(fh, delimiter="\t") if r["process"].endswith("WINGBEAT_TRAIN")]
        cpu_of = {r["native_id"]: duration(r["realtime"]) * float(r["%cpu"].rstrip("%") or 0) / 100 for r in rows}
        out = subprocess.run(
            ["sacct", "-c", "-n", "-P", "-o", "JobID,Start,End"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        jobs = {}
        for line in out.splitlines():
            job, start, end = line.split("|")
            if job in cpu_of:
                jobs[job] = (datetime.fromisoformat(start), datetime.fromisoformat(end), cpu_of[job])
        if len(jobs) != 24:
            print(f"expected 24 training jobs (4 models × 6) in sacct, found {len(jobs)}", file=sys.stderr)
            return 1
        wall = (max(e for _, e, _ in jobs.values()) - min(s for s, _, _ in jobs.values())).total_seconds()
        cpu = sum(c for _, _, c in jobs.values())
        busy = sum((e - s).total_seconds() for s, e, _ in jobs.values())
        cpus = os.cpu_count()
        print(f"node CPUs {cpus}; training jobs {len(jobs)} (4 models × (5 folds + refit))")
        print(f"training phase wall {wall:.0f} s; summed job CPU time {cpu:.0f} s; summed job wall {busy:.0f} s")
        print(f"CPU time / (wall × CPUs) = {cpu / (wall * cpus):.2f}  (target >= 0.85)")
        print(f"summed job wall / phase wall = {busy / wall:.2f}  (parallelism; at most {cpus} here)")
    finally:
        if started_cluster is not None:
            subprocess.run(["bash", str(ROOT / "tests/slurm/cluster.sh"), "down", str(started_cluster)], check=False)
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
