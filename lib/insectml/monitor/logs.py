"""Reading the server's prediction log (issue #20's contract, written by the MMS handlers)
and the :class:`Sample` that both the log and the reference become.

The log folder holds ``predictions.jsonl`` (current) and ``predictions.jsonl.1`` … ``.N``
(older; the highest number is the oldest), one JSON object per answered request item:
``time``, ``family``, ``model``, ``version``, ``input``, ``answer``, ``summary``
(``features`` for wingbeat, ``embedding`` for images), ``top_score``, ``unknown``,
``input_file``. A line that is not such an object (say the half-written last line of a
server that is still writing) is counted and skipped, never fatal.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from insectml.errors import InputFileError
from insectml.fileio import open_atomic

log = logging.getLogger(__name__)

LOG_FILE = "predictions.jsonl"
UNKNOWN = "unknown"  # the few-shot answer's label below the open-set threshold
FAMILIES = ("wingbeat", "detector", "fewshot")


@dataclass
class Sample:
    """What the tests compare, for the reference or for the served traffic. ``n``: answers;
    each field is None when that side does not have it. ``predicted``: the class of each
    answer (a detector: of each box; a few-shot "unknown" answer: none); ``unknown``,
    ``top_score`` (NaN: an answer without a score, e.g. no box), ``box_count``: one per answer."""

    n: int
    features: np.ndarray | None = None  # (n, F) float, NaN where a record lacks a feature
    feature_names: list[str] | None = None
    embedding: np.ndarray | None = None  # (k, D) float
    predicted: list[str] | None = None
    top_score: np.ndarray | None = None
    unknown: np.ndarray | None = None  # bool
    box_count: np.ndarray | None = None  # int

    _ARRAYS = ("features", "embedding", "top_score", "unknown", "box_count")

    def save(self, path: Path) -> Path:
        """Write as npz (atomically): the file :func:`load` reads, e.g. the
        ``monitor_reference.npz`` a pipeline step leaves beside its evaluation."""
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        if self.feature_names is not None:
            arrays["feature_names"] = np.asarray(self.feature_names)
        if self.predicted is not None:
            arrays["predicted"] = np.asarray(self.predicted, dtype=str)
        with open_atomic(Path(path), "wb") as fh:
            np.savez_compressed(fh, n=np.asarray(self.n), **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> Sample:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise InputFileError(path, f"not a monitor reference file ({exc})") from None
        if "n" not in arrays:
            raise InputFileError(path, "not a monitor reference file (no 'n')")
        return cls(
            n=int(arrays["n"]),
            **{k: arrays[k] for k in cls._ARRAYS if k in arrays},
            feature_names=[str(x) for x in arrays["feature_names"]] if "feature_names" in arrays else None,
            predicted=[str(x) for x in arrays["predicted"]] if "predicted" in arrays else None,
        )


def finite_rows(x: np.ndarray | None) -> np.ndarray | None:
    """The values (1-D) or rows (2-D) of ``x`` without a NaN or infinity; None stays None."""
    if x is None:
        return None
    x = np.asarray(x, dtype=float)
    return x[np.all(np.isfinite(x), axis=1)] if x.ndim == 2 else x[np.isfinite(x)]


def log_files(folder: Path) -> list[Path]:
    """The log's files, oldest first: ``predictions.jsonl.N`` … ``.1``, then ``predictions.jsonl``.
    ``folder`` may also be one log file. Missing folder or no log in it: InputFileError."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise InputFileError(folder, "prediction log folder not found")
    pattern = re.compile(re.escape(LOG_FILE) + r"\.(\d+)")
    rotated = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := pattern.fullmatch(p.name)) and p.is_file()),
        reverse=True,
    )
    files = [p for _, p in rotated] + ([folder / LOG_FILE] if (folder / LOG_FILE).is_file() else [])
    if not files:
        raise InputFileError(
            folder, f"no {LOG_FILE} in it: not a prediction log folder (start the server with a prediction log)"
        )
    return files


