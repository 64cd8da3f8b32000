"""Start and stop Multi Model Server on loopback, tracked by its own PIDs.

MMS 1.1.11 writes one global pid file into ``$TEMP``; each server here gets its
own TEMP inside its state folder, so several servers (tests, a demo) never share
one. ``/ping`` answers before models are loaded, so readiness means: a probe
prediction succeeded.

The inference API (``host``) and the management API (``management_host``) are bound
separately: the management API has no authentication and registers archives from any
URL (running their handler code), so it stays on loopback unless asked otherwise.

The handlers append to a prediction log in ``<state>/predictions/`` (:mod:`.predlog`),
configured through environment variables MMS hands on to its workers.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

from insectml.errors import UserError
from insectml.fileio import write_json_atomic, write_text_atomic
from insectml.serving.predlog import ENV_VARS, LogSettings

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# MMS's own default (6553500 bytes), written out so the limit is in the config we hand it.
MAX_REQUEST_SIZE = 6_553_500


@dataclass(frozen=True)
class ServerConfig:
    model_store: Path
    models: dict[str, str]  # name → archive file in model_store
    state_dir: Path
    host: str = LOOPBACK
    port: int = 8080
    management_port: int = 8081
    workers: int = 1
    management_host: str = LOOPBACK
    max_request_size: int = MAX_REQUEST_SIZE  # bytes; a larger body gets HTTP 413 from MMS
    prediction_log: LogSettings | None = LogSettings()  # None: the handlers keep no log

    @property
    def prediction_log_dir(self) -> Path:
        return Path(self.state_dir) / "predictions"

    @property
    def inference_url(self) -> str:
        return _url(self.host, self.port)

    @property
    def management_url(self) -> str:
        return _url(self.management_host, self.management_port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); a host name or
    any other address may be reachable from other machines."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warnings(cfg: ServerConfig) -> list[str]:
    """One sentence per API that ``cfg`` binds to an address other machines may reach."""
    out = []
    if not is_loopback(cfg.host):
        out.append(
            f"the inference API listens on {cfg.inference_url}, reachable from other machines and without "
            "authentication: anyone who reaches it can send requests to the models"
        )
    if not is_loopback(cfg.management_host):
        out.append(
            f"the management API listens on {cfg.management_url}, reachable from other machines and without "
            "authentication: anyone who reaches it can register an archive from any URL and run its code"
        )
    return out


def write_properties(cfg: ServerConfig) -> Path:
    path = cfg.state_dir / "config.properties"
    lines = {
        "inference_address": cfg.inference_url,
        "management_address": cfg.management_url,
        "model_store": str(Path(cfg.model_store).resolve()),
        "load_models": ",".join(f"{n}={a}" for n, a in cfg.models.items()),
        "default_workers_per_model": str(cfg.workers),
        "job_queue_size": "100",
        "max_request_size": str(cfg.max_request_size),
        # Bodies reach the handlers as bytes whatever their Content-Type: MMS would otherwise
        # decode text/* as UTF-8 and application/json as JSON inside the worker, where a body
        # that is neither kills the worker (HTTP 500, then a model reload) before a handler runs.
        "decode_input_request": "false",
    }
    return write_text_atomic(path, "".join(f"{k}={v}\n" for k, v in lines.items()))


def start(cfg: ServerConfig, probe: tuple[str, bytes] | None = None, timeout: float = 180.0) -> dict:
    """Start MMS in the background; return once ``probe`` (model name, body) predicts.

    Writes ``server.json`` (PIDs, their start times, URLs) into the state folder for
    :func:`stop`. Every path MMS sees is absolute (it refuses a relative TEMP), and the
    config file written is its whole configuration (no ``MMS_*`` variable overrides it).
    """
    if cfg.max_request_size <= 0:
        raise UserError(f"max request size {cfg.max_request_size}: expected a positive number of bytes")
    if cfg.prediction_log is not None and cfg.prediction_log.problems():
        raise UserError(cfg.prediction_log.problems()[0])
    cfg = replace(cfg, model_store=Path(cfg.model_store).resolve(), state_dir=Path(cfg.state_dir).resolve())
    for name, archive in cfg.models.items():
        if not (cfg.model_store / archive).is_file():
            raise UserError(f"{cfg.model_store / archive}: archive for model '{name}' not found")
    for warning in exposure_warnings(cfg):
        log.warning(warning)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    state = cfg.state_dir / "server.json"
    if state.is_file() and _recorded(json.loads(state.read_text()), state):
        raise UserError(f"{state}: a server from this folder is still running; stop it first")
    tmp = cfg.state_dir / "tmp"
    tmp.mkdir(exist_ok=True)
    (tmp / ".model_server.pid").unlink(missing_ok=True)
    props = write_properties(cfg)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMS_") and k != "ENABLE_ENVVARS_CONFIG"}
    env.update(TEMP=str(tmp), TMPDIR=str(tmp))
    # the log is this config's alone: none inherited from the caller's environment
    env = {k: v for k, v in env.items() if k not in ENV_VARS}
    if cfg.prediction_log is not None:
        cfg.prediction_log_dir.mkdir(exist_ok=True)
        env.update(cfg.prediction_log.env(cfg.prediction_log_dir))
    mms = shutil.which("multi-model-server") or str(Path(sys.executable).with_name("multi-model-server"))
    with open(cfg.state_dir / "server.log", "ab") as server_log:
        wrapper = subprocess.Popen(
            [mms, "--start", "--foreground", "--mms-config", str(props), "--model-store", str(cfg.model_store)],
            cwd=cfg.state_dir,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pid_file = tmp / ".model_server.pid"
    deadline = time.monotonic() + timeout
    while not pid_file.is_file() or not pid_file.read_text().strip():
        if wrapper.poll() is not None or time.monotonic() > deadline:
            if wrapper.poll() is None:
                wrapper.kill()
            raise UserError(f"Multi Model Server did not start; see {cfg.state_dir / 'server.log'}")
        time.sleep(0.1)
    pid = int(pid_file.read_text().strip())
    info = {
        "pid": pid,
        "pid_started": _start_time(pid),
        "wrapper_pid": wrapper.pid,
        "wrapper_started": _start_time(wrapper.pid),
        "inference": cfg.inference_url,
        "management": cfg.management_url,
        "models": cfg.models,
        "prediction_log": str(cfg.prediction_log_dir) if cfg.prediction_log is not None else None,
    }
    write_json_atomic(state, info)
    try:
        _wait_ready(cfg, probe, deadline, wrapper)
    except BaseException:
        stop(cfg.state_dir)
        raise
    return info


def _wait_ready(cfg: ServerConfig, probe, deadline: float, wrapper: subprocess.Popen) -> None:
    while True:
        if wrapper.poll() is not None:
            raise UserError(f"Multi Model Server exited during start-up; see {cfg.state_dir / 'server.log'}")
        try:
            if probe is None:
                with urllib.request.urlopen(f"{cfg.management_url}/models", timeout=5) as r:
                    listed = {m["modelName"] for m in json.load(r).get("models", [])}
                if set(cfg.models) <= listed and all(_workers_ready(cfg, n) for n in cfg.models):
                    return
            else:
                name, body = probe
                predict(cfg.inference_url, name, body, timeout=30)
                return
        except urllib.error.HTTPError as exc:
            # 404/503: the model or its worker is still loading; anything else is an answer.
            if exc.code not in (404, 503):
                detail = http_error_detail(exc)
                raise UserError(f"Multi Model Server answered the probe with HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError, ValueError):
            pass
        failure = _load_failure(cfg.state_dir / "server.log")
        if failure:
            raise UserError(f"Multi Model Server cannot load a model ({failure}); see {cfg.state_dir / 'server.log'}")
        if time.monotonic() > deadline:
            raise UserError(f"Multi Model Server gave no prediction in time; see {cfg.state_dir / 'server.log'}")
        time.sleep(0.5)


def _load_failure(log: Path, tries: int = 3) -> str | None:
    """The worker's last error line once MMS has failed to load a model ``tries`` times
    (it retries for ever), else None."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return None
    if text.count("Load model failed") < tries:
        return None
    errors = [
        line.split(" - ", 1)[-1].strip()
        for line in text.splitlines()
        if "-stdout " in line and ("Error" in line or "Exception" in line) and "Traceback" not in line
    ]
    return errors[-1][:300] if errors else "its worker died while loading"


