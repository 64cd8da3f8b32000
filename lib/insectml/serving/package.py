"""Build Multi Model Server archives (.mar) from model directories."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import insectml
from insectml.errors import ConfigError, InputFileError, UserError
from insectml.modeldir import SHA256, WEIGHTS_FILES, file_sha256
from insectml.spec import Family

# What each family's archive holds besides the model folder: extra inputs (flag -> their
# names inside the archive) and the handler's settings (serving.json).
_EXTRAS = {
    "detector": {"torchscript": lambda p: {"model.torchscript.pt": p}},
    "fewshot": {"gallery": lambda p: {f"gallery/{n}": p / n for n in ("gallery.npz", "gallery.json")}},
}
_SETTINGS = {"detector": ("score_threshold",), "fewshot": ("top_k",)}


def package(
    family: Family, model_dir: Path, name: str, out_dir: Path, extras: dict[str, Path | None], settings: dict
) -> Path:
    """``out_dir/<name>.mar`` for a model of ``family``: its handler, the extra inputs
    it needs (``extras``: detector ``torchscript``, few-shot ``gallery``) and its
    serving settings, checked before anything is packed."""
    extra_files: dict[str, Path] = {}
    for key, files in _EXTRAS.get(family.name, {}).items():
        if extras.get(key) is None:
            raise ConfigError(f"--{key} is required to package a {family.name} model")
        extra_files.update(files(extras[key]))
    if family.name == "fewshot":
        from insectml.fewshot.gallery import Gallery

        Gallery.load(extras["gallery"])  # a clear error before packing a broken gallery
    wanted = _SETTINGS.get(family.name, ())
    serving = {k: settings[k] for k in wanted} or None
    if "score_threshold" in wanted and not 0 <= serving["score_threshold"] <= 1:
        raise ConfigError(f"--score-threshold {serving['score_threshold']}: expected a score in [0, 1]")
    return build_mar(model_dir, name, family.handler, out_dir, extra_files=extra_files, serving=serving)


def build_mar(
    model_dir: Path,
    name: str,
    handler_module: str,
    out_dir: Path,
    extra_files: dict[str, Path] | None = None,
    serving: dict | None = None,
) -> Path:
    """Pack ``model_dir``, a copy of the insectml library and a handler shim into
    ``out_dir/<name>.mar``. The archive serves without insectml installed on the server.

    ``extra_files``: archive name → file to add (e.g. a TorchScript export);
    ``serving``: settings for the handler, written as ``serving.json``."""
    if not (model_dir / "lineage.json").is_file():
        raise InputFileError(model_dir, "model directory has no lineage.json; it was not made by 'train'")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mar-") as tmp:
        staging = Path(tmp) / name
        shutil.copytree(model_dir, staging, ignore=shutil.ignore_patterns("checkpoints"))
        shutil.copytree(
            Path(insectml.__file__).parent,
            staging / "insectml",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        for arcname, path in (extra_files or {}).items():
            if not path.is_file():
                raise InputFileError(path, "file to archive not found")
            (staging / arcname).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, staging / arcname)
        _record_sha256(staging, [a for a in (extra_files or {}) if a in WEIGHTS_FILES])
        if serving is not None:
            (staging / "serving.json").write_text(json.dumps(serving, indent=2) + "\n")
        (staging / "handler.py").write_text(
            f'"""Multi Model Server entry point for {name}."""\nfrom {handler_module} import handle  # noqa: F401\n'
        )
        (staging / "archive.json").write_text(
            json.dumps({"name": name, "handler": handler_module, "insectml": insectml.__version__}, indent=2) + "\n"
        )
        archiver = shutil.which("model-archiver") or str(Path(sys.executable).with_name("model-archiver"))
        cmd = [
            archiver,
            "--model-name",
            name,
            "--model-path",
            str(staging),
            "--handler",
            "handler:handle",
            "--export-path",
            str(out_dir),
            "--force",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"model-archiver failed for {model_dir}: {done.stderr.strip()[-300:]}")
    mar = out_dir / f"{name}.mar"
    if not mar.is_file():
        raise UserError(f"model-archiver reported success but wrote no {mar}")
    return mar


def _record_sha256(staging: Path, names: list[str]) -> None:
    """Add the sha256 of the model files ``names`` packed beside the model folder (a detector's
    TorchScript) to the staged lineage.json, so loading them in the server verifies them too."""
    if not names:
        return
    path = staging / "lineage.json"
    record = json.loads(path.read_text())
    record.setdefault(SHA256, {}).update({n: file_sha256(staging / n) for n in names})
    path.write_text(json.dumps(record, indent=2) + "\n")
