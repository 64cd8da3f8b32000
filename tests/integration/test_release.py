"""Release and deploy with a real git repository, GTO tags and a real Multi Model Server:
two releases of one model (the second gated: refused when worse, tagged when better), a
deployment that replaces the served version, a broken archive that rolls back, and
--rollback. The candidates are the -profile test run's wingbeat results with the verdict
"beats the baseline" (whether the test run's model does is up to its tiny data); the gate's
"worse", "below the baseline" and "better" candidates are copies with edited metrics."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.error
from pathlib import Path

import pytest
from insectml.serving.mms import ServerConfig, predict, start, stop

from .conftest import free_port

pytestmark = pytest.mark.integration


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout


def commit(repo: Path, text: str) -> None:
    (repo / "CHANGES").write_text(text)
    git(repo, "add", "CHANGES")
    git(repo, "commit", "-q", "-m", text)


def candidate(
    results: Path, dest: Path, change: float = 0.0, extra_label: str | None = None, beats_baseline: bool = True
) -> Path:
    """A copy of a wingbeat results folder, its best model's test macro-F1 moved by ``change``,
    the comparison's verdict set to ``beats_baseline``."""
    shutil.copytree(results, dest)
    path = dest / "comparison" / "comparison.json"
    comparison = json.loads(path.read_text())
    difference = 0.1 if beats_baseline else -0.02
    comparison["verdict"] |= {
        "beats_baseline": beats_baseline,
        "difference": difference,
        "low": difference - 0.05,
        "high": difference + 0.05,
        "sentence": f"test verdict: {difference:+.2f}",
    }
    path.write_text(json.dumps(comparison))
    best = (dest / "comparison" / "best.txt").read_text().strip()
    path = dest / "evaluation" / best / "metrics.json"
    metrics = json.loads(path.read_text())
    metrics["macro_f1"] = min(1.0, max(0.0, metrics["macro_f1"] + change))
    path.write_text(json.dumps(metrics))
    if extra_label:
        labels = dest / "models" / best / "labels.json"
        labels.write_text(json.dumps([*json.loads(labels.read_text()), extra_label]))
    return dest


@pytest.fixture(scope="module")
def project(nf_test_run, tmp_path_factory):
    repo = tmp_path_factory.mktemp("project")
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.org")
    git(repo, "config", "user.name", "ci")
    commit(repo, "first")
    results = candidate(nf_test_run[0] / "results" / "wingbeat", repo.parent / f"{repo.name}-results")
    return repo, repo.parent / f"{repo.name}-store", results


def release(run_cli, repo: Path, store: Path, results: Path, *extra: str):
    return run_cli("release", results, "--name", "wingbeat", "--repo", repo, "--store", store, *extra, cwd=repo)


@pytest.fixture(scope="module")
def released(project, run_cli, tmp_path_factory):
    """v1.0.0, then (new commit) a worse, a relabelled and a better candidate, then a dirty tree."""
    repo, store, results = project
    tmp = tmp_path_factory.mktemp("candidates")
    out = {"first": release(run_cli, repo, store, results, "--stage", "production")}
    commit(repo, "second")
    out["worse"] = release(run_cli, repo, store, candidate(results, tmp / "worse", -0.2))
    out["tags_after_worse"] = git(repo, "tag", "--list").split()
    below = candidate(results, tmp / "below", +0.05, beats_baseline=False)
    out["below"] = release(run_cli, repo, store, below)
    out["tags_after_below"] = git(repo, "tag", "--list").split()
    out["relabelled"] = release(run_cli, repo, store, candidate(results, tmp / "relabelled", 0.0, "aedes_vexans"))
    out["better"] = release(run_cli, repo, store, candidate(results, tmp / "better", +0.05), "--stage", "production")
    (repo / "CHANGES").write_text("uncommitted")
    out["dirty"] = release(run_cli, repo, store, results)
    git(repo, "checkout", "--", "CHANGES")
    return out


