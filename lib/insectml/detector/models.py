"""torchvision detectors built by name, never with downloaded weights."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from insectml.errors import ConfigError

if TYPE_CHECKING:  # torch is imported when a detector is built, not when the CLI lists the names
    import torch


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


DETECTORS: dict[str, Callable[..., torch.nn.Module]] = {
    name: _builder(name)
    for name in (
        "ssdlite320_mobilenet_v3_large",
        "fasterrcnn_mobilenet_v3_large_fpn",
        "retinanet_resnet50_fpn",
        "fcos_resnet50_fpn",
    )
}


def create_detector(name: str, num_classes: int, image_size: int = 320, weights: Path | None = None):
    """A detector for ``num_classes`` foreground classes (index 0 is background).

    ``weights``: a local state dict (e.g. torchvision's COCO checkpoint saved to disk);
    tensors matching by name and shape are loaded, the class heads usually are not.
    """
    if name not in DETECTORS:
        raise ConfigError(f"unknown detector '{name}' (choose from: {', '.join(DETECTORS)})")
    model = DETECTORS[name](num_classes + 1, image_size)
    if weights is not None:
        from insectml.training.weights import load_matching_weights

        load_matching_weights(model, weights, name)
    return model
