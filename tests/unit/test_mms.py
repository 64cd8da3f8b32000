"""Starting and stopping Multi Model Server, without MMS: the paths and config handed to
it, what each API binds, and which processes ``stop`` may signal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from insectml.errors import UserError
from insectml.serving import mms
from insectml.serving.mms import ServerConfig


def cli(*args: object) -> int:
    from insectml.cli import main

    return main([str(a) for a in args])


class FakePopen:
    """Records how MMS would have been launched, then 'exits' at once."""

    calls: list[dict] = []

    def __init__(self, args, cwd=None, env=None, **kwargs):
        FakePopen.calls.append({"args": args, "cwd": cwd, "env": env})
        self.pid = 0

    def poll(self):
        return 1


@pytest.fixture
def launched(tmp_path, monkeypatch):
    """How ``start`` launches MMS for a config of relative paths (``make serve``'s
    ``--model-store results/wingbeat/archive --state results/serving``)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results/wingbeat/archive").mkdir(parents=True)
    (tmp_path / "results/wingbeat/archive/wingbeat.mar").write_bytes(b"")
    monkeypatch.setattr(FakePopen, "calls", [])
    monkeypatch.setattr(mms.subprocess, "Popen", FakePopen)
    monkeypatch.setenv("MMS_MANAGEMENT_ADDRESS", "http://0.0.0.0:8081")
    cfg = ServerConfig(Path("results/wingbeat/archive"), {"wingbeat": "wingbeat.mar"}, Path("results/serving"))
    with pytest.raises(UserError, match="did not start"):
        mms.start(cfg, timeout=1)
    (call,) = FakePopen.calls
    return call


def test_start_hands_mms_only_absolute_paths(launched):
    args = launched["args"]
    paths = [launched["cwd"], launched["env"]["TEMP"], launched["env"]["TMPDIR"]]
    paths += [args[args.index("--mms-config") + 1], args[args.index("--model-store") + 1]]
    props = Path(args[args.index("--mms-config") + 1]).read_text()
    paths.append(props.split("model_store=")[1].split("\n")[0])
    assert [p for p in map(str, paths) if not Path(p).is_absolute()] == []


def test_no_mms_variable_overrides_the_config_written(launched):
    assert [k for k in launched["env"] if k.startswith("MMS_")] == []


def properties(**settings) -> dict[str, str]:
    cfg = ServerConfig(Path("."), {}, settings.pop("state_dir"), **settings)
    lines = mms.write_properties(cfg).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines)


def test_management_api_stays_on_loopback_when_inference_is_exposed(tmp_path):
    props = properties(state_dir=tmp_path, host="0.0.0.0", port=8080, management_port=8081)
    assert (props["inference_address"], props["management_address"]) == ("http://0.0.0.0:8080", "http://127.0.0.1:8081")


def test_config_sets_the_request_size_limit(tmp_path):
    assert properties(state_dir=tmp_path)["max_request_size"] == "6553500"


def test_config_hands_bodies_to_handlers_undecoded(tmp_path):
    """MMS's worker would decode a text/* body as UTF-8 and die on one that is not."""
    assert properties(state_dir=tmp_path)["decode_input_request"] == "false"


@pytest.mark.parametrize(
    ("host", "management_host", "exposed"),
    [
        ("127.0.0.1", "127.0.0.1", []),
        ("localhost", "::1", []),
        ("0.0.0.0", "127.0.0.1", ["inference"]),
        ("127.0.0.1", "192.168.1.5", ["management"]),
        ("myhost.example.org", "0.0.0.0", ["inference", "management"]),
    ],
)
def test_each_api_bound_beyond_loopback_gets_a_warning(host, management_host, exposed):
    warnings = mms.exposure_warnings(ServerConfig(Path("."), {}, Path("."), host=host, management_host=management_host))
    assert [w.split()[1] for w in warnings] == exposed


@pytest.fixture
def started(tmp_path, monkeypatch):
    """The ServerConfig ``insectml serve start`` would pass to ``start``, for given flags."""
    store = tmp_path / "store"
    store.mkdir()
    seen = []
    monkeypatch.setattr(mms, "start", lambda cfg, probe=None, timeout=0: seen.append(cfg) or {})

    def run(*flags):
        assert cli("serve", "start", "--model-store", store, "--state", tmp_path / "state", *flags) == 0
        return seen[-1]

    return run


def test_cli_binds_the_management_api_to_loopback_by_default(started):
    cfg = started("--host", "0.0.0.0")
    assert (cfg.host, cfg.management_host) == ("0.0.0.0", "127.0.0.1")


def test_cli_management_host_and_request_size_flags(started):
    cfg = started("--management-host", "10.0.0.2", "--max-request-size", "1000")
    assert (cfg.host, cfg.management_host, cfg.max_request_size) == ("127.0.0.1", "10.0.0.2", 1000)


def test_cli_refuses_a_request_size_that_is_not_positive(tmp_path, capsys):
    code = cli("serve", "start", "--model-store", tmp_path, "--max-request-size", "0")
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "--max-request-size 0" in lines[0]


# -- stop ---------------------------------------------------------------------------------


@pytest.fixture
def sleeper():
    """A process that is not a server: what a PID in an old server.json may now belong to."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def write_state(folder: Path, pid: int, started: float | None, **extra) -> Path:
    state = {"pid": pid, "wrapper_pid": None, **({} if started is None else {"pid_started": started}), **extra}
    (folder / "server.json").write_text(json.dumps(state))
    return folder / "server.json"


def test_stop_leaves_alone_a_pid_reused_by_another_process(tmp_path, sleeper):
    started = psutil.Process(sleeper.pid).create_time()
    write_state(tmp_path, sleeper.pid, started - 100, wrapper_started=None)  # the server began earlier
    assert mms.stop(tmp_path, timeout=1) is False
    assert sleeper.poll() is None and not (tmp_path / "server.json").exists()


def test_stop_ends_the_process_recorded_with_its_start_time(tmp_path, sleeper):
    write_state(tmp_path, sleeper.pid, psutil.Process(sleeper.pid).create_time(), wrapper_started=None)
    assert mms.stop(tmp_path, timeout=5) is True
    assert sleeper.wait(timeout=5) is not None


def test_stop_refuses_a_state_file_without_start_times(tmp_path, sleeper):
    write_state(tmp_path, sleeper.pid, None)
    with pytest.raises(UserError, match="records no start time for PID"):
        mms.stop(tmp_path, timeout=1)
    assert sleeper.poll() is None and (tmp_path / "server.json").exists()


def test_start_refuses_while_the_recorded_server_runs(tmp_path, sleeper):
    (tmp_path / "store").mkdir()
    (tmp_path / "state").mkdir()
    write_state(tmp_path / "state", sleeper.pid, psutil.Process(sleeper.pid).create_time(), wrapper_started=None)
    with pytest.raises(UserError, match="still running"):
        mms.start(ServerConfig(tmp_path / "store", {}, tmp_path / "state"), timeout=1)
