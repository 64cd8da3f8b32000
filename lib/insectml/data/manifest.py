"""Manifests: the contract between pipeline steps.

``manifest.jsonl`` has one row per sample (id, path, label, group, split);
``dataset.json`` holds the class list, counts, split settings and version hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from insectml.errors import InputFileError
from insectml.fileio import open_atomic


def write_manifest(rows: Iterable[dict], path: Path) -> int:
    """Write ``rows`` (any iterable, consumed once) as JSONL to ``path``, atomically;
    returns how many were written."""
    n = 0
    with open_atomic(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")
            n += 1
    return n


def iter_manifest(path: Path, what: str = "manifest", allow_empty: bool = False) -> Iterator[dict]:
    """The rows of a JSONL file one at a time, so that a million-row manifest is never a
    list. A missing file is an :class:`InputFileError` at once; a line that is not JSON,
    or no rows at all (unless ``allow_empty``), when the reading gets there."""
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    return _rows(path, what, allow_empty)


def _rows(path: Path, what: str, allow_empty: bool) -> Iterator[dict]:
    empty = True
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputFileError(path, f"line {number} is not JSON ({exc.msg})") from None
            empty = False
    if empty and not allow_empty:
        raise InputFileError(path, f"{what} has no rows")


def read_manifest(path: Path) -> list[dict]:
    """Every row of a manifest, as a list (for the steps that need them all at once)."""
    return list(iter_manifest(path))


def split_counts(rows: Iterable[dict]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = {}
    for row in rows:
        counts.setdefault(row["split"], Counter())[row["label"]] += 1
    return {split: dict(sorted(c.items())) for split, c in sorted(counts.items())}


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_version(rows: Iterable[dict]) -> str:
    """A hash of the data actually used: every sample's label, group, split and file md5."""
    # Only the hashed text of each row is kept for the sort, not the row, so that a
    # streamed manifest costs a string per sample.
    entries = sorted(
        ((row["id"], json.dumps([row["id"], row["label"], row["group"], row["split"], row["md5"]])) for row in rows),
        key=lambda entry: entry[0],
    )
    digest = hashlib.sha256()
    for _, text in entries:
        digest.update(text.encode())
    return digest.hexdigest()[:16]


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
