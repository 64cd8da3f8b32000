"""Where imported weights live and how a ``--*_weights`` value is found.

``insectml weights import`` writes ``<root>/weights/<NAME>/weights.safetensors`` (no
pickle) and ``manifest.json`` (architecture, source, sha256, licence, input size and
normalisation). Every ``--*_weights`` param takes either a state-dict file (``.pt``,
``.pth``, ``.bin`` or ``.safetensors``), a folder holding a manifest, or a bare NAME, looked
up in the folders of ``$INSECTML_WEIGHTS_PATH`` (``:``-separated) and then in ``./weights``
(the pipeline resolves a NAME the same way before any task and stages what it finds).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from insectml.errors import InputFileError

WEIGHTS_DIR = "weights"
WEIGHTS_FILE = "weights.safetensors"
MANIFEST = "manifest.json"
STATE_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
SEARCH_ENV = "INSECTML_WEIGHTS_PATH"
# ImageNet's, which timm and torchvision default to when a manifest names none.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Weights:
    """A resolved ``--*_weights`` value: the tensors' file, its manifest (empty for a bare
    state-dict file) and the file's sha256 (what lineage records)."""

    path: Path
    sha256: str
    manifest: dict = field(default_factory=dict, compare=False)

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def kind(self) -> str | None:
        """``timm``, ``torchvision`` or ``open_clip``; None for a bare state dict."""
        return self.manifest.get("architecture", {}).get("kind")

    @property
    def model(self) -> str | None:
        """The architecture's name in its library (``resnet50``, ``ViT-B-16``…)."""
        return self.manifest.get("architecture", {}).get("model")

    @property
    def mean(self) -> tuple[float, ...]:
        return tuple(self.manifest.get("mean", IMAGENET_MEAN))

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(self.manifest.get("std", IMAGENET_STD))

    @property
    def input_size(self) -> int | None:
        """The side in pixels the weights were trained at, when the manifest says."""
        size = self.manifest.get("input_size")
        return int(size[-1]) if size else None

    def lineage(self) -> dict:
        """What lineage.json records about the weights a model started from."""
        keys = ("name", "architecture", "source", "source_sha256", "licence")
        return {"path": str(self.path), "sha256": self.sha256} | {
            k: self.manifest[k] for k in keys if k in self.manifest
        }


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def search_dirs() -> list[Path]:
    """The folders a bare NAME is looked up in, in order."""
    dirs = [Path(d) for d in os.environ.get(SEARCH_ENV, "").split(os.pathsep) if d]
    return [*dirs, Path.cwd() / WEIGHTS_DIR]


def looks_like_name(value: str) -> bool:
    """A bare NAME: no folder part and no state-dict suffix."""
    return "/" not in value and os.sep not in value and not value.endswith(STATE_SUFFIXES)


def find(value: str | Path) -> Path | None:
    """The file or folder ``value`` names, or None."""
    path = Path(value)
    if path.exists():
        return path
    if looks_like_name(str(value)):
        for folder in search_dirs():
            if (folder / str(value) / MANIFEST).is_file():
                return folder / str(value)
    return None


def resolve(value: str | Path) -> Weights:
    """The weights ``value`` names: a state-dict file, a folder with a manifest, or a NAME."""
    path = find(value)
    if path is None:
        where = ", ".join(str(d) for d in search_dirs())
        hint = f" and no imported weights of that name in {where}" if looks_like_name(str(value)) else ""
        raise InputFileError(value, f"weights not found (no such file{hint}); see 'insectml weights import --help'")
    if path.is_dir():
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise InputFileError(path, f"a weights folder needs {MANIFEST} (made by 'insectml weights import')")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise InputFileError(manifest_path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
        tensors = path / manifest.get("file", WEIGHTS_FILE)
        if not tensors.is_file():
            raise InputFileError(tensors, "weights file missing (not pulled? try 'dvc pull')")
        return Weights(tensors, sha256_file(tensors), manifest)
    return Weights(path, sha256_file(path), {})


def load_state(weights: Weights | Path) -> dict:
    """The tensors of a weights file by name (safetensors, or a ``torch.load``-able state dict
    loaded with ``weights_only=True``; a checkpoint's ``state_dict``/``model`` entry is unwrapped)."""
    import torch

    path = weights.path if isinstance(weights, Weights) else Path(weights)
    if not path.is_file():
        raise InputFileError(path, "weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputFileError(path, f"not a readable state dict ({type(exc).__name__})") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputFileError(path, "holds no tensors by name (not a state dict)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
