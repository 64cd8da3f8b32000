#!/usr/bin/env python3
"""Served models under load: a real Multi Model Server on loopback, valid and malformed bodies.

One MMS on 127.0.0.1 serves each family's archive (``--archive FAMILY=PATH.mar``, or, without
it, small archives built here: a features model trained on 20 demo recordings per species, an
untrained SSDlite detector, an untrained few-shot embedder with a random gallery). For each
model in turn, ``--clients`` threads POST for ``--seconds``: demo samples of the family, and
every ``--malformed-every``-th request one malformed body in turn (empty, garbage, a valid body
sent as text/plain and as a form, a sample cut in half, a decompression-bomb PNG, a 10 MB and a
50 MB body; each big one at most ``--big-repeats`` times). The form is shown, not judged: MMS's
Java front end form-decodes it before any handler runs. Prints per model: valid requests
served and failed (target 0), p50/p99 latency and valid requests/s, the status codes of each
malformed kind (each must be 4xx), and whether the server still answers afterwards. Exit 1 if
any valid request failed, a malformed one got anything but 4xx, or the server stopped answering.
Loopback only; bounded in time (models × seconds) and in the count of big bodies.

The prediction log's cost (target: p50 with the log ≤ 1.05 × without), measured twice, each
side by side for ``--overhead-seconds`` per model. Through MMS: two more servers with the same
archives keep no log, and ``--clients`` clients per server send valid requests to the three
at once (whatever else the machine does falls on all alike); the ratio of the two servers
without a log shows how much two servers differ anyway. In the handler: the family's handler
on the archive's model, twice in this process, with and without the log, called in turn as
MMS calls it: the worker's own cost, free of that noise. Ratios are printed, not judged.

    python benchmarks/serve_load.py [--archive wingbeat=results/wingbeat/archive/wingbeat.mar ...]
        [--clients 8] [--seconds 60] [--overhead-seconds 30]
"""

from __future__ import annotations

import argparse
import collections
import http.client
import io
import itertools
import json
import os
import random
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

FAMILIES = ("wingbeat", "detector", "fewshot")
# Malformed kinds answered before any handler runs, by MMS 1.1.11 itself: shown, not judged.
KNOWN = {
    "form content type": "MMS's Java front end form-decodes the body and may answer 500 itself",
}
HOST = "127.0.0.1"
CHUNK = 256 * 1024
BIG = 10 * 2**20  # bodies from this size on are sent at most --big-repeats times each


def free_port() -> int:
    for port in random.sample(range(20000, 30000), 200):  # MMS rejects some high ports
        with socket.socket() as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port")


# -- HTTP ------------------------------------------------------------------------------------


def post(port: int, path: str, body: bytes, content_type: str, timeout: float = 60) -> tuple[int | str, bytes]:
    """(HTTP status, response body). The body goes in chunks, and sending stops as soon as
    the server answers: MMS refuses an oversized body (413) from its headers and closes the
    connection, which would otherwise break the send before the answer is read."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        view = memoryview(body)
        for start in range(0, len(body), CHUNK):
            wait = 0.2 if start == 0 and len(body) > CHUNK else 0
            if select.select([conn.sock], [], [], wait)[0]:
                break
            try:
                conn.sock.sendall(view[start : start + CHUNK])
            except (BrokenPipeError, ConnectionResetError):
                break
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__, b""
    finally:
        conn.close()


def get(port: int, path: str) -> int | str:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def content_type(path: Path) -> str:
    return {".wav": "audio/wav", ".png": "image/png"}.get(path.suffix.lower(), "image/jpeg")


# -- bodies ----------------------------------------------------------------------------------


def samples(family: str) -> list[Path]:
    """Demo inputs the family's model answers."""
    patterns = {
        "wingbeat": "data/wingbeat/recordings/*/*.wav",
        "detector": "data/detector/insects_sly/insects/img/*.jpg",
        "fewshot": "data/fewshot/images/*/*.png",
    }
    found = sorted(ROOT.glob(patterns[family]))[::7][:20]
    if not found:
        raise SystemExit(f"no {patterns[family]} under {ROOT}: run 'make data' first")
    return found


