"""Validation as three steps that a pipeline scatters over tasks — list the candidates,
check them in chunks, gather — shared by the families: the step files' names, the rows of
every checked chunk in order, and the three steps in one process."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from insectml.data.manifest import iter_manifest, read_json
from insectml.errors import ConfigError, InputFileError

# Files of the three validation steps.
CANDIDATES = "candidates.jsonl"
LISTING = "listing.json"
CHECKED = "checked.jsonl"


def in_one_process(cfg, list_candidates: Callable, check_candidates: Callable, gather: Callable) -> dict:
    """A family's ``list_candidates(cfg)``, ``check_candidates(candidates, cfg, out)`` and
    ``gather(listing, [checked], cfg)`` in one process, through a temporary folder inside
    ``cfg.out_dir``, so the files written are byte-identical to those of the steps run as
    chunks over several tasks. Returns what ``gather`` returns."""
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".validate-", dir=cfg.out_dir) as tmp:
        work = Path(tmp)
        list_candidates(replace(cfg, out_dir=work))
        check_candidates(work / CANDIDATES, cfg, work / CHECKED)
        return gather(work / LISTING, [work / CHECKED], cfg)


def read_listing(path: Path, keys: set[str], cfg, settings: dict[str, str]) -> dict:
    """The listing.json of a list step, with ``keys`` and ``settings``; each setting (a
    ``cfg`` field → its flag) must equal ``cfg``'s, since the gather records it as what the
    list step used (a split recorded under another seed than the cap used would lie)."""
    listing = read_json(path, "listing")
    missing = (keys | {"settings"}) - set(listing)
    if missing:
        raise InputFileError(path, f"not a listing of 'validate --list-only' (lacks {', '.join(sorted(missing))})")
    for key, flag in settings.items():
        if listing["settings"].get(key) != getattr(cfg, key):
            raise ConfigError(
                f"{flag} {getattr(cfg, key)}: the candidates were listed with {listing['settings'].get(key)} "
                f"({path}); give every step the same settings"
            )
    return listing


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
