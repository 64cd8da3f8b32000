"""Lineage: what made a model (code, data, params, seed, packages, host, time)."""

from __future__ import annotations

import datetime as dt
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import insectml

PACKAGES = (
    "numpy",
    "scipy",
    "scikit-learn",
    "librosa",
    "soundfile",
    "torch",
    "torchvision",
    "timm",
    "multi-model-server",
    "dvc",
)


def code_root() -> Path:
    """The checkout this library was loaded from (``lib/insectml`` → the repo root)."""
    return Path(insectml.__file__).resolve().parents[2]


def git_state(root: Path | None = None) -> dict:
    root = root or code_root()

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None, "describe": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status), "describe": git("describe", "--always", "--dirty")}


def dvc_data_version(root: Path | None = None) -> str | None:
    """The md5 pinned in ``data.dvc`` (the version ``dvc pull`` fetches), if any."""
    path = (root or code_root()) / "data.dvc"
    if not path.is_file():
        return None
    match = re.search(r"md5:\s*([0-9a-f]{32}(?:\.dir)?)", path.read_text())
    return match.group(1) if match else None


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "insectml": insectml.__version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def collect(*, params: dict, seed: int, data: dict, started: str) -> dict:
    """Everything needed to tell where a model came from and to rebuild it."""
    return {
        "insectml": insectml.__version__,
        "code": git_state(),
        "data": {"dvc_md5": dvc_data_version(), **data},
        "params": params,
        "seed": seed,
        "packages": package_versions(),
        "host": {"name": socket.gethostname(), "platform": platform.platform(), "argv": sys.argv},
        "started": started,
        "finished": now(),
    }
