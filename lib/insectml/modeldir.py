"""The files every model folder has, whatever the family: ``config.json`` (how to rebuild
and run the model), ``labels.json`` (class names, in output order), ``train_metrics.json``
and ``lineage.json`` (:func:`insectml.lineage.collect`). The weights beside them are the
family's own (``weights.pt``, ``model.joblib``, ``rocket.npz``).

Loading weights runs code (``joblib`` unpickles, TorchScript executes): only models from a
trusted source may be loaded. To tell a model's own weights from a file swapped in or
damaged since, :func:`write_model_dir` records the sha256 of every weights file beside it
in ``lineage.json`` (``sha256``), and :func:`verify_weights` checks a file against that
record before it is loaded."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from insectml.errors import InputFileError
from insectml.fileio import write_json_atomic

log = logging.getLogger(__name__)

# The weights files a model folder may hold (and, in an archive, its TorchScript export):
# the files whose sha256 lineage.json records.
WEIGHTS_FILES = ("model.joblib", "weights.pt", "rocket.npz", "model.torchscript.pt")
SHA256 = "sha256"  # lineage.json: {file name: sha256 of its bytes}


def write_model_dir(out: Path, *, config: dict, labels: list[str], train_metrics: dict, lineage: dict) -> Path:
    """Write the four JSON files into ``out`` (made if missing), each atomically; returns
    ``out``. Call it after the weights are written: ``lineage.json`` records the sha256
    of each of :data:`WEIGHTS_FILES` present in ``out``."""
    out = Path(out)
    lineage = {**lineage, SHA256: sha256_of(out, WEIGHTS_FILES)}
    for name, data in (
        ("config.json", config),
        ("labels.json", labels),
        ("train_metrics.json", train_metrics),
        ("lineage.json", lineage),
    ):
        write_json_atomic(out / name, data)
    return out


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(folder: Path, names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256}`` of the files of ``names`` that exist in ``folder``."""
    return {name: file_sha256(folder / name) for name in names if (folder / name).is_file()}


def verify_weights(path: Path, lineage_path: Path | None = None) -> bool:
    """Check ``path`` against the sha256 recorded for its name in ``lineage_path``
    (default: ``lineage.json`` beside it) before it is loaded. Returns True when it
    matches, False (logged) when nothing is recorded (a model folder written before the
    record existed); raises :class:`InputFileError` when it differs."""
    lineage_path = lineage_path or path.parent / "lineage.json"
    recorded = None
    if lineage_path.is_file():
        record = read_json(lineage_path, "lineage")
        sums = record.get(SHA256)
        recorded = sums.get(path.name) if isinstance(sums, dict) else None
    if recorded is None:
        log.warning("%s: no sha256 recorded in %s; loading it unverified", path, lineage_path.name)
        return False
    if file_sha256(path) != recorded:
        raise InputFileError(
            path,
            f"sha256 differs from the one {lineage_path.name} records for it: not the file this model was "
            "saved with (replaced or damaged); refusing to load it",
        )
    return True


def read_json(path: Path, what: str, keys: Iterable[str] = (), kind: type = dict):
    """A JSON file the steps write (a model folder's, an evaluation's, a plan): its
    value, which must be a ``kind`` (an object with every one of ``keys``, or a list).
    Missing, unreadable, not JSON, another type or a key missing: one
    :class:`InputFileError` naming the file and ``what`` it should be."""
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise InputFileError(path, f"{what} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, kind):
        raise InputFileError(path, f"{what} is not a JSON {'object' if kind is dict else 'list'}")
    missing = [k for k in keys if k not in value] if kind is dict else []
    if missing:
        raise InputFileError(path, f"{what} has no {', '.join(repr(k) for k in missing)}")
    return value
