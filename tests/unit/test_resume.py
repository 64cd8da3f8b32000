"""Training killed after an epoch resumes from its checkpoint and ends where an
uninterrupted run ends."""

import signal
import subprocess
import time

import pytest
import torch


@pytest.fixture(scope="module")
def features(tiny_wingbeat, run_cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume")
    assert run_cli("wingbeat", "validate", "--labels", tiny_wingbeat / "labels.csv", "--out", out).returncode == 0
    done = run_cli(
        "wingbeat",
        "features",
        "--manifest",
        out / "manifest.jsonl",
        "--dataset",
        out / "dataset.json",
        "--data",
        tiny_wingbeat,
        "--out",
        out / "features.npz",
    )
    assert done.returncode == 0, done.stderr
    return out / "features.npz"


def train_args(repo_root, features, out, *extra):
    return [
        str(repo_root / "bin" / "insectml"),
        "wingbeat",
        "train",
        "--features",
        str(features),
        "--model",
        "gru",
        "--epochs",
        "4",
        "--patience",
        "10",
        "--batch-size",
        "16",
        "--out",
        str(out),
        *extra,
    ]


def test_killed_then_resumed_equals_uninterrupted(repo_root, tool_env, features, tmp_path):
    straight = subprocess.run(
        train_args(repo_root, features, tmp_path / "straight"),
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert straight.returncode == 0, straight.stderr

    out = tmp_path / "killed"
    proc = subprocess.Popen(
        train_args(repo_root, features, out), env=tool_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    history = out / "history.jsonl"
    deadline = time.monotonic() + 300
    while not (history.is_file() and history.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert history.read_text().count("\n") < 4

    resumed = subprocess.run(
        train_args(repo_root, features, out, "--resume"), env=tool_env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint at epoch" in resumed.stderr
    a = torch.load(tmp_path / "straight" / "weights.pt", weights_only=True)
    b = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert history.read_text().count("\n") == 4
