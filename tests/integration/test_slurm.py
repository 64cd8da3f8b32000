"""-profile slurm against a real one-node Slurm cluster on localhost (tests/slurm/cluster.sh):
every family end to end with the same metrics as the local run, the three faults a
cluster user meets (a cancelled job, a killed head job, a time limit), and a sweep."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import CV_ARGS, FEWSHOT_CV_ARGS, nextflow

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

# Keys whose values are wall-clock measurements, not results.
TIMING = ("seconds", "_ms", "time")


@pytest.fixture(scope="session")
def slurm_env(repo_root, tool_env, tmp_path_factory):
    """A running test cluster (munged, slurmctld, slurmd) and the environment that reaches it."""
    folder = tmp_path_factory.mktemp("slurm")
    script = repo_root / "tests" / "slurm" / "cluster.sh"
    up = subprocess.run(["bash", str(script), "up", str(folder)], capture_output=True, text=True, timeout=300)
    if up.returncode != 0:
        subprocess.run(["bash", str(script), "down", str(folder)], capture_output=True, text=True, timeout=120)
        pytest.fail(f"tests/slurm/cluster.sh up failed:\n{up.stdout}\n{up.stderr}")
    env = {**tool_env, "SLURM_CONF": str(folder / "slurm.conf")}
    yield env
    subprocess.run(["bash", str(script), "down", str(folder)], capture_output=True, text=True, timeout=120)


def sacct(env) -> dict[str, dict]:
    """Finished jobs from Slurm's job-completion log, by job id."""
    out = subprocess.run(
        ["sacct", "-c", "-n", "-P", "-o", "JobID,JobName,Partition,State,ExitCode,Timelimit,Start,End"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    jobs = {}
    for line in out.splitlines():
        job_id, name, partition, state, exit_code, limit, start, end = line.split("|")
        jobs[job_id] = {
            "name": name,
            "partition": partition,
            "state": state,
            "exit": exit_code,
            "limit": limit,
            "start": start,
            "end": end,
        }
    return jobs


def squeue(env) -> list[dict]:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%j|%T"], env=env, capture_output=True, text=True, check=True).stdout
    return [dict(zip(("id", "name", "state"), line.split("|"), strict=True)) for line in out.splitlines()]


def trace(outdir: Path) -> list[dict]:
    """Rows of the newest execution trace of a run."""
    newest = max((outdir / "pipeline_info").glob("execution_trace_*.txt"), key=lambda p: p.stat().st_mtime)
    with newest.open() as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def same_results(a, b, where="") -> list[str]:
    """Differences between two metrics documents, ignoring timing fields."""
    if isinstance(a, dict) and isinstance(b, dict):
        diffs = []
        for key in sorted(set(a) | set(b)):
            if any(t in key for t in TIMING):
                continue
            diffs += same_results(a.get(key), b.get(key), f"{where}.{key}")
        return diffs
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in same_results(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def start_nextflow(repo_root: Path, cwd: Path, env: dict, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        ["nextflow", "run", str(repo_root / "train_evaluate.nf"), "-ansi-log", "false", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test can kill the whole head job
    )


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"the run ended before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def epochs_done(checkpoints: Path) -> int:
    """Epochs in the newest checkpoint of a run (0 if none yet)."""
    import torch

    files = list(checkpoints.glob("*/last.pt"))
    if not files:
        return 0
    try:
        return int(torch.load(files[0], weights_only=False)["epoch"])
    except Exception:  # being written
        return 0


# --- 3. End to end ----------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm_run(repo_root, slurm_env, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("nf-slurm")
    done = nextflow(
        repo_root,
        cwd,
        slurm_env,
        "-profile",
        "slurm,test",
        "--task",
        "wingbeat,detector,fewshot",
        "--slurm_queue",
        "long",
        "--slurm_options=--comment=insectml-test",  # '=': a value starting with -- is not a flag
        # wingbeat and few-shot cross-validated, as the local cv_run and fewshot_cv_run
        # (every fold a job); --cv_folds is run-wide, the detector has no folds
        "--wingbeat_input",
        str(repo_root / "data" / "wingbeat_hard"),
        *CV_ARGS[2:],
        *FEWSHOT_CV_ARGS[4:],
        "--outdir",
        str(cwd / "results"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return cwd / "results"


def test_every_task_ran_as_a_slurm_job(slurm_run, slurm_env):
    rows = trace(slurm_run)
    jobs = sacct(slurm_env)
    processes = {r["process"].split(":")[-1] for r in rows}
    assert {"WINGBEAT_TRAIN", "DETECTOR_TRAIN_TARGET", "FEWSHOT_TRAIN", "FEWSHOT_PACKAGE"} <= processes
    for row in rows:
        job = jobs.get(row["native_id"])
        assert job is not None, f"{row['process']}: native id {row['native_id']} is not a Slurm job"
        assert job["state"] == "COMPLETED" and job["partition"] == "long", (row["process"], job)


def test_slurm_metrics_equal_the_local_run(slurm_run, cv_run, detector_run, fewshot_cv_run):
    pairs = [
        (slurm_run / "wingbeat" / "evaluation" / m / "metrics.json", cv_run / "evaluation" / m / "metrics.json")
        for m in ("features", "rocket", "gru", "baseline")
    ]
    pairs.append((slurm_run / "wingbeat" / "comparison" / "comparison.json", cv_run / "comparison" / "comparison.json"))
    pairs += [
        (slurm_run / "detector" / "evaluation" / s / "metrics.json", detector_run / "evaluation" / s / "metrics.json")
        for s in ("generic", "target")
    ]
    pairs.append(
        (slurm_run / "fewshot" / "evaluation" / "metrics.json", fewshot_cv_run / "evaluation" / "metrics.json")
    )
    for on_slurm, local in pairs:
        diffs = same_results(json.loads(on_slurm.read_text()), json.loads(local.read_text()))
        assert not diffs, f"{on_slurm} differs from the local run: {diffs[:5]}"


def test_gpu_profile_sends_training_to_the_gpu_partition_with_gres(repo_root, slurm_env, tmp_path):
    """-profile slurm,gpu: training jobs ask for --gres=gpu:1 on --slurm_gpu_queue, the rest
    stay on the default partition (the test node has one countable 'gpu', no device; -stub-run)."""
    done = nextflow(
        repo_root,
        tmp_path,
        slurm_env,
        "-profile",
        "slurm,gpu,test",
        "-stub-run",
        "--task",
        "wingbeat",
        "--wingbeat_models",
        "cnn",
        "--slurm_gpu_queue",
        "gpu",
        "--outdir",
        str(tmp_path / "results"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    jobs = sacct(slurm_env)
    for row in trace(tmp_path / "results"):
        header = (Path(row["workdir"]) / ".command.run").read_text()
        if row["process"].endswith("WINGBEAT_TRAIN"):
            assert jobs[row["native_id"]]["partition"] == "gpu" and "#SBATCH --gres=gpu:1" in header
        else:
            assert jobs[row["native_id"]]["partition"] == "debug" and "--gres" not in header


# --- 4. Faults --------------------------------------------------------------------


def long_training(outdir: Path, epochs: int) -> list[str]:
    """One wingbeat GRU trained for ``epochs`` epochs (1-2 s each here), no early stop."""
    return [
        "-profile",
        "slurm,test",
        "--task",
        "wingbeat",
        "--wingbeat_models",
        "gru",
        "--wingbeat_epochs",
        str(epochs),
        "--wingbeat_patience",
        str(epochs),
        "--outdir",
        str(outdir),
    ]


def train_rows(outdir: Path) -> list[dict]:
    """The GRU's training tasks (the baseline trains beside it), by attempt."""
    return sorted((r for r in gru_rows(outdir) if r["process"].endswith("WINGBEAT_TRAIN")), key=lambda r: r["attempt"])


def gru_rows(outdir: Path) -> list[dict]:
    """The run's tasks but the baseline's training and evaluation (its package may be the
    baseline's: it can win)."""
    baseline = ("WINGBEAT_TRAIN", "WINGBEAT_EVALUATE")
    return [r for r in trace(outdir) if not (r["tag"].endswith(":baseline") and r["process"].endswith(baseline))]


def test_cancelled_training_job_is_retried_and_resumes_from_its_checkpoint(repo_root, slurm_env, tmp_path):
    proc = start_nextflow(repo_root, tmp_path, slurm_env, *long_training(tmp_path / "results", 20))
    checkpoints = tmp_path / "work" / "checkpoints"
    wait_for(lambda: epochs_done(checkpoints) >= 3, 300, "three training epochs", proc)
    job = next(j for j in squeue(slurm_env) if "WINGBEAT_TRAIN" in j["name"] and "baseline" not in j["name"])
    subprocess.run(["scancel", job["id"]], env=slurm_env, check=True)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]

    first, second = train_rows(tmp_path / "results")
    assert first["native_id"] == job["id"] and first["status"] == "FAILED" and first["exit"] == "143"
    assert second["attempt"] == "2" and second["status"] == "COMPLETED"
    log = (Path(second["workdir"]) / ".command.log").read_text()
    assert "resumed from checkpoint at epoch" in log, log[-2000:]
    assert sacct(slurm_env)[job["id"]]["state"] == "CANCELLED"
    history = tmp_path / "results" / "wingbeat" / "models" / "gru" / "history.jsonl"
    assert len(history.read_text().splitlines()) == 20  # every epoch once, none lost or repeated


def test_killed_head_job_then_resume_runs_only_unfinished_tasks(repo_root, slurm_env, tmp_path):
    args = long_training(tmp_path / "results", 15)
    proc = start_nextflow(repo_root, tmp_path, slurm_env, *args)
    wait_for(lambda: epochs_done(tmp_path / "work" / "checkpoints") >= 2, 300, "two training epochs", proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the head job dies without cleaning up
    proc.wait()
    # Its Slurm jobs outlive it; an operator cancels them (squeue -u $USER) before resuming.
    orphans = [j["id"] for j in squeue(slurm_env) if j["name"].startswith("nf-")]
    assert orphans, "the head job's training job should still be in the queue"
    subprocess.run(["scancel", *orphans], env=slurm_env, check=True)
    wait_for(lambda: not squeue(slurm_env), 60, "the cancelled jobs to leave the queue")

    done = nextflow(repo_root, tmp_path, slurm_env, *args, "-resume")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    status = {r["process"].split(":")[-1]: r["status"] for r in gru_rows(tmp_path / "results")}
    assert status["WINGBEAT_VALIDATE"] == "CACHED" and status["WINGBEAT_FEATURES"] == "CACHED"
    for step in ("WINGBEAT_TRAIN", "WINGBEAT_EVALUATE", "WINGBEAT_COMPARE", "WINGBEAT_PACKAGE"):
        assert status[step] == "COMPLETED", (step, status)
    train = next(r for r in gru_rows(tmp_path / "results") if r["process"].endswith("WINGBEAT_TRAIN"))
    assert "resumed from checkpoint at epoch" in (Path(train["workdir"]) / ".command.log").read_text()


def test_training_over_its_time_limit_is_retried_with_more_time(repo_root, slurm_env, tmp_path):
    """Nextflow asks Slurm for SIGUSR2 30 s before the limit (--signal B:USR2@30; Slurm may
    send it up to 60 s early): the task ends with exit 140 and is retried with more time.
    One minute is too short for 30 epochs; the retry gets four."""
    limits = tmp_path / "one_minute.config"
    limits.write_text("process { withName: 'WINGBEAT_TRAIN' { time = { task.attempt == 1 ? 1.min : 4.min } } }\n")
    done = nextflow(repo_root, tmp_path, slurm_env, *long_training(tmp_path / "results", 30), "-c", str(limits))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = train_rows(tmp_path / "results")
    assert [(r["attempt"], r["status"], r["exit"]) for r in rows] == [("1", "FAILED", "140"), ("2", "COMPLETED", "0")]
    jobs = sacct(slurm_env)
    assert [jobs[r["native_id"]]["limit"] for r in rows] == ["1", "4"]  # minutes


# --- 5. Sweeps --------------------------------------------------------------------


def test_sweep_trains_configurations_as_parallel_jobs_and_evaluates_only_the_best(repo_root, slurm_env, tmp_path):
    sweep = repo_root / "conf" / "sweeps" / "wingbeat_cnn.yaml"
    done = nextflow(
        repo_root,
        tmp_path,
        slurm_env,
        "-profile",
        "slurm,test",
        "--task",
        "wingbeat",
        "--sweep",
        str(sweep),
        "--outdir",
        str(tmp_path / "results"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / "results" / "wingbeat"
    table = list(csv.DictReader((out / "sweep" / "sweep.csv").open()))
    assert len(table) == 4 and {r["config"] for r in table} == {"c01", "c02", "c03", "c04"}
    best = (out / "sweep" / "best.txt").read_text().strip()
    assert table[0]["config"] == best
    assert float(table[0]["val_metric"]) == max(float(r["val_metric"]) for r in table)
    assert [p.name for p in (out / "evaluation").iterdir()] == ["cnn"]  # only the best met the test split
    assert "<h2>Sweep (4 configurations" in (out / "comparison" / "report.html").read_text()

    rows = [r for r in trace(tmp_path / "results") if r["process"].endswith("WINGBEAT_TRAIN")]
    assert len(rows) == 4
    jobs = sacct(slurm_env)
    assert all(jobs[r["native_id"]]["state"] == "COMPLETED" for r in rows)
    # one-CPU jobs ran side by side on the two-CPU node
    spans = sorted((jobs[r["native_id"]]["start"], jobs[r["native_id"]]["end"]) for r in rows)
    assert any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:], strict=False)), spans
