"""The packaged archive served by a real Multi Model Server on loopback."""

import hashlib
import json
import shutil
import time
import urllib.error
import urllib.request

import pytest
from insectml.serving.mms import ServerConfig, _alive, predict, start, stop
from insectml.serving.predlog import LogSettings

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
        # inputs and a summary on every line: the loop test below feeds monitor and select with them
        prediction_log=LogSettings(inputs=True, summary_share=1.0),
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


def test_a_prediction_is_logged_in_the_state_folder(server, repo_root):
    """One line of the prediction log's schema, for that body, with the answer given."""
    cfg, _ = server
    body = (repo_root / "data/wingbeat/recordings/culex_pipiens/culex_pipiens_0007.wav").read_bytes()
    answer = predict(cfg.inference_url, "wingbeat", body, content_type="audio/wav")
    logged = (cfg.prediction_log_dir / "predictions.jsonl").read_text().splitlines()
    (line,) = [x for x in map(json.loads, logged) if x["input"]["sha256"] == hashlib.sha256(body).hexdigest()]
    keys = {"time", "family", "model", "version", "input", "answer", "summary", "top_score", "unknown", "input_file"}
    assert (set(line), line["family"], line["answer"], line["input"]["media_type"]) == (
        keys,
        "wingbeat",
        answer,
        "audio/wav",
    )


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
    props = (cfg.state_dir / "config.properties").read_text().splitlines()
    addresses = [line for line in props if "_address=" in line]
    assert addresses == [
        f"inference_address=http://127.0.0.1:{cfg.port}",
        f"management_address=http://127.0.0.1:{cfg.management_port}",
    ]


def test_management_api_keeps_its_own_address_when_inference_moves(nf_test_run, tmp_path):
    """--host moves the inference API only: with inference on 127.0.0.2 (another loopback
    address), the management API answers on 127.0.0.1 and not on 127.0.0.2."""
    import socket

    cwd, _ = nf_test_run
    cfg = ServerConfig(
        model_store=cwd / "results/wingbeat/archive",
        models={},
        state_dir=tmp_path,
        host="127.0.0.2",
        port=free_port(),
        management_port=free_port(),
    )
    start(cfg, timeout=240)
    try:
        urllib.request.urlopen(f"http://127.0.0.2:{cfg.port}/ping", timeout=5).close()
        urllib.request.urlopen(f"http://127.0.0.1:{cfg.management_port}/models", timeout=5).close()
        with pytest.raises(OSError), socket.create_connection(("127.0.0.2", cfg.management_port), timeout=5):
            pass
    finally:
        stop(tmp_path)


def test_a_body_over_the_request_size_limit_gets_413_and_the_server_keeps_serving(server, repo_root):
    """MMS answers from the declared Content-Length, before the body is sent (sending it
    all would meet a closed connection)."""
    import http.client

    cfg, _ = server
    conn = http.client.HTTPConnection("127.0.0.1", cfg.port, timeout=30)
    try:
        conn.putrequest("POST", "/predictions/wingbeat")
        conn.putheader("Content-Type", "audio/wav")
        conn.putheader("Content-Length", str(cfg.max_request_size + 1))
        conn.endheaders()
        conn.send(b"RIFF")
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    wav = repo_root / "data/wingbeat/recordings/aedes_albopictus/aedes_albopictus_0002.wav"
    assert "probabilities" in predict(cfg.inference_url, "wingbeat", wav.read_bytes())


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


def test_the_log_feeds_monitor_and_select(server, nf_test_run, repo_root, run_cli, tmp_path):
    """The loop on a real server: its log (with inputs) is what 'insectml monitor' compares
    with the release's data and what 'insectml select' picks samples from."""
    cfg, _ = server
    cwd, _ = nf_test_run
    for wav in sorted((repo_root / "data/wingbeat/recordings").glob("*/*_001[0-9].wav"))[:30]:
        predict(cfg.inference_url, "wingbeat", wav.read_bytes(), content_type="audio/wav")
    log = cfg.prediction_log_dir
    results = cwd / "results/wingbeat"
    best = (results / "comparison/best.txt").read_text().strip()  # what wingbeat.mar holds
    monitored = run_cli("monitor", log, "--reference", results, "--model", best, "--out", tmp_path / "monitor")
    chosen = run_cli(
        "select", log, "--model", results / "models" / best, "--budget", "5", "--strategy", "hybrid",
        "--out", tmp_path / "round1",
    )  # fmt: skip
    summary = json.loads((tmp_path / "monitor/monitor.json").read_text()) if monitored.returncode in (0, 3) else {}
    selection = json.loads((tmp_path / "round1/selection.json").read_text()) if chosen.returncode == 0 else {}
    assert (monitored.returncode in (0, 3), bool(summary), chosen.returncode, len(selection.get("items", []))) == (
        True,
        True,
        0,
        5,
    ), monitored.stderr + chosen.stderr
