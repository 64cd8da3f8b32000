"""``insectml weights import``: bring a checkpoint as its publisher ships it (timm, torchvision,
open_clip) into ``<root>/weights/<NAME>/`` as safetensors with a manifest, after checking that it
loads into the architecture it claims.

Each source is one entry of :data:`IMPORTERS`: a function that reads the publisher's side files,
builds the architecture (on the ``meta`` device, so even a large model costs no memory) and says
which of its tensors form the class head. The rest is shared: the loading check, the store, DVC.
Heavy libraries are imported inside functions so the CLI's ``--help`` stays quick.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from insectml import __version__
from insectml.errors import ConfigError, InputFileError
from insectml.fileio import write_json_atomic
from insectml.weights.store import IMAGENET_MEAN, IMAGENET_STD, MANIFEST, WEIGHTS_DIR, WEIGHTS_FILE, load_state

log = logging.getLogger(__name__)

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
UNKNOWN_LICENCE = "unknown: check the publisher's licence before use"
LICENCE_FILES = ("LICENSE", "LICENSE.txt", "README.md")
TIMM_CONFIG = "config.json"
OPEN_CLIP_CONFIG = "open_clip_config.json"


@dataclass(frozen=True)
class ImportConfig:
    """What ``insectml weights import`` was asked to do."""

    source: str
    file: Path
    name: str
    model: str | None = None
    licence: str | None = None
    root: Path = Path(".")
    force: bool = False
    dvc: bool = True


@dataclass
class Built:
    """An architecture built for a checkpoint, and what the manifest says about it."""

    model: object  # torch.nn.Module, on the meta device
    architecture: dict
    mean: tuple[float, ...]
    std: tuple[float, ...]
    input_size: list[int] | None
    head_keys: frozenset[str] = field(default_factory=frozenset)


# --- building on the meta device -------------------------------------------------------------


@contextlib.contextmanager
def _quiet_libraries() -> Iterator[None]:
    """Silence the INFO/WARNING chatter of model factories (open_clip logs to the root logger
    that a model starts without pretrained weights, which is what we ask for)."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _on_meta(build: Callable[[], object]) -> object:
    """``build()`` with tensors on the meta device (no memory, no random init); on the CPU if
    the architecture's constructor needs real values."""
    import torch

    with _quiet_libraries():
        try:
            with torch.device("meta"):
                return build()
        except (RuntimeError, NotImplementedError) as exc:
            log.debug("building on the meta device failed (%s); building on the CPU", exc)
            return build()