def test_release_gate_and_tags(released, project, run_cli):
    repo, store, results = project
    first = released["first"]
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["version"] == "v1.0.0"
    card = json.loads((store / "wingbeat" / "v1.0.0" / "model_card.json").read_text())
    assert card["lineage"]["code"]["commit"] and card["data"]["dvc_md5"] and card["seed"] == 42
    assert (store / "wingbeat" / "v1.0.0" / "wingbeat.mar").is_file()
    assert "## Intended use" in (store / "wingbeat" / "v1.0.0" / "model_card.md").read_text()

    worse = released["worse"]
    assert worse.returncode == 2 and worse.stderr.count("\n") == 1 and "quality gate failed" in worse.stderr
    assert "wingbeat@v1.0.1" not in released["tags_after_worse"] and not (store / "wingbeat" / "v1.0.1").exists()
    assert released["relabelled"].returncode == 2 and "--major" in released["relabelled"].stderr
    below = released["below"]
    assert below.returncode == 2 and below.stderr.count("\n") == 1
    assert "does not beat its baseline" in below.stderr and "--allow-below-baseline" in below.stderr
    assert released["tags_after_below"] == released["tags_after_worse"]

    better = released["better"]
    assert better.returncode == 0, better.stderr
    assert json.loads(better.stdout)["version"] == "v1.1.0"  # a better headline metric: minor
    tags = git(repo, "tag", "--list").split()
    assert {"wingbeat@v1.0.0", "wingbeat@v1.1.0", "wingbeat#production#1", "wingbeat#production#2"} <= set(tags)
    assert git(repo, "cat-file", "-t", "wingbeat@v1.1.0").strip() == "tag"  # annotated

    dirty = released["dirty"]
    assert dirty.returncode == 2 and "uncommitted changes" in dirty.stderr

    listed = run_cli("models", "--repo", repo, "--store", store, "--json", cwd=repo)
    rows = {r["version"]: r for r in json.loads(listed.stdout)}
    assert rows["v1.1.0"]["stages"] == ["production"] and rows["v1.0.0"]["stages"] == []
    assert rows["v1.1.0"]["headline"]["macro_f1"] > rows["v1.0.0"]["headline"]["macro_f1"]


@pytest.fixture(scope="module")
def mms(project, tmp_path_factory):
    state = tmp_path_factory.mktemp("mms-deploy")
    served = state / "served"
    served.mkdir()
    cfg = ServerConfig(model_store=served, models={}, state_dir=state, port=free_port(), management_port=free_port())
    start(cfg, timeout=240)
    yield cfg
    stop(state)


def deploy(run_cli, project, cfg, sample: Path, *args: str):
    repo, store, _ = project
    return run_cli(
        "deploy",
        *args,
        "--mms",
        cfg.management_url,
        "--inference",
        cfg.inference_url,
        "--mms-store",
        cfg.model_store,
        "--store",
        store,
        "--sample",
        sample,
        "--repo",
        repo,
        cwd=repo,
    )


def served(cfg) -> set[str]:
    import urllib.request

    with urllib.request.urlopen(f"{cfg.management_url}/models", timeout=10) as r:
        return {m["modelName"] for m in json.load(r)["models"]}


def test_deploy_replace_broken_archive_and_rollback(released, project, mms, run_cli, repo_root, tmp_path):
    cfg = mms
    repo, store, results = project
    wav = repo_root / "data/wingbeat/recordings/culex_pipiens/culex_pipiens_0003.wav"

    one = deploy(run_cli, project, cfg, wav, "wingbeat@v1.0.0")
    assert one.returncode == 0, one.stderr
    assert served(cfg) == {"wingbeat_v1_0_0"}
    two = deploy(run_cli, project, cfg, wav, "wingbeat@v1.1.0")
    assert two.returncode == 0, two.stderr
    assert json.loads(two.stdout)["replaced"] == ["v1.0.0"] and served(cfg) == {"wingbeat_v1_1_0"}
    assert "probabilities" in predict(cfg.inference_url, "wingbeat_v1_1_0", wav.read_bytes())

    # a release whose archive is broken: registration fails, v1.1.0 keeps serving
    commit(repo, "third")
    broken = release(run_cli, repo, store, candidate(results, tmp_path / "third", +0.05))  # as good: a patch
    assert broken.returncode == 0, broken.stderr
    version = json.loads(broken.stdout)["version"]
    assert version == "v1.1.1"
    mar = store / "wingbeat" / version / "wingbeat.mar"
    mar.write_bytes(mar.read_bytes()[:2000])
    failed = deploy(run_cli, project, cfg, wav, f"wingbeat@{version}")
    assert failed.returncode == 2 and "v1.1.0 still serves" in failed.stderr, failed.stderr
    assert failed.stderr.count("\n") == 1
    assert served(cfg) == {"wingbeat_v1_1_0"}
    assert "probabilities" in predict(cfg.inference_url, "wingbeat_v1_1_0", wav.read_bytes())

    back = deploy(run_cli, project, cfg, wav, "wingbeat", "--rollback")
    assert back.returncode == 0, back.stderr
    assert "v1.1.0 -> v1.0.0" in back.stdout and served(cfg) == {"wingbeat_v1_0_0"}
    assert "probabilities" in predict(cfg.inference_url, "wingbeat_v1_0_0", wav.read_bytes())
    with pytest.raises(urllib.error.HTTPError):
        predict(cfg.inference_url, "wingbeat_v1_1_0", wav.read_bytes())
