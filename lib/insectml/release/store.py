"""The model store: released archives and their cards, ``<store>/<name>/<version>/``.

A folder by default; any fsspec URL (``s3://bucket/models``, ``ssh://host/path``,
``file:///shared/models``) when configured, through the same calls.

A version is written into a hidden staging folder beside it and renamed into place when
complete, so a release killed half-way leaves no half version (on a local or mounted
folder the rename is atomic; an object store has no rename, fsspec copies). Every name,
version and file name that goes into a path is a single name, checked: a card read from
the store cannot point outside it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path

from insectml.errors import ConfigError
from insectml.fileio import open_atomic


def file_name(value: object, what: str) -> str:
    """``value`` if it is a single file or folder name (no separator, not ``.`` or ``..``);
    else :class:`ConfigError` saying ``what`` it was."""
    if not isinstance(value, str) or value in ("", ".", "..") or any(c in value for c in "/\\\0"):
        raise ConfigError(f"{what}: {value!r} is not a plain name (no folders, no '..')")
    return value


class ModelStore:
    def __init__(self, url: str | Path) -> None:
        import fsspec

        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"--store {self.url}: {exc}") from None

    def _path(self, *parts: str) -> str:
        for part in parts:
            file_name(part, f"model store {self.url}")
        return "/".join([self.root.rstrip("/"), *parts])

    def put(self, name: str, version: str, files: list[Path]) -> str:
        """Copy ``files`` into ``<name>/<version>/``; an existing version is never overwritten,
        and a copy that fails or is killed leaves no version folder."""
        folder = self._path(name, version)
        if self.fs.exists(folder):
            raise ConfigError(f"model store {self.url}: {name}/{version} already exists")
        stage = self._path(name, f".{version}.{secrets.token_hex(4)}.staging")
        self.fs.makedirs(stage, exist_ok=True)
        try:
            for f in files:
                self.fs.put_file(str(f), f"{stage}/{f.name}")
            self._rename(stage, folder, f"{name}/{version}")
        except BaseException:
            if self.fs.exists(stage):
                self.fs.rm(stage, recursive=True)
            raise
        return folder

    def _rename(self, stage: str, folder: str, label: str) -> None:
        from fsspec.implementations.local import LocalFileSystem

        if isinstance(self.fs, LocalFileSystem):
            try:
                os.rename(stage, folder)  # fails on a non-empty folder; fsspec's mv would move into it
            except OSError:
                raise ConfigError(f"model store {self.url}: {label} already exists") from None
            return
        if self.fs.exists(folder):
            raise ConfigError(f"model store {self.url}: {label} already exists")
        self.fs.mv(stage, folder, recursive=True)

    def card(self, name: str, version: str) -> dict | None:
        path = self._path(name, version, "model_card.json")
        if not self.fs.exists(path):
            return None
        try:
            with self.fs.open(path, "r") as fh:
                card = json.load(fh)
        except ValueError as exc:
            raise ConfigError(f"model store {self.url}: {name}/{version}/model_card.json: not JSON ({exc})") from None
        if not isinstance(card, dict):
            raise ConfigError(f"model store {self.url}: {name}/{version}/model_card.json: not a JSON object")
        return card

    def fetch(self, name: str, version: str, filename: str, dest: Path) -> Path:
        """Copy one released file to ``dest`` (a local folder), atomically; return its path."""
        src = self._path(name, version, file_name(filename, f"model store {self.url}: {name}/{version}: file"))
        if not self.fs.exists(src):
            raise ConfigError(f"model store {self.url}: {name}/{version}/{filename} not found")
        with self.fs.open(src, "rb") as source, open_atomic(Path(dest) / filename, "wb") as fh:
            shutil.copyfileobj(source, fh)
        return Path(dest) / filename
