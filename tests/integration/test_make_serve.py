"""README's "Serving" steps as a new user types them: ``make serve`` in a clone whose
``make demo`` left ``results/wingbeat/archive/wingbeat.mar`` (OUTDIR is the relative
default, ``results``), a prediction, then ``make serve-stop``."""

import json
import shutil
import subprocess

import psutil
import pytest
from insectml.serving.mms import predict, stop

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served(nf_test_run, repo_root, tool_env, tmp_path_factory):
    """A clone-like folder (the repository's files, linked) with the demo's archive in
    ``results/``, after ``make serve``: (folder, make, the CompletedProcess)."""
    cwd, _ = nf_test_run
    clone = tmp_path_factory.mktemp("clone")
    for name in ("Makefile", "bin", "lib", "env", "data"):
        (clone / name).symlink_to(repo_root / name)
    (clone / "results/wingbeat/archive").mkdir(parents=True)
    shutil.copy(cwd / "results/wingbeat/archive/wingbeat.mar", clone / "results/wingbeat/archive")
    ports = [f"PORT={free_port()}", f"MGMT_PORT={free_port()}"]

    def make(target: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["make", target, *ports], cwd=clone, env=tool_env, capture_output=True, text=True, timeout=600
        )

    try:
        yield clone, make, make("serve")
    finally:
        if (clone / "results/serving/server.json").is_file():
            stop(clone / "results/serving")  # by the PIDs (and start times) 'make serve' recorded


def test_make_serve_answers_a_prediction(served, repo_root):
    clone, _, done = served
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    url = json.loads((clone / "results/serving/server.json").read_text())["inference"]
    wav = repo_root / "data/wingbeat/recordings/culex_pipiens/culex_pipiens_0001.wav"
    assert "probabilities" in predict(url, "wingbeat", wav.read_bytes(), content_type="audio/wav")


def test_make_serve_stop_ends_every_server_process(served):
    clone, make, started = served
    assert started.returncode == 0, started.stderr[-2000:]
    info = json.loads((clone / "results/serving/server.json").read_text())
    java = psutil.Process(info["pid"])
    procs = [java, *java.children(recursive=True), psutil.Process(info["wrapper_pid"])]
    done = make("serve-stop")
    assert done.returncode == 0 and "stopped" in done.stdout, done.stderr
    _, alive = psutil.wait_procs(procs, timeout=10)
    assert [p.pid for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
