"""SimCLR (Chen et al. 2020): a timm backbone learns from unlabelled images by pulling two
augmented views of each image together and pushing the other images of the batch apart
(the NT-Xent loss on a 2-layer projection head, which is dropped at the end).

:func:`pretrain` lists the images of a folder (recursively, sorted; unreadable ones skipped
with a warning), trains with the shared loop (:func:`insectml.training.loop.fit`: a fixed
budget, checkpoints, resume, history) and writes ``OUT/NAME/`` in the layout of
``insectml weights import`` (``weights.safetensors`` + ``manifest.json``, so every
``--*_weights`` param takes it) plus the Hugging Face timm layout (``model.safetensors`` +
``config.json``, so ``insectml weights import timm OUT/NAME/model.safetensors`` takes it too)
and ``history.jsonl``. The same images, settings and seed give the same tensors on the CPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from insectml import __version__, lineage
from insectml.errors import ConfigError, InputFileError, UserError
from insectml.fileio import write_json_atomic
from insectml.pretrain.params import PARAMS
from insectml.training.loop import LoopConfig, config_fingerprint, declared_loop, fit, lineage_settings
from insectml.weights.backbones import Architecture, build_backbone, image_backbone
from insectml.weights.importers import NAME_PATTERN, TIMM_CONFIG, storable
from insectml.weights.store import IMAGENET_MEAN, IMAGENET_STD, MANIFEST, WEIGHTS_FILE, Weights, sha256_file

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
PROJECTION_DIM = 128  # SimCLR's
HUB_WEIGHTS = "model.safetensors"  # the Hugging Face timm layout's tensors (beside config.json)
HISTORY = "history.jsonl"
LICENCE = "yours: pretrained by insectml on your images"
WORK_MARKER = "insectml-pretrain"  # in OUT/.NAME.training: the folder is ours to delete
SHOWN_PROBLEMS = 10  # unreadable images named one by one in the log; the rest counted
# Colour jitter changes brightness, contrast and saturation, never hue: colour can be what
# tells two species apart, so the backbone must not learn to ignore it. Gaussian blur only
# from this side up: at the small sizes insect crops are trained at it erases the detail.
JITTER = {"brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.0}
BLUR_FROM = 96


@dataclass(frozen=True)
class PretrainConfig:
    images: Path
    out_dir: Path  # OUT: the weights go to OUT/NAME
    name: str = PARAMS.default("pretrain_name")
    method: str = PARAMS.default("pretrain_method")
    backbone: str = PARAMS.default("pretrain_backbone")
    weights: Weights | None = None  # store.resolve of --weights
    image_size: int = PARAMS.default("pretrain_image_size")
    max_images: int = PARAMS.default("pretrain_max_images")
    temperature: float = PARAMS.default("pretrain_temperature")
    loop: LoopConfig = field(default_factory=partial(declared_loop, PARAMS))


# --- the images ----------------------------------------------------------------------------


def list_images(folder: Path) -> list[Path]:
    """Every file with an image suffix under ``folder``, recursively, sorted; hidden files and
    folders (``.DS_Store``, macOS ``._*`` companions) left out."""
    found = (
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )
    return sorted(found)


def sample_images(paths: list[Path], n: int, seed: int) -> list[Path]:
    """At most ``n`` of ``paths`` (0: all), a sample seeded by ``seed``, in their order."""
    if n == 0 or n >= len(paths):
        return paths
    chosen = np.random.default_rng(seed).choice(len(paths), n, replace=False)
    return [paths[i] for i in sorted(chosen)]


@dataclass(frozen=True)
class ImageList:
    """The images training reads, the problems of those skipped, and a digest of the
    images used (their paths below the folder and their contents)."""

    paths: list[Path]
    problems: list[str]
    sha256: str


def readable_images(folder: Path, paths: list[Path]) -> ImageList:
    """``paths`` that decode completely (not truncated, at least 8 px a side)."""
    from tqdm import tqdm

    from insectml.data.images import open_image

    good, problems, digest = [], [], hashlib.sha256()
    for path in tqdm(paths, desc="checking images", unit="image", leave=False, disable=None):
        name = str(path.relative_to(folder))
        try:
            body = path.read_bytes()
            open_image(body, name=name)
        except OSError as exc:
            problems.append(f"{name}: not readable ({exc.strerror or type(exc).__name__})")
            continue
        except UserError as exc:
            problems.append(str(exc))
            continue
        good.append(path)
        digest.update(f"{name}\0{hashlib.sha256(body).hexdigest()}\n".encode())
    return ImageList(good, problems, digest.hexdigest())


def simclr_views(size: int, mean: tuple[float, ...], std: tuple[float, ...]):
    """SimCLR's augmentation: a random crop of 20-100 % of the image resized to ``size``, a
    horizontal flip, colour jitter (:data:`JITTER`, p 0.8), grey (p 0.2), blur from
    :data:`BLUR_FROM` pixels up (p 0.5), then the normalisation of the weights."""
    from torchvision.transforms import v2

    steps = [
        v2.ToImage(),
        v2.RandomResizedCrop(size, scale=(0.2, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(**JITTER)], p=0.8),
        v2.RandomGrayscale(p=0.2),
    ]
    if size >= BLUR_FROM:
        kernel = size // 10 | 1  # odd, about a tenth of the side
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(steps)


class TwoViews(torch.utils.data.Dataset):
    """Two augmented views of each image (the augmentation draws from torch's global
    generator: the loop seeds it and restores it on resume)."""

    def __init__(self, paths: list[Path], size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        self.paths, self.size = paths, size
        self.transform = simclr_views(size, mean, std)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        from PIL import Image

        with Image.open(self.paths[i]) as image:
            # a JPEG decodes at a fraction of its size when that still leaves twice the crop
            image.draft("RGB", (2 * self.size, 2 * self.size))
            rgb = image.convert("RGB")
        return self.transform(rgb), self.transform(rgb)


# --- the model and the loss ----------------------------------------------------------------


class SimCLR(nn.Module):
    """A backbone (images → features) and the projection head the loss sees (dropped after)."""

    def __init__(self, backbone: nn.Module, features: int, dim: int = PROJECTION_DIM) -> None:
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(
            nn.Linear(features, features, bias=False),
            nn.BatchNorm1d(features),
            nn.ReLU(inplace=True),
            nn.Linear(features, dim),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.projector(self.backbone(images))


def nt_xent(projections: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of ``projections`` (2B rows: row i and row i + B are views of one image): the
    mean cross-entropy of finding each row's other view among the 2B - 1 other rows by
    cosine / ``temperature``."""
    z = nn.functional.normalize(projections.float(), dim=1)
    n = len(z) // 2
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), -torch.inf)
    targets = torch.arange(2 * n, device=z.device).roll(n)
    return nn.functional.cross_entropy(logits, targets)


