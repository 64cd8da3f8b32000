"""The model store: released archives and their cards, ``<store>/<name>/<version>/``.

A folder by default; any fsspec URL (``s3://bucket/models``, ``ssh://host/path``,
``file:///shared/models``) when configured, through the same calls.
"""

from __future__ import annotations

import json
from pathlib import Path

from insectml.errors import ConfigError


class ModelStore:
    def __init__(self, url: str | Path) -> None:
        import fsspec

        self.url = str(url)
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"--store {self.url}: {exc}") from None

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def put(self, name: str, version: str, files: list[Path]) -> str:
        """Copy ``files`` into ``<name>/<version>/``; an existing version is never overwritten."""
        folder = self._path(name, version)
        if self.fs.exists(folder):
            raise ConfigError(f"model store {self.url}: {name}/{version} already exists")
        self.fs.makedirs(folder, exist_ok=True)
        for f in files:
            self.fs.put_file(str(f), f"{folder}/{f.name}")
        return folder

    def card(self, name: str, version: str) -> dict | None:
        path = self._path(name, version, "model_card.json")
        if not self.fs.exists(path):
            return None
        with self.fs.open(path, "r") as fh:
            return json.load(fh)

    def fetch(self, name: str, version: str, filename: str, dest: Path) -> Path:
        """Copy one released file to ``dest`` (a local folder); return its path."""
        src = self._path(name, version, filename)
        if not self.fs.exists(src):
            raise ConfigError(f"model store {self.url}: {name}/{version}/{filename} not found")
        dest.mkdir(parents=True, exist_ok=True)
        self.fs.get_file(src, str(dest / filename))
        return dest / filename
