"""The packaged archive served by a real Multi Model Server on loopback."""

import json
import shutil
import time
import urllib.error
import urllib.request

import pytest
from insectml.serving.mms import ServerConfig, _alive, predict, start, stop

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(nf_test_run, repo_root, tmp_path_factory, run_cli):
    cwd, _ = nf_test_run
    state = tmp_path_factory.mktemp("mms")
    store = state / "store"
    store.mkdir()
    shutil.copy(cwd / "results/wingbeat/archive/wingbeat.mar", store)
    done = run_cli(
        "package", "wingbeat", "--model", cwd / "results/wingbeat/models/gru", "--name", "wingbeat_gru", "--out", store
    )
    assert done.returncode == 0, done.stderr
    cfg = ServerConfig(
        model_store=store,
        models={"wingbeat": "wingbeat.mar", "wingbeat_gru": "wingbeat_gru.mar"},
        state_dir=state,
        port=free_port(),
        management_port=free_port(),
    )
    probe = repo_root / "data/wingbeat/recordings/aedes_aegypti/aedes_aegypti_0000.wav"
    info = start(cfg, probe=("wingbeat", probe.read_bytes()), timeout=240)
    yield cfg, info
    stop(state)


def test_prediction_returns_species_probabilities(server, repo_root):
    cfg, _ = server
    wav = repo_root / "data/wingbeat/recordings/culex_pipiens/culex_pipiens_0003.wav"
    answer = predict(cfg.inference_url, "wingbeat", wav.read_bytes())
    probs = answer["probabilities"]
    classes = (repo_root / "data/wingbeat/classes.txt").read_text().split()
    assert set(probs) == set(classes) and abs(sum(probs.values()) - 1) < 1e-3


def test_bad_body_is_400_and_server_keeps_serving(server, repo_root):
    cfg, _ = server
    with pytest.raises(urllib.error.HTTPError) as info:
        predict(cfg.inference_url, "wingbeat", b"definitely not a wav")
    assert info.value.code == 400
    assert "not a readable WAV" in json.loads(info.value.read())["error"]
    wav = repo_root / "data/wingbeat/recordings/aedes_albopictus/aedes_albopictus_0002.wav"
    assert "probabilities" in predict(cfg.inference_url, "wingbeat", wav.read_bytes())


def test_binds_loopback_only(server):
    cfg, _ = server
    props = (cfg.state_dir / "config.properties").read_text()
    assert f"inference_address=http://127.0.0.1:{cfg.port}" in props


def test_stop_ends_every_server_process(nf_test_run, repo_root, tmp_path):
    cwd, _ = nf_test_run
    cfg = ServerConfig(
        model_store=cwd / "results/wingbeat/archive",
        models={"wingbeat": "wingbeat.mar"},
        state_dir=tmp_path,
        port=free_port(),
        management_port=free_port(),
    )
    info = start(cfg, timeout=240)
    import psutil

    pids = [info["pid"], info["wrapper_pid"], *[c.pid for c in psutil.Process(info["pid"]).children(recursive=True)]]
    assert stop(tmp_path)
    time.sleep(0.5)
    assert not any(_alive(p) for p in pids)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{cfg.inference_url}/ping", timeout=2)


def test_served_net_uses_the_training_front_end(server, nf_test_run, repo_root, run_cli):
    cfg, _ = server
    cwd, _ = nf_test_run
    wav = repo_root / "data/wingbeat/recordings/anopheles_gambiae/anopheles_gambiae_0005.wav"
    served = predict(cfg.inference_url, "wingbeat_gru", wav.read_bytes())["probabilities"]
    local = run_cli("wingbeat", "predict", "--model", cwd / "results/wingbeat/models/gru", wav)
    expected = json.loads(local.stdout)["probabilities"]
    assert served.keys() == expected.keys()
    assert all(abs(served[k] - expected[k]) < 1e-5 for k in expected)