def _shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@dataclass(frozen=True)
class ClassHead:
    """The tensors of an architecture whose shape depends on its number of classes, and their
    shapes when built for 2 and for 3 classes."""

    two: dict[str, tuple[int, ...]]
    three: dict[str, tuple[int, ...]]

    @property
    def keys(self) -> frozenset[str]:
        return frozenset(k for k in self.two.keys() | self.three.keys() if self.two.get(k) != self.three.get(k))

    def classes(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
        """The number of classes the first head tensor among ``shapes`` was made for (None if
        there is none): every class-dependent size is ``a * classes + b`` (91 scores, 4 * 91 box
        offsets, 9 anchors * 91 logits), which the two builds solve."""
        keys = self.keys
        for key in (k for k in shapes if k in keys and k in self.two and k in self.three):
            if len(shapes[key]) != len(self.two[key]):
                continue
            for size, s2, s3 in zip(shapes[key], self.two[key], self.three[key], strict=True):
                if s2 == s3:
                    continue
                classes, rest = divmod(size - (s2 - 2 * (s3 - s2)), s3 - s2)
                if rest == 0 and classes >= 1:
                    return classes
        return None


def class_head(build: Callable[[int], object]) -> ClassHead:
    """Find the class head of the architecture ``build(classes)`` makes by building it twice."""
    return ClassHead(_shapes(_on_meta(lambda: build(2))), _shapes(_on_meta(lambda: build(3))))


def _state_shapes(state: dict) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _triple(size) -> list[int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    return [3, int(h), int(w)]


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise InputFileError(path, "not a JSON object")
    return data


# --- the sources ------------------------------------------------------------------------------


def _timm(file: Path, arch: str | None, state: dict) -> Built:
    """A timm state dict; the architecture from ``--model`` or the hub's ``config.json``."""
    import timm

    config_path = file.parent / TIMM_CONFIG
    config = _read_json(config_path) if config_path.is_file() else {}
    arch = arch or config.get("architecture")
    if not arch:
        raise ConfigError(f"timm: give --model (no {TIMM_CONFIG} naming the architecture beside {file})")
    if not timm.is_model(arch):
        raise ConfigError(f"--model {arch}: not a timm architecture (see timm.list_models())")
    model_args = config.get("model_args", {}) if config.get("architecture") == arch else {}
    if model_args:
        log.info("timm model arguments from %s: %s", config_path, model_args)

    def build(classes: int):
        return timm.create_model(arch, pretrained=False, num_classes=classes, **model_args)

    head = class_head(build)
    classes = head.classes(_state_shapes(state))
    model = _on_meta(lambda: build(classes or 0))
    cfg = {**model.pretrained_cfg, **config.get("pretrained_cfg", {})}
    architecture = {"kind": "timm", "model": arch, "num_classes": classes or 0}
    if model_args:
        architecture["model_args"] = model_args
    return Built(
        model,
        architecture,
        tuple(cfg.get("mean", IMAGENET_MEAN)),
        tuple(cfg.get("std", IMAGENET_STD)),
        _triple(cfg["input_size"]) if cfg.get("input_size") else None,
        head.keys,
    )


def _torchvision(file: Path, arch: str | None, state: dict) -> Built:
    """A torchvision state dict (classifier or detector); ``--model`` names the builder."""
    import inspect

    import torchvision

    if not arch:
        raise ConfigError("torchvision: give --model (the torchvision.models.get_model name)")
    if arch not in torchvision.models.list_models():
        raise ConfigError(f"--model {arch}: not a torchvision model (see torchvision.models.list_models())")
    kwargs = {"weights": None}
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(arch)).parameters:
        kwargs["weights_backbone"] = None

    def build(classes: int | None):
        return torchvision.models.get_model(arch, **kwargs, **({} if classes is None else {"num_classes": classes}))

    head = class_head(build)
    classes = head.classes(_state_shapes(state))
    model = _on_meta(lambda: build(classes))
    # the input size: a detector's shorter side it resizes images to; a classifier's own (ViT),
    # else the crop its published weights were evaluated at
    size = getattr(model, "image_size", None)
    if hasattr(model, "transform") and hasattr(model.transform, "min_size"):
        size = max(model.transform.min_size)
    elif size is None:
        transforms = torchvision.models.get_model_weights(arch).DEFAULT.transforms
        size = getattr(transforms, "keywords", {}).get("crop_size")
    # without a head in the checkpoint the builder's default stands (91 COCO classes, 1000 ImageNet)
    architecture = {"kind": "torchvision", "model": arch, "num_classes": classes or head.classes(_shapes(model))}
    return Built(model, architecture, IMAGENET_MEAN, IMAGENET_STD, _triple(size) if size else None, head.keys)


def _open_clip(file: Path, arch: str | None, state: dict) -> Built:
    """An open_clip checkpoint (BioCLIP…); the architecture from ``--model`` or the model_cfg of
    the ``open_clip_config.json`` beside it."""
    import open_clip

    config_path = file.parent / OPEN_CLIP_CONFIG
    config = _read_json(config_path) if config_path.is_file() else {}
    model_cfg = None
    if arch:
        if arch not in open_clip.list_models():
            raise ConfigError(f"--model {arch}: not an open_clip architecture (see open_clip.list_models())")
    elif isinstance(config.get("model_cfg"), dict):
        model_cfg = config["model_cfg"]
        arch = next((n for n in open_clip.list_models() if open_clip.get_model_config(n) == model_cfg), None)
        if arch:
            model_cfg = None
            log.info("the model_cfg of %s is open_clip's %s", config_path, arch)
    else:
        raise ConfigError(f"open_clip: give --model (no {OPEN_CLIP_CONFIG} with a model_cfg beside {file})")

    options = {"pretrained": None, "load_weights": False, "pretrained_image": False, "pretrained_text": False}
    if model_cfg is None:
        model = _on_meta(lambda: open_clip.create_model(arch, device="meta", **options))
    else:
        # a custom architecture: open_clip reads it from a folder holding its config
        with tempfile.TemporaryDirectory() as tmp:
            write_json_atomic(Path(tmp) / OPEN_CLIP_CONFIG, {"model_cfg": model_cfg})
            try:
                model = _on_meta(lambda: open_clip.create_model(f"local-dir:{tmp}", device="meta", **options))
            except (KeyError, TypeError, ValueError, RuntimeError) as exc:
                why = f"{type(exc).__name__}: {exc}".splitlines()[0]
                raise InputFileError(config_path, f"model_cfg is not an open_clip architecture ({why})") from None
    preprocess = config.get("preprocess_cfg", {})
    architecture = {"kind": "open_clip", "model": arch}
    if model_cfg is not None:
        architecture["model_cfg"] = model_cfg
    size = getattr(model.visual, "image_size", None)
    return Built(
        model,
        architecture,
        tuple(preprocess.get("mean", open_clip.OPENAI_DATASET_MEAN)),
        tuple(preprocess.get("std", open_clip.OPENAI_DATASET_STD)),
        _triple(size) if size else None,
    )


IMPORTERS: dict[str, Callable[[Path, str | None, dict], Built]] = {
    "timm": _timm,
    "torchvision": _torchvision,
    "open_clip": _open_clip,
}
SOURCES = tuple(IMPORTERS)


# --- the loading check ------------------------------------------------------------------------


def check_loads(built: Built, state: dict, file: Path) -> list[str]:
    """Load ``state`` into the built architecture; return the class-head tensors that did not fit
    (missing, unexpected or of another shape). Any other misfit is the user's: InputFileError."""
    model = built.model
    expected = _shapes(model)
    reshaped = {k for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]}
    fitting = {k: v for k, v in state.items() if k not in reshaped}
    try:
        # assign: the meta tensors become the checkpoint's, so nothing is copied
        result = model.load_state_dict(fitting, strict=False, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise InputFileError(file, f"does not load into {_label(built)}: {first}") from None
    absent = set(result.missing_keys) | reshaped
    misfits = [*(k for k in expected if k in absent), *result.unexpected_keys]
    head = [k for k in misfits if k in built.head_keys]
    others = [k for k in misfits if k not in built.head_keys]
    if others:
        extra = len(set(others) & set(result.unexpected_keys))
        wrong = len(others) - extra
        more = f", {extra} unexpected" if extra else ""
        raise InputFileError(
            file,
            f"does not load into {_label(built)}: {wrong} of {len(expected)} tensors missing or of another "
            f"shape{more} (e.g. {others[0]})",
        )
    if head:
        log.warning(
            "%s: the class head does not fit %s (%s); it starts untrained",
            file,
            _label(built),
            ", ".join(head),
        )
    return head


def _label(built: Built) -> str:
    arch = built.architecture
    return f"{arch['kind']} {arch['model'] or 'custom model_cfg'}"


# --- the store --------------------------------------------------------------------------------


def storable(state: dict) -> dict:
    """The tensors as safetensors wants them: contiguous, none sharing memory with another."""
    seen: set[int] = set()
    out = {}
    for key, tensor in state.items():
        tensor = tensor.contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        out[key] = tensor
    return out


def _save_tensors(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(storable(state), tmp, metadata={"format": "pt"})
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; give it open()'s mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def find_licence(folder: Path) -> str | None:
    """The licence the publisher states beside the checkpoint: the first line of LICENSE(.txt),
    or a ``license:`` line of README.md (the Hugging Face model card's metadata)."""
    for name in LICENCE_FILES:
        path = folder / name
        if not path.is_file():
            continue
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        if name == "README.md":
            found = next((line.split(":", 1)[1].strip() for line in lines if line.lower().startswith("license:")), "")
        else:
            found = next((line for line in lines if line), "")
        if found:
            return f"{found[:200]} ({name})"
    return None


def weights_dir(root: Path, name: str) -> Path:
    """``<root>/weights/<name>``, after checking that ``name`` is a valid weights NAME."""
    if not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"--name {name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit")
    return Path(root) / WEIGHTS_DIR / name


def import_weights(cfg: ImportConfig) -> Path:
    """Check that ``cfg.file`` loads into its architecture, store it as
    ``<root>/weights/<NAME>/{weights.safetensors,manifest.json}`` and track it with DVC.
    Returns the folder."""
    from insectml.weights.store import sha256_file

    if cfg.source not in IMPORTERS:
        raise ConfigError(f"unknown source {cfg.source!r}; choose one of {', '.join(SOURCES)}")
    target = weights_dir(cfg.root, cfg.name)
    if target.exists() and not cfg.force:
        raise ConfigError(f"{target} already exists; choose another --name or replace it with --force")
    if target.exists() and not (target / MANIFEST).is_file():
        raise ConfigError(f"{target} exists and was not made by 'insectml weights import'; move it away first")

    log.info("loading %s (%.1f MB)", cfg.file, cfg.file.stat().st_size / 1e6)
    state = load_state(cfg.file)
    if all(k.startswith("module.") for k in state):
        # saved from a DataParallel wrapper: the tensors' names carry its prefix
        state = {k.removeprefix("module."): v for k, v in state.items()}
    log.info("building %s %s and loading %d tensors into it", cfg.source, cfg.model or "(from its config)", len(state))
    built = IMPORTERS[cfg.source](cfg.file, cfg.model, state)
    head_mismatch = check_loads(built, state, cfg.file)

    licence = cfg.licence or find_licence(cfg.file.parent)
    if licence is None:
        log.warning("no licence given (--licence) or found beside %s: check the publisher's before use", cfg.file)
    log.info("hashing %s", cfg.file)
    source_sha256 = sha256_file(cfg.file)

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        log.info("writing %s", target / WEIGHTS_FILE)
        _save_tensors(state, tmp / WEIGHTS_FILE)
        manifest = {
            "name": cfg.name,
            "file": WEIGHTS_FILE,
            "architecture": built.architecture,
            "source": {"file": cfg.file.name, "sha256": source_sha256},
            "source_sha256": source_sha256,
            "sha256": sha256_file(tmp / WEIGHTS_FILE),
            "licence": licence or UNKNOWN_LICENCE,
            "input_size": built.input_size,
            "mean": [float(x) for x in built.mean],
            "std": [float(x) for x in built.std],
            "parameters": sum(p.numel() for p in built.model.parameters()),
            "tensors": len(state),
            "head_mismatch": head_mismatch,
            "imported": datetime.now(UTC).isoformat(timespec="seconds"),
            "insectml": __version__,
        }
        write_json_atomic(tmp / MANIFEST, manifest)
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("stored %s weights %s (%d tensors, sha256 %s)", cfg.source, target, len(state), manifest["sha256"][:12])
    if cfg.dvc and (Path(cfg.root) / ".dvc").is_dir():
        dvc_add(Path(cfg.root), cfg.name)
    elif cfg.dvc:
        log.info("%s is not a DVC repository: %s is not tracked (dvc init, then dvc add it)", cfg.root, target)
    return target


def _swap_in(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``; an existing ``target`` (ours: it has a manifest) is
    replaced, so a reader sees the old folder or the new one."""
    if not target.exists():
        os.rename(new, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(new, target)
    except BaseException:
        os.rename(old / target.name, target)
        raise
    shutil.rmtree(old)


def dvc_add(root: Path, name: str) -> Path:
    """``dvc add weights/NAME`` in the DVC repository ``root`` (with this environment's dvc),
    then print what to commit. Returns the .dvc file."""
    dvc = Path(sys.executable).parent / "dvc"
    folder = Path(WEIGHTS_DIR) / name
    log.info("dvc add %s", folder)
    done = subprocess.run([str(dvc), "add", "-q", str(folder)], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise ConfigError(f"dvc add {folder} failed ({why}); the weights are stored in {root / folder}, untracked")
    commit = [
        f"{folder}.dvc",
        *([f"{WEIGHTS_DIR}/.gitignore"] if (root / WEIGHTS_DIR / ".gitignore").is_file() else []),
    ]
    print(f"tracked by DVC: git add {' '.join(commit)} && git commit, then dvc push")
    return root / f"{folder}.dvc"


def list_weights(root: Path) -> list[dict]:
    """The manifests of the weights imported under ``<root>/weights``, by name."""
    folder = Path(root) / WEIGHTS_DIR
    manifests = []
    for path in sorted(folder.glob(f"*/{MANIFEST}")) if folder.is_dir() else []:
        if not path.parent.name.startswith("."):
            manifests.append(_read_json(path))
    return manifests
