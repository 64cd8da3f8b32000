"""notebooks/ run top to bottom on the project's ``insectml`` kernel (nbclient): each data
notebook on the demo data (validated by the notebook itself), each results notebook on a
``-profile test`` run of the session fixtures; their cells only call the library; and
``make lab`` serves them on 127.0.0.1 only."""

from __future__ import annotations

import ast
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from .conftest import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
FAMILIES = ("wingbeat", "detector", "fewshot")
KERNEL = "insectml"  # registered by env/setup.sh
# each family's results folder: the session fixture that makes it (shared with other tests)
RESULTS = {
    "wingbeat": lambda request: request.getfixturevalue("nf_test_run")[0] / "results",
    "detector": lambda request: request.getfixturevalue("detector_run"),
    "fewshot": lambda request: request.getfixturevalue("fewshot_run"),
}


def notebook_sources() -> list[Path]:
    return sorted(NOTEBOOKS.glob("*_*.py"))


def run_notebook(name: str, data: Path, results: Path):
    """Execute notebooks/<name>.py top to bottom as JupyterLab would (kernel cwd: notebooks/),
    its folders given by the environment; a failing cell raises CellExecutionError."""
    import jupytext
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from nbclient import NotebookClient

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"no Jupyter kernel named {KERNEL!r}: run 'make setup' (env/setup.sh registers it)")
    notebook = jupytext.read(NOTEBOOKS / f"{name}.py")
    client = NotebookClient(notebook, kernel_name=KERNEL, timeout=600, resources={"metadata": {"path": str(NOTEBOOKS)}})
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "INSECTML_DATA": str(data),
        "INSECTML_RESULTS": str(results),
    }
    client.execute(env=env)
    return notebook


def figures(notebook) -> int:
    return sum("image/png" in out.get("data", {}) for cell in notebook.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("family", FAMILIES)
def test_data_notebook_runs_on_the_demo_data(family, tmp_path):
    if not (ROOT / "data" / family).is_dir():
        pytest.fail(f"data/{family} is missing: run 'make data' (dvc pull) first")
    notebook = run_notebook(f"{family}_data", ROOT / "data", tmp_path / "no-run-yet")
    assert figures(notebook) >= 3
    assert "validated now" in "".join(out.get("text", "") for out in notebook.cells[2].outputs)


@pytest.mark.parametrize("family", FAMILIES)
def test_results_notebook_runs_on_a_test_profile_run(family, request):
    notebook = run_notebook(f"{family}_results", ROOT / "data", RESULTS[family](request))
    assert figures(notebook) >= 3


def test_every_family_has_a_data_and_a_results_notebook():
    assert [p.stem for p in notebook_sources()] == sorted(
        f"{f}_{kind}" for f in FAMILIES for kind in ("data", "results")
    )


@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_first_cell_holds_the_parameters_from_the_environment(source):
    import jupytext

    first = jupytext.read(source).cells[0]
    assert first.cell_type == "code" and "parameters" in first.metadata.get("tags", [])
    assert "INSECTML_DATA" in first.source and "INSECTML_RESULTS" in first.source


# What a cell may hold besides calls, names, attributes and constants: no definitions,
# loops, branches or comprehensions (that belongs in insectml.explore, where it is tested).
_LOGIC = (
    ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.For, ast.While, ast.If, ast.IfExp,
    ast.With, ast.Try, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp,
)  # fmt: skip


@pytest.mark.parametrize("source", notebook_sources(), ids=lambda p: p.stem)
def test_cells_only_call_the_library(source):
    import jupytext

    cells = [c for c in jupytext.read(source).cells if c.cell_type == "code"]
    for cell in cells[1:]:
        code = "\n".join(line for line in cell.source.splitlines() if not line.startswith("%"))
        for node in ast.walk(ast.parse(code)):
            assert not isinstance(node, _LOGIC), f"{source.name}: logic in a cell: {ast.unparse(node)[:80]}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                assert ast.unparse(node) == "from insectml import explore", f"{source.name}: {ast.unparse(node)}"


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)


def test_make_lab_serves_on_loopback_only(tool_env, tmp_path):
    """``make lab`` in a clone-like folder (the repository's files linked, notebooks/ copied,
    so the .ipynb it pairs land there): its printed URL answers on 127.0.0.1, nothing
    listens elsewhere, and it stops by its PID."""
    clone = tmp_path / "clone"
    clone.mkdir()
    for name in ("Makefile", "bin", "lib", "env", "data"):
        (clone / name).symlink_to(ROOT / name)
    shutil.copytree(NOTEBOOKS, clone / "notebooks", ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    port = free_port()
    make = subprocess.Popen(
        ["make", "lab", f"LAB_PORT={port}"],
        cwd=clone,
        env=tool_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(make.stdout, output), daemon=True).start()
    try:
        url, seen, deadline = None, [], time.monotonic() + 300
        while url is None and time.monotonic() < deadline and make.poll() is None:
            try:
                seen.append(output.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\S+)", seen[-1])
            url = found and found.group(0)
        assert url, "make lab printed no URL:\n" + "".join(seen[-30:])
        token = url.rsplit("=", 1)[1]
        status = f"http://127.0.0.1:{port}/api/status"
        while True:
            try:
                request = urllib.request.Request(status, headers={"Authorization": f"token {token}"})
                with urllib.request.urlopen(request, timeout=5) as answer:
                    assert answer.status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline and make.poll() is None, "JupyterLab never answered:\n" + "".join(
                    seen[-30:]
                )
                time.sleep(1)
        server = next(
            p for p in psutil.Process(make.pid).children(recursive=True) if "jupyter" in " ".join(p.cmdline())
        )
        listening = {c.laddr for c in server.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert listening and {a.ip for a in listening} == {"127.0.0.1"}, listening
        assert (clone / "notebooks" / "wingbeat_data.ipynb").is_file(), "make lab did not pair the notebooks"
    finally:
        for proc in psutil.Process(make.pid).children(recursive=True) if make.poll() is None else []:
            proc.send_signal(signal.SIGTERM)  # the server shuts down its kernels itself
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            make.kill()
            make.wait()
