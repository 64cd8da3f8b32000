"""The embedder: an image backbone (:mod:`insectml.weights.backbones`) plus, unless it is
used frozen, a projection head; its output is L2-normalised, so cosine similarity is a dot
product.

Modes (``--mode``): ``frozen``, the backbone's own features, no head and no training;
``probe``, the backbone frozen (its batch-norm statistics too) and the head trained;
``finetune``, everything trained (the backbone at a lower learning rate when it starts
from weights, see :func:`create_embedder`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from insectml.weights.backbones import Architecture, build_backbone, image_backbone
from insectml.weights.store import Weights, load_state, resolve


class Embedder(nn.Module):
    """``backbone`` (images → ``features``-sized vectors) and a projection head to ``dim``
    (no head when ``dim`` is None: the embedding is the backbone's normalised features)."""

    def __init__(self, backbone: nn.Module, features: int, dim: int | None, frozen_backbone: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = None
        if dim is not None:
            self.head = nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True), nn.Linear(features, dim))
        self.dim = features if dim is None else dim
        self.frozen_backbone = frozen_backbone
        if frozen_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> Embedder:
        super().train(mode)
        if self.frozen_backbone:
            self.backbone.eval()  # its batch-norm statistics and dropout stay the weights'
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        features = self.backbone(images)
        return nn.functional.normalize(features if self.head is None else self.head(features), dim=1)


def create_embedder(
    backbone: str,
    dim: int,
    weights: Weights | Path | str | None = None,
    mode: str = "finetune",
    backbone_lr_scale: float = 1.0,
) -> Embedder:
    """The embedder for ``mode``. ``weights`` (a store value, :func:`insectml.weights.store.resolve`):
    imported timm or open_clip weights bring their architecture (``backbone`` is then not
    used); a bare state dict is a timm ``backbone``'s or a whole embedder's, whose tensors
    matching by name and shape load. Finetuning from weights, the backbone trains at
    ``backbone_lr_scale`` times the learning rate (its ``lr_scale``)."""
    if weights is not None and not isinstance(weights, Weights):
        weights = resolve(weights)
    head_dim = None if mode == "frozen" else dim
    frozen = mode != "finetune"
    if weights is not None and weights.kind is None and _is_embedder_state(weights):
        from insectml.training.weights import load_matching_weights

        net, features = image_backbone(None, backbone)
        model = load_matching_weights(Embedder(net, features, head_dim, frozen), weights.path, backbone)
    else:
        net, features = image_backbone(weights, backbone)
        model = Embedder(net, features, head_dim, frozen)
    if weights is not None and mode == "finetune" and backbone_lr_scale != 1.0:
        model.backbone.lr_scale = backbone_lr_scale  # read by the training loop's optimiser
    return model


def _is_embedder_state(weights: Weights) -> bool:
    return any(k.startswith(("backbone.", "head.")) for k in load_state(weights))


def embedder_from_config(config: dict) -> Embedder:
    """The randomly initialised embedder a model's config.json describes (its weights.pt loads into it)."""
    net, features = build_backbone(Architecture.from_config(config))
    return Embedder(net, features, config["dim"] if config.get("head", True) else None)