def start_backbone(backbone: str, weights: Weights | None) -> tuple[nn.Module, int]:
    """The timm ``backbone`` without classifier, randomly initialised or holding every tensor
    of ``weights`` (imported timm weights of that architecture or a bare state dict of it)."""
    if weights is None:
        return build_backbone(Architecture("timm", backbone))
    if weights.kind is None:
        # a bare state dict: every tensor must fit, as for imported weights
        weights = replace(weights, manifest={"architecture": {"kind": "timm", "model": backbone}})
    elif weights.kind != "timm" or weights.model != backbone:
        raise InputFileError(
            weights.path,
            f"{weights.kind} {weights.model} weights; pretraining continues from timm weights of --backbone "
            f"{backbone} only",
        )
    return image_backbone(weights, backbone)


def _check_image_size(backbone: nn.Module, size: int, name: str) -> None:
    """One line, not a traceback, when the backbone takes fixed-size images of another size."""
    backbone.eval()
    try:
        with torch.no_grad():
            backbone(torch.zeros(2, 3, size, size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(
            f"--image-size {size}: the {name} backbone does not take {size}-pixel images ({reason})"
        ) from None


# --- pretraining ---------------------------------------------------------------------------


def weights_target(cfg: PretrainConfig) -> Path:
    """``OUT/NAME``, after checking NAME and that nothing is there yet."""
    if not NAME_PATTERN.fullmatch(cfg.name):
        raise ConfigError(
            f"--name {cfg.name!r}: use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    target = cfg.out_dir / cfg.name
    if target.exists():
        raise ConfigError(f"{target} already exists; choose another --name or --out (pretraining replaces nothing)")
    return target


def pretrain(cfg: PretrainConfig) -> dict:
    """Pretrain ``cfg.backbone`` on the images of ``cfg.images`` and write ``OUT/NAME``;
    returns a summary (the folder, images used and skipped, epochs, last loss, sha256)."""
    started = lineage.now()
    if cfg.method != "simclr":
        raise ConfigError(f"--method {cfg.method}: only simclr is implemented")
    target = weights_target(cfg)
    images = _images(cfg)
    mean, std = (cfg.weights.mean, cfg.weights.std) if cfg.weights else (IMAGENET_MEAN, IMAGENET_STD)
    batch_size = min(cfg.loop.batch_size, len(images.paths))
    if batch_size < cfg.loop.batch_size:
        log.info("batch size %d: there are only %d images", batch_size, len(images.paths))
    train_set = TwoViews(images.paths, cfg.image_size, mean, std)

    torch.manual_seed(cfg.loop.seed)
    backbone, features = start_backbone(cfg.backbone, cfg.weights)
    _check_image_size(backbone, cfg.image_size, cfg.backbone)
    model = SimCLR(backbone, features)

    def step(model: SimCLR, batch, device) -> torch.Tensor:
        first, second = batch
        return nt_xent(model(torch.cat([first, second]).to(device)), cfg.temperature)

    def batches(generator: torch.Generator) -> torch.utils.data.Sampler:
        # whole batches only: a short last batch would be an easier task with fewer negatives
        order = torch.utils.data.RandomSampler(train_set, generator=generator)
        return torch.utils.data.BatchSampler(order, batch_size, drop_last=True)

    work = _work_folder(cfg)
    loop = replace(
        cfg.loop,
        out_dir=work,
        batch_size=batch_size,
        monitor="loss",
        keep="last",  # a fixed budget: the loss of a self-supervised task says little about the features
        fingerprint=config_fingerprint(cfg, "images"),
    )
    fit(model, train_set, step, None, loop, batch_sampler=batches)
    history = [json.loads(line) for line in (work / HISTORY).read_text().splitlines() if line.strip()]

    state = {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()}
    manifest = {
        "name": cfg.name,
        "file": WEIGHTS_FILE,
        "architecture": {"kind": "timm", "model": cfg.backbone, "num_classes": 0},
        "source": {
            "method": cfg.method,
            "images": len(images.paths),
            "skipped": len(images.problems),
            "folder": str(cfg.images),
            "images_sha256": images.sha256,
            "image_size": cfg.image_size,
            "epochs": loop.epochs,
            "batch_size": batch_size,
            "temperature": cfg.temperature,
            "started_from": cfg.weights.lineage() if cfg.weights else None,
        },
        "source_sha256": images.sha256,
        "licence": LICENCE,
        "input_size": [3, cfg.image_size, cfg.image_size],
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "parameters": sum(p.numel() for p in model.backbone.parameters()),
        "tensors": len(state),
        "head_mismatch": [],
        "imported": lineage.now(),
        "insectml": __version__,
    }
    manifest["lineage"] = lineage.collect(
        params={
            "method": cfg.method,
            "backbone": cfg.backbone,
            "image_size": cfg.image_size,
            "max_images": cfg.max_images,
            "temperature": cfg.temperature,
            "projection_dim": PROJECTION_DIM,
            "weights": cfg.weights.lineage() if cfg.weights else None,
            "loop": lineage_settings(loop),
        },
        seed=loop.seed,
        data={"images": str(cfg.images), "n_images": len(images.paths), "skipped": len(images.problems)},
        started=started,
    )
    write_weights_folder(target, state, manifest, _hub_config(model.backbone, manifest), work / HISTORY)
    shutil.rmtree(work)  # ours (WORK_MARKER); the weights are out
    log.info("wrote %s (%d tensors, sha256 %s)", target, len(state), sha256_file(target / WEIGHTS_FILE)[:12])
    return {
        "weights": str(target),
        "images": len(images.paths),
        "skipped": len(images.problems),
        "epochs": len(history),
        "loss": history[-1]["train_loss"] if history else None,
        "sha256": json.loads((target / MANIFEST).read_text())["sha256"],
    }


def _images(cfg: PretrainConfig) -> ImageList:
    """The images to train on; none readable (or only one) is the user's to fix."""
    if not cfg.images.is_dir():
        raise InputFileError(cfg.images, "folder not found")
    found = list_images(cfg.images)
    if not found:
        raise InputFileError(cfg.images, f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in it or below it")
    chosen = sample_images(found, cfg.max_images, cfg.loop.seed)
    images = readable_images(cfg.images, chosen)
    if not images.paths:
        raise InputFileError(cfg.images, f"none of its {len(chosen)} images is readable (first: {images.problems[0]})")
    if len(images.paths) < 2:
        raise InputFileError(cfg.images, "one readable image: SimCLR needs two or more (the others are the negatives)")
    for problem in images.problems[:SHOWN_PROBLEMS]:
        log.warning("skipped %s", problem)
    if len(images.problems) > SHOWN_PROBLEMS:
        log.warning("skipped %d more unreadable images", len(images.problems) - SHOWN_PROBLEMS)
    log.info(
        "%d images from %s%s",
        len(images.paths),
        cfg.images,
        f" ({len(images.problems)} skipped)" if images.problems else "",
    )
    return images


def _work_folder(cfg: PretrainConfig) -> Path:
    """``OUT/.NAME.training``: the loop's folder (checkpoint, history), deleted once the
    weights are out; a resumed run finds its checkpoint there."""
    work = cfg.out_dir / f".{cfg.name}.training"
    if work.exists() and any(work.iterdir()) and not (work / WORK_MARKER).is_file():
        raise ConfigError(f"{work} exists and was not made by 'insectml pretrain'; move it away first")
    work.mkdir(parents=True, exist_ok=True)
    (work / WORK_MARKER).touch()
    return work


def _hub_config(backbone: nn.Module, manifest: dict) -> dict:
    """config.json of the Hugging Face timm layout, which ``insectml weights import timm`` reads."""
    keep = ("fixed_input_size", "interpolation", "crop_pct", "crop_mode", "first_conv", "classifier")
    pretrained = {k: v for k, v in getattr(backbone, "pretrained_cfg", {}).items() if k in keep}
    return {
        "architecture": manifest["architecture"]["model"],
        "num_classes": 0,
        "num_features": backbone.num_features,
        "pretrained_cfg": {
            **pretrained,
            "input_size": manifest["input_size"],
            "mean": manifest["mean"],
            "std": manifest["std"],
            "num_classes": 0,
            "license": manifest["licence"],
        },
    }


def write_weights_folder(target: Path, state: dict, manifest: dict, hub_config: dict, history: Path) -> Path:
    """Write ``target`` whole or not at all (a temporary folder beside it, renamed): the
    tensors (``weights.safetensors``, hard-linked as ``model.safetensors``), ``manifest.json``
    with their sha256, ``config.json`` and a copy of ``history``."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        save_file(storable(state), str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        os.chmod(tmp / WEIGHTS_FILE, 0o666 & ~_umask())
        try:
            os.link(tmp / WEIGHTS_FILE, tmp / HUB_WEIGHTS)
        except OSError:  # a file system without hard links
            shutil.copyfile(tmp / WEIGHTS_FILE, tmp / HUB_WEIGHTS)
        write_json_atomic(tmp / TIMM_CONFIG, hub_config)
        shutil.copyfile(history, tmp / HISTORY)
        write_json_atomic(tmp / MANIFEST, {**manifest, "sha256": sha256_file(tmp / WEIGHTS_FILE)})
        if target.exists():  # made while we trained
            raise ConfigError(f"{target} already exists; the weights are left in {tmp}")
        os.rename(tmp, target)
    except ConfigError:
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
