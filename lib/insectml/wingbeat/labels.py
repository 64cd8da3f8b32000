"""The labels CSV: one row per recording, with its species and recording event."""

from __future__ import annotations

import csv
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from insectml.errors import InputFileError

REQUIRED_COLUMNS = ("path", "species")


@dataclass(frozen=True)
class LabelRow:
    line: int
    path: str
    species: str
    group: str


def read_labels(csv_path: Path, group_by: str) -> list[LabelRow]:
    """Read the labels CSV; missing columns or an empty file raise :class:`InputFileError`.

    Per-row problems (empty cells) are left to validation, which reports them all.
    """
    if not csv_path.is_file():
        raise InputFileError(csv_path, "labels file not found")
    try:
        # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark before the header
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = reader.fieldnames or []
            needed = [*REQUIRED_COLUMNS, group_by]
            missing = [c for c in needed if c not in columns]
            if missing:
                found = ", ".join(columns) if columns else "none"
                raise InputFileError(
                    csv_path, f"missing column(s) {', '.join(repr(m) for m in missing)} (found: {found})"
                )
            rows = [
                LabelRow(
                    line=reader.line_num,
                    path=(row.get("path") or "").strip(),
                    species=_name((row.get("species") or "").strip()),
                    group=(row.get(group_by) or "").strip(),
                )
                for row in reader
            ]
    except UnicodeDecodeError:
        raise InputFileError(csv_path, "not a UTF-8 text CSV file") from None
    except csv.Error as exc:
        raise InputFileError(csv_path, f"malformed CSV ({exc})") from None
    if not rows:
        raise InputFileError(csv_path, "no rows below the header")
    return rows


def read_classes(path: Path) -> list[str]:
    """One class name per line; blank lines and ``#`` comments ignored."""
    if not path.is_file():
        raise InputFileError(path, "classes file not found")
    try:
        names = [_name(ln.strip()) for ln in path.read_text(encoding="utf-8-sig").splitlines()]
    except UnicodeDecodeError:
        raise InputFileError(path, "not a UTF-8 text file") from None
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise InputFileError(path, "lists no classes")
    if len(set(names)) != len(names):
        raise InputFileError(path, "lists a class more than once")
    return names


AUDIO_SUFFIXES = (".wav", ".WAV")


def _name(text: str) -> str:
    """A class name as written, in Unicode NFC: a folder copied from macOS spells "è" as
    e + combining accent, a CSV or classes.txt as one letter; both are the same class."""
    return unicodedata.normalize("NFC", text)


def read_folder_layout(root: Path, group_by: str) -> list[LabelRow]:
    """Rows for a ``<species>/<...>/<file>.wav`` tree (the public Wingbeats layout).

    ``group_by`` is ``path:N``: the N-th component of the path below ``root``
    (0 = the species folder, 1 = the folder below it, …) groups recordings for the split.
    """
    from insectml.errors import ConfigError

    if not group_by.startswith("path:") or not group_by[5:].isdigit():
        raise ConfigError(f"--group-by {group_by!r}: the folder layout needs path:N (e.g. path:1)")
    component = int(group_by[5:])
    files = sorted(p for p in root.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise InputFileError(root, "no .wav files below this folder")
    rows = []
    for number, path in enumerate(files, start=1):
        parts = path.relative_to(root).parts
        if len(parts) < 2:
            raise InputFileError(path, "lies directly in the data folder; expected <species>/.../<file>.wav")
        if component >= len(parts) - 1:
            raise InputFileError(path, f"has no folder at path component {component} to group by")
        rows.append(LabelRow(line=number, path="/".join(parts), species=_name(parts[0]), group=parts[component]))
    return rows
