"""Training killed after an epoch resumes from its checkpoint and ends where an
uninterrupted run ends: in its own folder (--resume) and, like a retried cluster job,
in a new folder with the checkpoint kept elsewhere (--checkpoint-dir)."""

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


@pytest.fixture(scope="module")
def straight(repo_root, tool_env, features, tmp_path_factory):
    """Weights of a run that never stopped."""
    out = tmp_path_factory.mktemp("straight")
    done = subprocess.run(
        train_args(repo_root, features, out), env=tool_env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    return torch.load(out / "weights.pt", weights_only=True)


def kill_after_first_epoch(args, tool_env, history):
    proc = subprocess.Popen(args, env=tool_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (history.is_file() and history.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert history.read_text().count("\n") < 4


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_killed_then_resumed_equals_uninterrupted(repo_root, tool_env, features, straight, tmp_path):
    out = tmp_path / "killed"
    history = out / "history.jsonl"
    kill_after_first_epoch(train_args(repo_root, features, out), tool_env, history)

    resumed = subprocess.run(
        train_args(repo_root, features, out, "--resume"), env=tool_env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint at epoch" in resumed.stderr
    assert same_weights(straight, torch.load(out / "weights.pt", weights_only=True))
    assert history.read_text().count("\n") == 4


def test_retry_in_a_new_folder_resumes_from_the_checkpoint_dir(repo_root, tool_env, features, straight, tmp_path):
    ckpt = tmp_path / "checkpoints"
    first = tmp_path / "attempt1"
    kill_after_first_epoch(
        train_args(repo_root, features, first, "--checkpoint-dir", ckpt), tool_env, first / "history.jsonl"
    )
    assert len(list(ckpt.glob("*/last.pt"))) == 1

    changed = subprocess.run(
        train_args(repo_root, features, tmp_path / "other", "--checkpoint-dir", ckpt, "--epochs", "1"),
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert changed.returncode == 0, changed.stderr
    assert "starting at epoch 1" in changed.stderr  # other settings: not this checkpoint

    second = tmp_path / "attempt2"
    resumed = subprocess.run(
        train_args(repo_root, features, second, "--checkpoint-dir", ckpt),
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from checkpoint at epoch" in resumed.stderr
    assert same_weights(straight, torch.load(second / "weights.pt", weights_only=True))
    assert (second / "history.jsonl").read_text().count("\n") == 4
    again = subprocess.run(  # a retry after the last epoch trains nothing and ends the same
        train_args(repo_root, features, tmp_path / "attempt3", "--checkpoint-dir", ckpt),
        env=tool_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert "resumed from checkpoint at epoch 4" in again.stderr and "epoch 4: loss" not in again.stderr
    assert same_weights(straight, torch.load(tmp_path / "attempt3" / "weights.pt", weights_only=True))
