"""The real Nextflow engine runs the wingbeat slice end to end."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import nextflow

pytestmark = pytest.mark.integration


def test_engine_is_real_nextflow(tool_env):
    done = subprocess.run(["nextflow", "-version"], capture_output=True, text=True, env=tool_env, timeout=120)
    assert done.returncode == 0 and "version 24.10" in done.stdout


def test_test_profile_publishes_metrics_model_archive_and_reports(nf_test_run):
    cwd, _ = nf_test_run
    out = cwd / "results"
    metrics = json.loads((out / "wingbeat/evaluation/features/metrics.json").read_text())
    assert metrics["split"] == "test" and 0.3 < metrics["accuracy"] <= 1
    lineage = json.loads((out / "wingbeat/models/features/lineage.json").read_text())
    assert lineage["data"]["dvc_md5"] and lineage["seed"] == 42
    assert (out / "wingbeat/archive/wingbeat.mar").stat().st_size > 0
    info = out / "pipeline_info"
    for prefix in ("execution_report", "execution_timeline", "execution_trace", "pipeline_dag"):
        assert list(info.glob(f"{prefix}_*")), prefix


def test_resume_runs_no_task_again(nf_test_run, repo_root, tool_env):
    cwd, _ = nf_test_run
    before = set((cwd / "results/pipeline_info").glob("execution_trace_*.txt"))
    done = nextflow(repo_root, cwd, tool_env, "-profile", "test", "--outdir", str(cwd / "results"), "-resume")
    assert done.returncode == 0, done.stderr[-2000:]
    (trace,) = set((cwd / "results/pipeline_info").glob("execution_trace_*.txt")) - before
    rows = list(csv.DictReader(trace.open(), delimiter="\t"))
    assert len(rows) == 24 and {r["status"] for r in rows} == {"CACHED"}


def test_validation_and_features_are_scattered_in_chunks_and_gathered(nf_test_run):
    """-profile test cuts the 200 recordings into chunks of 80: three tasks check them and
    three compute features, in parallel; one task gathers each."""
    _, done = nf_test_run
    submitted = [line.split("> ")[-1] for line in done.stdout.splitlines() if "Submitted process" in line]
    scattered = sorted(p for p in submitted if "WINGBEAT_VALIDATE_CHECK" in p or "WINGBEAT_FEATURES (" in p)
    assert scattered == [f"WINGBEAT:WINGBEAT_FEATURES (wingbeat:{i})" for i in (1, 2, 3)] + [
        f"WINGBEAT:WINGBEAT_VALIDATE_CHECK (wingbeat:{i})" for i in (1, 2, 3)
    ]
    assert sum(p.startswith("WINGBEAT:WINGBEAT_VALIDATE (") for p in submitted) == 1
    assert sum(p.startswith("WINGBEAT:WINGBEAT_FEATURES_GATHER (") for p in submitted) == 1


def test_bad_param_is_one_line_exit_2(repo_root, tool_env, tmp_path):
    done = nextflow(repo_root, tmp_path, tool_env, "-profile", "test", "--seed", "abc")
    assert done.returncode == 2
    assert "--seed: 'abc' is not of type integer" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_help_lists_params(repo_root, tool_env, tmp_path):
    done = nextflow(repo_root, tmp_path, tool_env, "--help")
    assert done.returncode == 0 and "--wingbeat_input" in done.stdout


def test_bad_dataset_stops_before_training_listing_every_problem(repo_root, tool_env, tmp_path, tiny_wingbeat):
    data = tmp_path / "data"
    shutil.copytree(tiny_wingbeat, data)
    rows = (data / "labels.csv").read_text().splitlines()
    rows[1] = rows[1].replace("aedes_aegypti,", "aedes_aegpyti,", 1)
    first_wav = data / rows[2].split(",")[0]
    first_wav.write_bytes(b"")
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    done = nextflow(
        repo_root,
        tmp_path,
        tool_env,
        "-profile",
        "test",
        "--wingbeat_input",
        str(data),
        "--outdir",
        str(tmp_path / "results"),
    )
    log = done.stdout + done.stderr
    assert done.returncode != 0
    assert "unknown species 'aedes_aegpyti'" in log and "empty file" in log
    assert not (tmp_path / "results" / "wingbeat" / "models").exists()


def test_every_model_and_the_baseline_trained_compared_and_best_packaged(nf_test_run):
    cwd, _ = nf_test_run
    out = cwd / "results" / "wingbeat"
    comparison = json.loads((out / "comparison" / "comparison.json").read_text())
    members = {"features", "rocket", "cnn", "gru", "transformer", "baseline"}
    assert {m["model"] for m in comparison["models"]} == members
    assert comparison["selected_by"] == "val_macro_f1"  # the demo has many groups per class: no CV
    best = max(comparison["models"], key=lambda m: (m["val_macro_f1"], [-ord(c) for c in m["model"]]))["model"]
    assert comparison["best"] == best and comparison["verdict"]["sentence"]
    packaged = json.loads((out / "models" / best / "config.json").read_text())["model"]
    assert packaged == best and (out / "archive" / "wingbeat.mar").is_file()
    assert (out / "comparison" / "report.html").stat().st_size > 0
    assert (out / "comparison" / "training_curves.png").is_file()


def test_folder_layout_with_resampling(repo_root, tool_env, tmp_path, tiny_wingbeat):
    import numpy as np
    import soundfile as sf

    tree = tmp_path / "tree"
    for row in list(csv.DictReader((tiny_wingbeat / "labels.csv").open())):
        target = tree / row["species"] / row["event"] / Path(row["path"]).name
        target.parent.mkdir(parents=True, exist_ok=True)
        audio, rate = sf.read(tiny_wingbeat / row["path"], dtype="float32")
        if row["path"].endswith("0_0000.wav") or row["path"].endswith("0003.wav"):
            audio, rate = np.repeat(audio, 2), 16000
        sf.write(target, audio, rate)
    done = nextflow(
        repo_root,
        tmp_path,
        tool_env,
        "-profile",
        "test",
        "--wingbeat_input",
        str(tree),
        "--wingbeat_layout",
        "folders",
        "--wingbeat_group_by",
        "path:1",
        "--wingbeat_resample",
        "--wingbeat_models",
        "features",
        "--outdir",
        str(tmp_path / "results"),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    dataset = json.loads((tmp_path / "results/wingbeat/data/dataset.json").read_text())
    assert dataset["n_samples"] == 70 and dataset["split"]["resample"] is True


def test_fewshot_sweep_wiring_one_training_per_configuration(repo_root, tool_env, tmp_path):
    """-stub-run: six seeded configurations → six training tasks → one selection → only the
    chosen model evaluated and packaged."""
    sweep = repo_root / "conf" / "sweeps" / "fewshot_random.yaml"
    done = nextflow(
        repo_root,
        tmp_path,
        tool_env,
        "-stub-run",
        "--task",
        "fewshot",
        "--sweep",
        str(sweep),
        "--outdir",
        str(tmp_path / "out"),
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "sweep " + str(sweep) + ": 6 fewshot configurations" in done.stdout
    submitted = [line.split("> ")[-1] for line in done.stdout.splitlines() if "Submitted process" in line]
    assert sorted(p for p in submitted if "FEWSHOT_TRAIN" in p) == [
        f"FEWSHOT:FEWSHOT_TRAIN (fewshot:c0{i})" for i in range(1, 7)
    ]
    assert sum("SWEEP_SELECT" in p for p in submitted) == 1
    assert sum("FEWSHOT_EVALUATE" in p for p in submitted) == 1 and sum("FEWSHOT_PACKAGE" in p for p in submitted) == 1


def test_sweep_for_a_family_not_run_is_one_line_exit_2(repo_root, tool_env, tmp_path):
    sweep = repo_root / "conf" / "sweeps" / "fewshot_random.yaml"
    done = nextflow(
        repo_root, tmp_path, tool_env, "--task", "wingbeat", "--sweep", str(sweep), "--outdir", str(tmp_path / "out")
    )
    assert done.returncode == 2
    assert (
        "--sweep: " in done.stderr + done.stdout and "which --task wingbeat does not run" in done.stderr + done.stdout
    )
