"""Manifests: the contract between pipeline steps.

``manifest.jsonl`` has one row per sample (id, path, label, group, split);
``dataset.json`` holds the class list, counts, split settings and version hashes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from insectml.errors import InputFileError


def write_manifest(rows: Iterable[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, sort_keys=True) + "\n")


def read_manifest(path: Path) -> list[dict]:
    if not path.is_file():
        raise InputFileError(path, "manifest not found")
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise InputFileError(path, f"line {number} is not JSON ({exc.msg})") from None
    if not rows:
        raise InputFileError(path, "manifest has no rows")
    return rows


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
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: r["id"]):
        digest.update(json.dumps([row["id"], row["label"], row["group"], row["split"], row["md5"]]).encode())
    return digest.hexdigest()[:16]


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise InputFileError(path, f"{what} not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
