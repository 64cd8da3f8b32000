"""Lineage: what made a model (code, data, params, seed, packages, host, time)."""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import json
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path, PurePosixPath

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
    match = re.search(r"md5:\s*([0-9a-f]{32}(?:\.dir)?)", path.read_text(encoding="utf-8", errors="replace"))
    return match.group(1) if match else None


def data_source(root: str | Path, files: Iterable[tuple[str, str]], dvc_root: Path | None = None) -> dict:
    """Which data a dataset was made from, for its dataset.json and so the lineage of every
    model trained on it: ``root`` (the folder the files' paths are relative to, as given) and
    ``files``, each file used as (path relative to ``root``, md5 of its bytes).

    Returns ``{"path", "content_md5", "tracked", "dvc_md5"}``. ``tracked`` is True when every
    file is, byte for byte, a file of the version ``data.dvc`` (in ``dvc_root``, by default
    this checkout) pins, at the same place relative to one folder of it: checked against
    DVC's listing of that version, from the local cache or a local remote, wherever the
    data lies (a pipeline task's staged copy counts). Then ``dvc_md5`` is data.dvc's md5;
    otherwise it is None (the data is not what data.dvc pins, or that cannot be checked) and
    ``content_md5``, over the files' paths and md5s, with ``path`` names the data."""
    files = sorted(files)
    content = hashlib.md5("".join(f"{md5}  {rel}\n" for rel, md5 in files).encode()).hexdigest()
    dvc_root = dvc_root or code_root()
    pinned = dvc_data_version(dvc_root)
    listing = _dvc_listing(dvc_root, pinned) if pinned else None
    tracked = bool(files) and listing is not None and _inside_listing(files, listing)
    return {"path": str(root), "content_md5": content, "tracked": tracked, "dvc_md5": pinned if tracked else None}


def _dvc_listing(dvc_root: Path, md5: str) -> dict[str, str] | None:
    """DVC's listing of a tracked folder's version ``md5`` (``<md5>.dir``): relative path →
    md5, read from the project's cache or a remote on this file system; None if neither holds it
    (or the version is one file, not a folder)."""
    if not md5.endswith(".dir"):
        return None
    places = [dvc_root / ".dvc" / "cache"]
    config = configparser.ConfigParser()
    try:
        config.read(dvc_root / ".dvc" / "config", encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError):
        pass
    for section in config.sections():
        url = config[section].get("url", "")
        if section.strip("'\"").startswith("remote") and url and "://" not in url:
            places.append((dvc_root / ".dvc" / url).resolve())
    for place in places:
        for candidate in (place / "files" / "md5" / md5[:2] / md5[2:], place / md5[:2] / md5[2:]):
            if candidate.is_file():
                try:
                    entries = json.loads(candidate.read_text(encoding="utf-8"))
                    return {e["relpath"]: e["md5"] for e in entries}
                except (ValueError, TypeError, KeyError):
                    continue
    return None


def _inside_listing(files: list[tuple[str, str]], listing: dict[str, str]) -> bool:
    """Whether some folder ``P`` of the listing holds every file: ``listing[P/rel] == md5``."""
    rel, md5 = files[0]
    rel = PurePosixPath(rel).as_posix()
    prefixes = [
        path[: -len(rel)]
        for path, digest in listing.items()
        if digest == md5 and (path == rel or path.endswith("/" + rel))
    ]
    return any(all(listing.get(prefix + PurePosixPath(r).as_posix()) == m for r, m in files) for prefix in prefixes)


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


def collect(*, params: dict, seed: int, data: dict, started: str, source: dict | None = None) -> dict:
    """Everything needed to tell where a model came from and to rebuild it. ``source``:
    the dataset's :func:`data_source` (its dataset.json ``source``); the data's version is
    data.dvc's md5 only when that says the data is what data.dvc tracks, else the content
    hash and the path, marked untracked (``tracked`` False; None when not known)."""
    if source is None:
        version = {"dvc_md5": None, "tracked": None}
    else:
        version = {k: source.get(k) for k in ("dvc_md5", "tracked", "path", "content_md5")}
        if source.get("active_learning"):
            version["active_learning"] = source["active_learning"]
    return {
        "insectml": insectml.__version__,
        "code": git_state(),
        "data": {**version, **data},
        "params": params,
        "seed": seed,
        "packages": package_versions(),
        "host": {"name": socket.gethostname(), "platform": platform.platform(), "argv": sys.argv},
        "started": started,
        "finished": now(),
    }


def describe_data(data: dict) -> str:
    """A lineage's data version in words: data.dvc's md5 when the data is what it pins, else
    the content hash and the path, marked untracked (unknown for a record made before); and
    the rows labelled in active-learning rounds merged into it."""
    if data.get("dvc_md5"):
        text = f"data.dvc md5 {data['dvc_md5']}"
    elif data.get("tracked") is False:
        text = f"untracked: content md5 {data.get('content_md5')} of {data.get('path')}"
    else:
        text = "unknown (not recorded)"
    rounds = data.get("active_learning") or []
    if rounds:
        n = sum(r.get("n_rows", 0) for r in rounds)
        text += f", plus {n} row(s) labelled in active-learning round(s) {', '.join(_round_names(rounds))}"
    return text


def active_learning_rounds(rows: Iterable[dict], export: str | Path) -> list[dict]:
    """What a dataset records of the rows merged from the labelled active-learning export
    ``export`` (each with a ``provenance`` of :func:`insectml.active.merge.read_labelled_export`):
    one ``{"round", "strategy", "n_rows", "export"}`` per round and strategy, in round order.
    The dataset's ``source`` carries it, so every model's lineage (:func:`collect`) does too."""
    counts: dict[tuple, int] = {}
    for row in rows:
        key = (row["provenance"].get("al_round"), row["provenance"].get("al_strategy"))
        counts[key] = counts.get(key, 0) + 1
    order = sorted(counts, key=lambda k: (k[0] is None, k[0] or 0, k[1] or ""))
    return [{"round": r, "strategy": s, "n_rows": counts[(r, s)], "export": str(export)} for r, s in order]


def _round_names(rounds: list[dict]) -> list[str]:
    return [
        f"{r.get('round') if r.get('round') is not None else '?'}"
        + (f" ({r['strategy']}, {r.get('n_rows')})" if r.get("strategy") else f" ({r.get('n_rows')})")
        for r in rounds
    ]
