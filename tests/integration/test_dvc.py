"""DVC with real remotes: the bundled one of this repo, and a push/pull round trip."""

import filecmp
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.integration


def run(cmd, cwd, env):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{cmd}: {done.stdout}{done.stderr}"
    return done.stdout


def test_bundled_remote_holds_the_pinned_data(repo_root, tool_env):
    out = run(["dvc", "status", "--cloud", "data.dvc"], repo_root, tool_env)
    assert "in sync" in out


def test_push_then_pull_from_a_local_remote(tmp_path, tool_env, tiny_wingbeat):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    run(["git", "init", "-q"], repo, tool_env)
    run(["dvc", "init", "-q"], repo, tool_env)
    run(["dvc", "remote", "add", "-d", "store", str(remote)], repo, tool_env)
    shutil.copytree(tiny_wingbeat, repo / "data")
    run(["dvc", "add", "-q", "data"], repo, tool_env)
    run(["dvc", "push", "-q"], repo, tool_env)
    shutil.rmtree(repo / "data")
    shutil.rmtree(repo / ".dvc" / "cache")
    run(["dvc", "pull", "-q"], repo, tool_env)
    cmp = filecmp.dircmp(tiny_wingbeat, repo / "data")
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert (repo / "data" / "labels.csv").read_text() == (tiny_wingbeat / "labels.csv").read_text()