def answered(family: str, status: int | str, body: bytes) -> bool:
    """A valid request's answer has the family's shape."""
    if status != 200:
        return False
    try:
        value = json.loads(body)
    except ValueError:
        return False
    if family == "wingbeat":
        return isinstance(value, dict) and "probabilities" in value
    if family == "detector":
        return isinstance(value, list)
    return isinstance(value, dict) and "label" in value


def malformed(sample: Path) -> dict[str, tuple[bytes, str]]:
    """kind → (body, Content-Type): every body must get a 4xx."""
    from PIL import Image

    good, kind = sample.read_bytes(), content_type(sample)
    bomb = io.BytesIO()
    Image.new("1", (20000, 20000)).save(bomb, format="PNG")  # ~50 kB that decode to 400 Mpx
    rng = random.Random(0)
    return {
        "empty": (b"", kind),
        "garbage": (rng.randbytes(4096), kind),
        "text/plain content type": (good, "text/plain"),
        "form content type": (good, "application/x-www-form-urlencoded"),
        f"truncated {sample.suffix.lstrip('.').upper()}": (good[: len(good) // 2], kind),
        "decompression-bomb PNG": (bomb.getvalue(), "image/png"),
        "10 MB body": (rng.randbytes(10 * 2**20), kind),
        "50 MB body": (rng.randbytes(50 * 2**20), kind),
    }


# -- load ------------------------------------------------------------------------------------


def load(port: int, name: str, family: str, args: argparse.Namespace) -> bool:
    """Drive one model; print its figures; True if it met every target."""
    valid = [(p.read_bytes(), content_type(p)) for p in samples(family)]
    bad = malformed(samples(family)[0])
    kinds = itertools.cycle(bad)
    sent_big: collections.Counter = collections.Counter()
    lock = threading.Lock()
    latencies: list[float] = []
    failed: list[str] = []
    statuses: dict[str, collections.Counter] = {k: collections.Counter() for k in bad}
    path = f"/predictions/{name}"
    deadline = time.monotonic() + args.seconds

    def next_malformed() -> str | None:
        with lock:
            for _ in range(len(bad)):
                kind = next(kinds)
                if len(bad[kind][0]) < BIG or sent_big[kind] < args.big_repeats:
                    sent_big[kind] += len(bad[kind][0]) >= BIG
                    return kind
        return None

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for n in itertools.count(1):
            if time.monotonic() >= deadline:
                return
            kind = next_malformed() if n % args.malformed_every == 0 else None
            if kind is not None:
                status, _ = post(port, path, *bad[kind])
                with lock:
                    statuses[kind][status] += 1
                continue
            body, ctype = rng.choice(valid)
            tic = time.perf_counter()
            status, answer = post(port, path, body, ctype)
            took = time.perf_counter() - tic
            with lock:
                if answered(family, status, answer):
                    latencies.append(took)
                else:
                    failed.append(f"{status} {answer[:120]!r}")

    start = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start

    ms = sorted(x * 1e3 for x in latencies)
    p50 = statistics.median(ms) if ms else float("nan")
    p99 = ms[min(len(ms) - 1, int(0.99 * len(ms)))] if ms else float("nan")
    print(f"{name} ({family}): {args.clients} clients for {elapsed:.0f} s")
    print(
        f"  valid: {len(ms)} served, {len(failed)} failed; p50 {p50:.0f} ms, p99 {p99:.0f} ms; "
        f"{len(ms) / elapsed:.1f} requests/s"
    )
    for why, count in collections.Counter(failed).most_common(3):
        print(f"    failed ×{count}: {why}")
    not_4xx = []
    for kind, counts in statuses.items():
        shown = ", ".join(f"{s}×{c}" for s, c in sorted(counts.items(), key=str)) or "not sent"
        bad_codes = [s for s in counts if not (isinstance(s, int) and 400 <= s < 500)]
        if kind in KNOWN:
            note = f"  (not judged: {KNOWN[kind]})" if bad_codes else ""
        else:
            not_4xx += [f"{kind}: {s}" for s in bad_codes or ([] if counts else ["not sent"])]
            note = "  <- not 4xx" if bad_codes or not counts else ""
        print(f"  malformed {kind:<24} {shown}{note}")
    ping = get(port, "/ping")
    after, answer = post(port, path, *valid[0])
    still = ping == 200 and answered(family, after, answer)
    print(f"  afterwards: /ping {ping}, a valid request {after}{'' if still else '  <- the server stopped answering'}")
    return not failed and not not_4xx and still


def valid_latencies(ports: dict[str, int], name: str, family: str, clients: int, seconds: float) -> dict:
    """side → seconds per valid request answered: for ``seconds``, ``clients`` threads per
    server of ``ports`` (side → port) post demo samples to it, all servers at once, so that
    whatever else the machine does falls on every side alike. Each client keeps to one server:
    clients going round the servers would queue up at the slowest one and magnify any
    difference between them many times."""
    valid = [(p.read_bytes(), content_type(p)) for p in samples(family)]
    lock = threading.Lock()
    latencies: dict[str, list[float]] = {side: [] for side in ports}
    deadline = time.monotonic() + seconds

    def client(side: str, seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            body, ctype = rng.choice(valid)
            tic = time.perf_counter()
            status, answer = post(ports[side], f"/predictions/{name}", body, ctype)
            took = time.perf_counter() - tic
            if answered(family, status, answer):
                with lock:
                    latencies[side].append(took)

    threads = [threading.Thread(target=client, args=(side, i)) for side in ports for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


def warm_up(port: int, name: str, family: str) -> None:
    """A few requests, so that no measurement holds a worker's first (compiling) ones."""
    for path in samples(family)[:3]:
        post(port, f"/predictions/{name}", path.read_bytes(), content_type(path), timeout=300)


def log_overhead(ports: dict[str, int], name: str, family: str, log_dir: Path, args: argparse.Namespace) -> dict:
    """Through MMS: p50 latency of valid requests to the servers of ``ports`` ("on": with the
    log; "off", "off2": two without, whose ratio shows how much two servers differ anyway),
    loaded side by side; prints them and returns side → p50 (ms)."""
    from insectml.serving.predlog import LOG_NAME

    def logged() -> int:
        return sum(
            sum(1 for line in path.open() if f'"family":"{family}"' in line) for path in log_dir.glob(f"{LOG_NAME}*")
        )

    before = logged()
    runs = valid_latencies(ports, name, family, args.clients, args.overhead_seconds)
    p50 = {side: statistics.median(x) * 1e3 if x else float("nan") for side, x in runs.items()}
    print(
        f"  through MMS, servers side by side for {args.overhead_seconds:g} s: p50 {p50['off']:.1f} ms without the "
        f"log, {p50['on']:.1f} ms with it: ratio {p50['on'] / p50['off']:.3f}; two servers without it: "
        f"{p50['off2'] / p50['off']:.3f} ({', '.join(f'{s} {len(x)}' for s, x in runs.items())} requests; "
        f"{logged() - before} lines logged)"
    )
    return p50


def handler_overhead(archive: Path, family: str, work: Path, seconds: float) -> dict:
    """In this process, the archive's model in the family's handler twice, with the log and
    without, called as MMS calls it on the demo samples, the two in turn for ``seconds``:
    side → p50 (ms) of ``handle``. The workers' own cost of the log, free of what differs
    between two servers."""
    import importlib
    import zipfile

    from insectml.serving.predlog import ENV_VARS, LogSettings
    from mms.context import Context, RequestProcessor

    model_dir = work / "unpacked" / family
    with zipfile.ZipFile(archive) as packed:
        packed.extractall(model_dir)
    module = importlib.import_module(json.loads((model_dir / "archive.json").read_text())["handler"])
    services = {}
    for side in ("off", "on"):
        for key in ENV_VARS:
            os.environ.pop(key, None)
        if side == "on":
            os.environ.update(LogSettings().env(work / "handler-log" / family))
        services[side] = type(module._service)()
        services[side].initialize(Context(family, str(model_dir), {"model_dir": str(model_dir)}, 1, None, "1.1.11"))
    for key in ENV_VARS:
        os.environ.pop(key, None)

    def request(path: Path) -> tuple[list[dict], Context]:
        context = Context(family, str(model_dir), {"model_dir": str(model_dir)}, 1, None, "1.1.11")
        context.request_processor = [RequestProcessor({"body": {"content-type": content_type(path)}})]
        return [{"body": path.read_bytes()}], context

    requests = [request(path) for path in samples(family)]
    times: dict[str, list[float]] = {"off": [], "on": []}
    deadline = time.monotonic() + seconds
    for n in itertools.count():
        if time.monotonic() >= deadline:
            break
        batch, context = requests[n % len(requests)]
        for side in ("off", "on") if n % 2 == 0 else ("on", "off"):
            tic = time.perf_counter()
            services[side].handle(batch, context)
            times[side].append(time.perf_counter() - tic)
    p50 = {side: statistics.median(x) * 1e3 for side, x in times.items()}
    print(
        f"{family}: handler in process, with and without the log in turn for {seconds:g} s: p50 {p50['off']:.2f} ms "
        f"without, {p50['on']:.2f} ms with: ratio {p50['on'] / p50['off']:.3f} ({len(times['on'])} requests each)"
    )
    return p50


# -- archives --------------------------------------------------------------------------------


def run_cli(*args: object) -> None:
    done = subprocess.run([str(ROOT / "bin" / "insectml"), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"insectml {' '.join(map(str, args[:2]))} failed: {done.stderr.strip()[-500:]}")


def build_archives(store: Path, work: Path) -> dict[str, Path]:
    """family → a small archive of that family in ``store``."""
    import numpy as np
    import torch
    from insectml.detector.export import export_detector
    from insectml.detector.models import create_detector
    from insectml.families import FAMILIES as SPECS
    from insectml.fewshot.gallery import Gallery
    from insectml.fewshot.model import create_embedder
    from insectml.serving.package import package

    wb = work / "wingbeat"
    run_cli("wingbeat", "validate", "--labels", ROOT / "data/wingbeat/labels.csv", "--max-per-class", 20, "--out", wb)
    features = ("--manifest", wb / "manifest.jsonl", "--dataset", wb / "dataset.json", "--data", ROOT / "data/wingbeat")
    run_cli("wingbeat", "features", *features, "--out", wb / "features.npz")
    run_cli("wingbeat", "train", "--features", wb / "features.npz", "--set", "n_estimators=30", "--out", wb / "model")
    run_cli("package", "wingbeat", "--model", wb / "model", "--name", "wingbeat", "--out", store)

    det = work / "detector"
    det.mkdir()
    torch.manual_seed(0)
    torch.save(create_detector("ssdlite320_mobilenet_v3_large", 7).state_dict(), det / "weights.pt")
    (det / "config.json").write_text(json.dumps({"model": "ssdlite320_mobilenet_v3_large"}))
    (det / "labels.json").write_text(json.dumps([f"class{i}" for i in range(7)]))
    (det / "lineage.json").write_text("{}")
    written = export_detector(det, work / "export", "detector")
    extras = {"torchscript": Path(written["torchscript"])}
    package(SPECS["detector"], det, "detector", store, extras, {"score_threshold": 0.3})

    few = work / "fewshot"
    few.mkdir()
    torch.save(create_embedder("resnet10t", 16).state_dict(), few / "weights.pt")
    (few / "config.json").write_text(json.dumps({"backbone": "resnet10t", "dim": 16, "image_size": 64}))
    (few / "lineage.json").write_text("{}")
    protos = np.random.default_rng(0).normal(size=(3, 16)).astype(np.float32)
    Gallery(["a", "b", "c"], protos / np.linalg.norm(protos, axis=1, keepdims=True), [3, 3, 3], 0.5).save(
        work / "gallery"
    )
    package(SPECS["fewshot"], few, "fewshot", store, {"gallery": work / "gallery"}, {"top_k": 5})
    return {family: store / f"{family}.mar" for family in FAMILIES}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="FAMILY=PATH.mar",
        help="an archive to serve, repeatable (default: build one per family)",
    )
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    parser.add_argument("--seconds", type=float, default=60, help="load time per model (default: 60)")
    parser.add_argument("--malformed-every", type=int, default=5, help="every Nth request malformed (default: 5)")
    parser.add_argument("--big-repeats", type=int, default=3, help="sends of each 10/50 MB body (default: 3)")
    parser.add_argument("--workers", type=int, default=1, help="MMS workers per model (default: 1)")
    parser.add_argument(
        "--overhead-seconds",
        type=float,
        default=30,
        help="seconds per model of valid requests to the servers with and without the log (default: 30)",
    )
    args = parser.parse_args()

    from insectml.caches import default_caches

    default_caches()
    from insectml.serving.mms import ServerConfig, start, stop

    with tempfile.TemporaryDirectory(prefix="bench-serve-load-") as tmp:
        tmp = Path(tmp)
        store = tmp / "store"
        store.mkdir()
        archives: dict[str, Path] = {}
        for spec in args.archive:
            family, _, path = spec.partition("=")
            if family not in FAMILIES or not Path(path).is_file():
                raise SystemExit(f"--archive {spec}: expected FAMILY=PATH.mar with FAMILY in {FAMILIES}")
            archives[family] = Path(path)
        if not archives:
            print("building one small archive per family…", flush=True)
            archives = build_archives(store, tmp)
        models = {}
        for family, path in archives.items():
            if path.parent.resolve() != store.resolve():
                os.symlink(path.resolve(), store / f"{family}.mar")
            models[family] = f"{family}.mar"
        cfg = ServerConfig(
            model_store=store,
            models=models,
            state_dir=tmp / "mms",
            port=free_port(),
            management_port=free_port(),
            workers=args.workers,
        )
        # the same archives without a prediction log (twice), for the log's overhead
        bare = replace(cfg, state_dir=tmp / "mms-nolog", port=free_port(), management_port=free_port())
        bare = replace(bare, prediction_log=None)
        bare2 = replace(bare, state_dir=tmp / "mms-nolog2", port=free_port(), management_port=free_port())
        print(f"starting MMS on {cfg.inference_url} (and twice without its log)…", flush=True)
        served: dict[str, dict] = {}
        try:
            for server in (cfg, bare, bare2):
                start(server, timeout=600)
            print(
                f"limits: max_request_size {cfg.max_request_size} bytes; {args.workers} worker(s) per model; "
                f"{os.cpu_count()} CPUs; prediction log in {cfg.prediction_log_dir}"
            )
            for family in models:
                for server in (cfg, bare, bare2):
                    warm_up(server.port, family, family)
            ok = []
            for family in models:
                ok.append(load(cfg.port, family, family, args))
                ports = {"on": cfg.port, "off": bare.port, "off2": bare2.port}
                served[family] = log_overhead(ports, family, family, cfg.prediction_log_dir, args)
        finally:
            for server in (cfg, bare, bare2):
                stop(server.state_dir)
        print("prediction log overhead in the handler (the servers stopped):")
        handled = {family: handler_overhead(archives[family], family, tmp, args.overhead_seconds) for family in models}
    print("result:", "OK" if all(ok) else "FAILED", "(targets: 0 valid failed, every malformed 4xx, still answers)")
    shown = ", ".join(f"{f} {p['on'] / p['off']:.3f}" for f, p in handled.items())
    through = ", ".join(f"{f} {p['on'] / p['off']:.3f} (A/A {p['off2'] / p['off']:.3f})" for f, p in served.items())
    print(f"prediction log, p50 with / without: handler {shown}; through MMS {through} (target <= 1.05; not judged)")
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
