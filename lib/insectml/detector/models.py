"""torchvision detectors built by name, never with downloaded weights.

Imported weights (``insectml weights import``) start a detector from either a whole
torchvision detector of the same architecture (its COCO checkpoint: everything but the
class heads loads) or the ImageNet classifier its backbone is cut from (torchvision's, or
timm's of the same architecture: the classifier's tensors are renamed to where the
detector's backbone holds them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from insectml.errors import ConfigError, InputFileError

if TYPE_CHECKING:  # torch is imported when a detector is built, not when the CLI lists the names
    import torch

    from insectml.weights.store import Weights


def _builder(name: str) -> Callable[..., torch.nn.Module]:
    def build(num_classes: int, image_size: int) -> torch.nn.Module:
        from torchvision.models import detection

        # weights_backbone=None matters: its default downloads ImageNet weights.
        kwargs = {"weights": None, "weights_backbone": None, "num_classes": num_classes}
        if name.startswith("ssdlite"):  # fixed at 320 px; torchvision's 0.001 floor keeps thousands of boxes
            kwargs.update(score_thresh=0.05, detections_per_img=100)
        else:  # FPN models resize inputs themselves
            kwargs.update(min_size=image_size, max_size=image_size)
        return getattr(detection, name)(**kwargs)

    return build


@dataclass(frozen=True)
class Backbone:
    """The ImageNet classifier a detector's backbone is cut from: its torchvision name and
    the timm models of the same architecture; ``same`` names the other torchvision detectors
    whose checkpoints hold the same tensors (they differ only in input size)."""

    torchvision: str
    timm: tuple[str, ...]
    same: tuple[str, ...] = ()


_MOBILENET = Backbone("mobilenet_v3_large", ("mobilenetv3_large_100",))
_RESNET = Backbone("resnet50", ("resnet50",))
BACKBONES: dict[str, Backbone] = {
    "ssdlite320_mobilenet_v3_large": _MOBILENET,
    "fasterrcnn_mobilenet_v3_large_fpn": replace(_MOBILENET, same=("fasterrcnn_mobilenet_v3_large_320_fpn",)),
    "retinanet_resnet50_fpn": _RESNET,
    "fcos_resnet50_fpn": _RESNET,
}
DETECTORS: dict[str, Callable[..., torch.nn.Module]] = {name: _builder(name) for name in BACKBONES}


def create_detector(
    name: str,
    num_classes: int,
    image_size: int = 320,
    weights: Weights | Path | str | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
):
    """A detector for ``num_classes`` foreground classes (index 0 is background).

    ``weights``: a state-dict file, an imported folder or NAME (see
    :mod:`insectml.weights.store`); tensors matching by name and shape are loaded (the
    class heads usually are not). ``mean``/``std``: the input normalisation the detector
    applies itself; else the weights' manifest's, else torchvision's default.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector '{name}' (choose from: {', '.join(DETECTORS)})")
    model = DETECTORS[name](num_classes + 1, image_size)
    if weights is not None:
        from insectml.training.weights import load_matching_state, resolve_weights
        from insectml.weights.store import load_state

        weights = resolve_weights(weights)
        state = load_state(weights)
        if not is_own_checkpoint(name, weights):
            state = state | backbone_state(model, classifier_state(name, weights, state))
        load_matching_state(model, state, weights.path, name)
        if mean is None and "mean" in weights.manifest and "std" in weights.manifest:
            mean, std = weights.mean, weights.std
    if mean is not None and std is not None:
        model.transform.image_mean, model.transform.image_std = list(mean), list(std)
    return model


def normalisation(model) -> dict:
    """The input mean and std a detector normalises with (for its config.json)."""
    return {"mean": list(model.transform.image_mean), "std": list(model.transform.image_std)}


def is_own_checkpoint(name: str, weights: Weights) -> bool:
    """Whether ``weights`` are a whole detector of ``name``'s architecture; a manifest naming
    an architecture that cannot initialise ``name`` is the user's to fix."""
    kind, arch = weights.kind, weights.model
    if kind is None:  # a bare state dict: whatever matches loads
        return False
    backbone = BACKBONES[name]
    if kind == "torchvision" and arch in (name, *backbone.same):
        return True
    if kind == "torchvision" and arch in _torchvision_detectors():
        raise InputFileError(
            weights.path, f"weights of the detector {arch}, which cannot initialise a {name} (--model {name})"
        )
    if (kind == "torchvision" and arch == backbone.torchvision) or (
        kind == "timm" and str(arch).split(".")[0] in backbone.timm
    ):
        return False
    takes = f"{name}, or the classifier {backbone.torchvision} (torchvision) or {', '.join(backbone.timm)} (timm)"
    raise InputFileError(weights.path, f"weights of {kind} {arch}; a {name} starts from weights of {takes}")


def _torchvision_detectors() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models.detection)


def classifier_state(name: str, weights: Weights, state: dict) -> dict:
    """``state`` under torchvision's classifier names. timm's tensors are renamed by
    position: built empty, timm's and torchvision's models of the architecture list their
    tensors in the same order under other names (the architecture's name was checked)."""
    if weights.kind != "timm":
        return state
    import timm
    import torch
    import torchvision

    with torch.device("meta"):  # names and shapes only, no memory
        theirs = timm.create_model(str(weights.model), pretrained=False).state_dict()
        ours = getattr(torchvision.models, BACKBONES[name].torchvision)(weights=None).state_dict()
    renamed = {}
    # timm's classifier differs (a 1x1 conv head, then a linear one): the run ends there
    for (key, tensor), (ref_key, ref) in zip(theirs.items(), ours.items(), strict=False):
        if tensor.shape != ref.shape:
            break
        if key in state:
            renamed[ref_key] = state[key]
    return renamed


def backbone_state(model, state: dict) -> dict:
    """An ImageNet classifier's tensors (torchvision names) under the names ``model``'s
    backbone holds them by. The FPN detectors wrap the classifier's ``features`` (MobileNet)
    or the classifier itself (ResNet) as ``backbone.body``; SSDlite splits MobileNet's
    ``features`` at the C4 block, inside that block (torchvision's ``ssdlite.py``)."""
    if hasattr(model.backbone, "body"):
        return {"backbone.body." + k.removeprefix("features."): v for k, v in state.items()}
    c4 = len(model.backbone.features[0]) - 1  # features[0] = features[:c4] + the C4 block's expansion
    renamed = {}
    for key, tensor in state.items():
        parts = key.split(".")
        if parts[0] != "features" or len(parts) < 3:
            continue
        i, rest = int(parts[1]), parts[2:]
        if i < c4:
            target = ["0", str(i), *rest]
        elif i > c4:
            target = ["1", str(i - c4), *rest]
        elif rest[0] == "block" and rest[1] == "0":
            target = ["0", str(c4), *rest[2:]]
        elif rest[0] == "block":
            target = ["1", "0", *rest[1:]]
        else:
            continue
        renamed["backbone.features." + ".".join(target)] = tensor
    return renamed


def load_detector(model_dir: Path):
    """The evaluation-mode detector of a model folder, its classes and its config."""
    import json

    import torch

    for name in ("config.json", "labels.json", "weights.pt"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = json.loads((model_dir / "config.json").read_text())
    classes = json.loads((model_dir / "labels.json").read_text())
    model = create_detector(
        config["model"], len(classes), config.get("image_size", 320), mean=config.get("mean"), std=config.get("std")
    )
    model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval(), classes, config