def read_log(folder: Path) -> tuple[list[dict], int]:
    """Every record of the log, oldest first, and the number of lines skipped as not
    records (not JSON, not an object, or without ``family``)."""
    records, bad = [], 0
    for path in log_files(folder):
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    bad += 1
                    continue
                if isinstance(record, dict) and record.get("family") in FAMILIES:
                    records.append(record)
                else:
                    bad += 1
    if bad:
        log.warning("%s: skipped %d line(s) that are not prediction records", folder, bad)
    return records, bad


def served_model(records: Sequence[dict]) -> tuple[str | None, str | None]:
    """(model, version) of the newest record."""
    if not records:
        return None, None
    last = records[-1]
    return _text(last.get("model")), _text(last.get("version"))


def _text(value) -> str | None:
    return None if value is None else str(value)


def keep_model(records: Sequence[dict], family: str) -> tuple[list[dict], list[str]]:
    """The records of ``family`` answered by the newest record's model and version (a
    redeployed model starts a new population); notes on what was left out."""
    notes = []
    mine = [r for r in records if r.get("family") == family]
    others = Counter(r.get("family") for r in records if r.get("family") != family)
    if others:
        notes.append(
            "left out the records of other families: " + ", ".join(f"{k} ({v})" for k, v in sorted(others.items()))
        )
    model, version = served_model(mine)
    same = [r for r in mine if _text(r.get("model")) == model and _text(r.get("version")) == version]
    if len(same) < len(mine):
        notes.append(
            f"left out {len(mine) - len(same)} record(s) of other models or versions than the newest "
            f"({model} {version})"
        )
    return same, notes


def _labels(family: str, answer) -> list[str] | None:
    """The class(es) an answer gives: wingbeat the most probable species, few-shot its
    label (none when unknown), detector every box's label. None: not an answer of that family."""
    if family == "wingbeat" and isinstance(answer, dict) and isinstance(answer.get("probabilities"), dict):
        probs = answer["probabilities"]
        return [max(probs, key=lambda k: probs[k])] if probs else None
    if family == "fewshot" and isinstance(answer, dict) and isinstance(answer.get("label"), str):
        return [] if answer["label"] == UNKNOWN else [answer["label"]]
    if family == "detector" and isinstance(answer, list):
        labels = [box.get("label") for box in answer if isinstance(box, dict)]
        return [str(x) for x in labels if x is not None]
    return None


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def served_sample(records: Sequence[dict], family: str, feature_names: Sequence[str] | None = None) -> Sample:
    """The log records of one family and model as a :class:`Sample`. Wingbeat features are
    put in ``feature_names`` order (the reference's; NaN where a record lacks one); the
    embeddings of the most common length are kept (another length is another model)."""
    predicted: list[str] = []
    for r in records:
        predicted += _labels(family, r.get("answer")) or []
    summaries = [r.get("summary") if isinstance(r.get("summary"), dict) else {} for r in records]
    sample = Sample(
        n=len(records),
        predicted=predicted,
        top_score=np.array([_float(r.get("top_score")) for r in records]),
        unknown=np.array([r.get("unknown") is True for r in records]) if family == "fewshot" else None,
    )
    if family == "wingbeat":
        names = list(feature_names or sorted({k for s in summaries for k in (s.get("features") or {})}))
        rows = [s.get("features") if isinstance(s.get("features"), dict) else {} for s in summaries]
        sample.features = np.array([[_float(row.get(k)) for k in names] for row in rows], dtype=float).reshape(
            len(rows), len(names)
        )
        sample.feature_names = names
    else:
        vectors = [s.get("embedding") for s in summaries if isinstance(s.get("embedding"), list)]
        lengths = Counter(len(v) for v in vectors if v)
        if lengths:
            dim = lengths.most_common(1)[0][0]
            sample.embedding = np.array([[_float(x) for x in v] for v in vectors if len(v) == dim])
    if family == "detector":
        sample.box_count = np.array([len(r["answer"]) if isinstance(r.get("answer"), list) else -1 for r in records])
        sample.box_count = sample.box_count[sample.box_count >= 0]
    return sample