def _workers_ready(cfg: ServerConfig, name: str) -> bool:
    with urllib.request.urlopen(f"{cfg.management_url}/models/{name}", timeout=5) as r:
        workers = json.load(r).get("workers", [])
    return any(w.get("status") == "READY" for w in workers)


def predict(
    url: str, name: str, body: bytes, timeout: float = 60, content_type: str = "application/octet-stream"
) -> dict:
    """POST ``body`` to a model. The Content-Type matters: MMS form-decodes bodies sent as
    application/x-www-form-urlencoded (curl's and urllib's default) instead of passing them on."""
    request = urllib.request.Request(
        f"{url}/predictions/{name}", data=body, method="POST", headers={"Content-Type": content_type}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def http_error_detail(exc: urllib.error.HTTPError) -> str:
    """MMS's error body on one line: its JSON "message" when it has one."""
    body = exc.read().decode(errors="replace").strip()
    try:
        body = json.loads(body).get("message", body)
    except (ValueError, AttributeError):
        pass
    return " ".join(str(body).split())[:300]


def register(
    management_url: str,
    archive: str,
    name: str,
    batch_size: int = 1,
    max_batch_delay_ms: int = 100,
    initial_workers: int = 1,
    timeout: float = 300,
) -> dict:
    """Register ``archive`` (a file name in the model store, or a URL) as ``name`` through
    the management API and wait until its workers are up (``synchronous=true``). With
    ``batch_size`` > 1, MMS hands the handler up to that many requests at once, waiting
    at most ``max_batch_delay_ms`` to fill a batch."""
    from urllib.parse import urlencode

    query = urlencode(
        {
            "url": archive,
            "model_name": name,
            "batch_size": batch_size,
            "max_batch_delay": max_batch_delay_ms,
            "initial_workers": initial_workers,
            "synchronous": "true",
        }
    )
    request = urllib.request.Request(f"{management_url}/models?{query}", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        detail = http_error_detail(exc)
        raise UserError(f"registering {archive} as '{name}' failed: HTTP {exc.code} {detail}") from None


def unregister(management_url: str, name: str, timeout: float = 60) -> None:
    request = urllib.request.Request(f"{management_url}/models/{name}", method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        detail = http_error_detail(exc)
        raise UserError(f"unregistering '{name}' failed: HTTP {exc.code} {detail}") from None


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _running(proc) -> bool:
    """``proc`` (a psutil.Process) still runs as the process it was: its PID was not reused
    (psutil compares start times) and it is not a zombie."""
    import psutil

    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _recorded(info: dict, state: Path) -> list:
    """The processes of ``info`` (server.json) that still run as the ones recorded: same
    PID and same start time. A PID alone may since belong to another process."""
    import psutil

    procs = []
    for pid_key, started_key in (("pid", "pid_started"), ("wrapper_pid", "wrapper_started")):
        pid, started = info.get(pid_key), info.get(started_key)
        if not pid or not _alive(pid):
            continue
        if started_key not in info:
            raise UserError(
                f"{state}: records no start time for PID {pid} (written by an older insectml), so it cannot "
                "tell whether that PID is still the server; stop the server by hand and delete this file"
            )
        try:
            proc = psutil.Process(pid)
            if started is not None and abs(proc.create_time() - started) < 0.01 and _running(proc):
                procs.append(proc)
        except psutil.Error:
            pass
    return procs


def stop(state_dir: Path, timeout: float = 30.0) -> bool:
    """Stop the server recorded in ``state_dir/server.json``: its Java process, the Python
    workers under it, and the wrapper, each only while it is still the process recorded at
    start (same PID and start time). Returns False if none was running."""
    import psutil

    state = Path(state_dir) / "server.json"
    if not state.is_file():
        return False
    info = json.loads(state.read_text())
    recorded = _recorded(info, state)
    procs = []
    for proc in recorded:
        try:
            procs += proc.children(recursive=True)
        except psutil.Error:
            pass
    procs = [p for p in {p.pid: p for p in [*procs, *recorded]}.values() if _running(p)]
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in procs:
        if _running(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass
    state.unlink()
    return bool(procs)
