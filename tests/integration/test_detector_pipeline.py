"""The detector family's two stages through the real Nextflow engine (-profile test),
and its archive served by a real Multi Model Server on loopback."""

import concurrent.futures
import json
import urllib.error

import pytest
from insectml.serving.mms import ServerConfig, predict, register, start, stop

from .conftest import free_port

pytestmark = pytest.mark.integration


def test_two_stage_detector_runs_and_publishes(detector_run):
    out = detector_run
    for stage in ("generic", "target"):
        metrics = json.loads((out / "evaluation" / stage / "metrics.json").read_text())
        assert 0 <= metrics["map_50"] <= 1 and metrics["split"] == "test"
        assert (out / "models" / stage / "lineage.json").is_file()
        assert (out / "archive" / f"detector_{stage}.mar").is_file()
        assert (out / "archive" / f"detector_{stage}.torchscript.pt").is_file()
    report = json.loads((out / "pseudo" / "pseudo_report.json").read_text())
    assert report["species_images"] == 60 and report["gained_boxes"] + report["dropped"] == 60
    assert (out / "pseudo" / "pseudo_sly" / "meta.json").is_file()
    dataset = json.loads((out / "data" / "dataset.json").read_text())
    assert dataset["family"] == "detector" and "stink_bug" in dataset["classes"]


def package_unthresholded(run_cli, model, name, store):
    """``store/<name>.mar`` of a model folder, exported and packaged at score threshold 0
    (a one-epoch model scores low)."""
    done = run_cli("detector", "export", "--model", model, "--name", name, "--out", store)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run_cli(
        "package", "detector", "--model", model, "--torchscript", store / f"{name}.torchscript.pt",
        "--name", name, "--score-threshold", "0", "--out", store,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture(scope="module")
def detector_server(detector_run, run_cli, tmp_path_factory, repo_root):
    """MMS with the target detector re-exported at score threshold 0 (a one-epoch model
    scores low), loaded at start-up, and the same archive registered with batching."""
    state = tmp_path_factory.mktemp("mms-detector")
    store = state / "store"
    package_unthresholded(run_cli, detector_run / "models" / "target", "target", store)
    cfg = ServerConfig(
        model_store=store,
        models={"target": "target.mar"},
        state_dir=state,
        port=free_port(),
        management_port=free_port(),
    )
    probe = next((repo_root / "data/detector/insects_sly").glob("*/img/*"))
    start(cfg, probe=("target", probe.read_bytes()), timeout=300)
    register(cfg.management_url, "target.mar", "target_batched", batch_size=4, max_batch_delay_ms=500)
    yield cfg
    stop(state)


def demo_images(repo_root, n):
    return sorted((repo_root / "data/detector/insects_sly").glob("*/img/*"))[:n]


def test_served_detector_returns_boxes_like_the_model(detector_server, detector_run, repo_root, run_cli):
    image = demo_images(repo_root, 1)[0]
    served = predict(detector_server.inference_url, "target", image.read_bytes(), content_type="image/jpeg")
    local = run_cli(
        "detector", "predict", "--model", detector_run / "models" / "target", "--score-threshold", "0", image
    )
    assert local.returncode == 0, local.stderr[-2000:]
    expected = json.loads(local.stdout)["detections"]
    assert served and len(served) == len(expected)
    classes = json.loads((detector_run / "models" / "target" / "labels.json").read_text())
    assert all(set(got) == {"label", "score", "box"} and got["label"] in classes for got in served)

    def same(a, b):
        return (
            a["label"] == b["label"]
            and abs(a["score"] - b["score"]) < 1e-3
            and all(abs(x - y) < 1.0 for x, y in zip(a["box"], b["box"], strict=True))
        )

    # A one-epoch model ties many scores, so equal detections may come in another order
    # (TorchScript on 1 thread vs eager): match the best ones as sets.
    assert all(any(same(got, want) for want in expected) for got in served[:10])


def test_batched_requests_and_a_bad_body(detector_server, repo_root):
    url = detector_server.inference_url
    bodies = [p.read_bytes() for p in demo_images(repo_root, 3)] + [b"\x89PNG\r\n\x1a\n truncated"]

    def send(body):
        try:
            return 200, predict(url, "target_batched", body, content_type="image/png")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(send, bodies))
    assert [code for code, _ in answers] == [200, 200, 200, 400]
    assert all(isinstance(a, list) and a for _, a in answers[:3])
    assert "not a readable image" in answers[3][1]["error"]
    # the server keeps serving
    assert predict(url, "target", bodies[0], content_type="image/jpeg")


def test_served_detections_name_the_classes_as_the_export_wrote_them(detector_server, format_runs, run_cli):
    """A model trained on a Roboflow YOLO export with awkward class names ("Halyomorpha halys
    (Stål, 1855)", "sp. 1", "Ant" and "ant", …), packaged and registered with the real MMS:
    every served label is one of the export's names, byte for byte."""
    export, out, _ = format_runs["yolo"]
    package_unthresholded(run_cli, out / "models" / "generic", "odd_names", detector_server.model_store)
    register(detector_server.management_url, "odd_names.mar", "odd_names")
    boxed = next(p for p in export.images if export.boxes[p])
    body = (export.input_dir / boxed).read_bytes()
    served = predict(detector_server.inference_url, "odd_names", body, content_type="image/jpeg")
    assert served and {d["label"] for d in served} <= set(export.classes)
