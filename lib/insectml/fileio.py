"""Writing files so that a kill leaves the old file or the new one, never half of one.

One mechanism: write a temporary file (or folder) beside the target, in the same folder
so that the rename stays on one file system, then ``os.replace`` it over the target.
Binary writers take the handle of :func:`open_atomic` (``torch.save(obj, fh)``,
``np.savez(fh, …)``); a set of files that must change together is written into
:func:`staged_folder`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def open_atomic(path: Path, mode: str = "w") -> Iterator[IO]:
    """A file handle on a temporary file beside ``path`` (text in UTF-8, or binary with
    ``mode="wb"``), renamed over ``path`` when the block ends without an exception, for
    outputs written piece by piece (a manifest row by row, an archive member by member,
    ``torch.save``, ``np.savez``). On an exception the temporary file is removed and
    ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would have
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    with open_atomic(path) as fh:
        fh.write(text)
    return Path(path)


def write_json_atomic(path: Path, data, **dumps) -> Path:
    """``data`` as JSON (indent 2 unless told otherwise, a final newline), atomically."""
    dumps.setdefault("indent", 2)
    return write_text_atomic(path, json.dumps(data, **dumps) + "\n")


def copy_atomic(src: Path, dest: Path) -> Path:
    """Copy the file ``src`` to ``dest`` through a temporary file beside ``dest``."""
    with Path(src).open("rb") as source, open_atomic(dest, "wb") as fh:
        shutil.copyfileobj(source, fh)
    return Path(dest)


@contextlib.contextmanager
def staged_folder(dest: Path) -> Iterator[Path]:
    """An empty folder beside ``dest`` to write a set of files into that must change
    together; when the block ends without an exception it is renamed to ``dest``, else it
    is removed and ``dest`` is left as it was.

    An existing ``dest`` is replaced whole, with everything in it: the caller checks that
    it is a folder of ours. Replacing takes two renames (the old folder aside, the new one
    in); a kill between them leaves the old folder beside ``dest`` as ``.<name>.*.old``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        os.chmod(stage, 0o777 & ~_umask())
        yield stage
        _rename_folder(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _rename_folder(src: Path, dest: Path) -> None:
    try:
        os.rename(src, dest)  # no dest, or an empty folder: one atomic rename
        return
    except OSError:
        if not dest.is_dir() or dest.is_symlink():
            raise
    aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
    os.rename(dest, aside)  # onto the empty folder just made
    try:
        os.rename(src, dest)
    except BaseException:
        os.rename(aside, dest)
        raise
    shutil.rmtree(aside, ignore_errors=True)
