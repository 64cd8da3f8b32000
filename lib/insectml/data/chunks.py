"""Gathering the chunks of a scattered step: the rows of every checked chunk, in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from insectml.data.manifest import iter_manifest
from insectml.errors import InputFileError


def checked_rows(checked: Sequence[Path], expected: int) -> Iterator[dict]:
    """The rows of the checked files (each row numbered by ``n``) in candidate order, the
    files sorted by their first row's number, whatever order they are given in. A number
    out of sequence means a chunk given twice or one missing: :class:`InputFileError`.
    The caller compares the count with ``expected`` once the rows are read."""
    firsts = []
    for path in checked:
        first = next(iter_manifest(path, "checked file", allow_empty=True), None)
        if first is not None:
            if not isinstance(first, dict) or "n" not in first:
                raise InputFileError(path, "not a checked file (from 'validate --check')")
            firsts.append((first["n"], str(path), path))
    n = 0
    for _, _, path in sorted(firsts):
        for number, row in enumerate(iter_manifest(path, "checked file"), start=1):
            if not isinstance(row, dict) or row.get("n") != n:
                found = row.get("n") if isinstance(row, dict) else None
                raise InputFileError(
                    path,
                    f"line {number} is candidate {found}, expected {n}: a chunk of the {expected} candidates is "
                    "missing or given twice",
                )
            n += 1
            yield row
