"""The embedder: a timm backbone (``pretrained=False``) plus a projection head whose
output is L2-normalised, so cosine similarity is a dot product."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from insectml.errors import ConfigError
from insectml.training.weights import load_matching_weights


class Embedder(nn.Module):
    def __init__(self, backbone: str = "resnet10t", dim: int = 128) -> None:
        import timm

        super().__init__()
        try:
            self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0)
        except RuntimeError as exc:  # timm: "Unknown model (...)"
            raise ConfigError(f"unknown timm backbone '{backbone}' ({exc})") from None
        self.head = nn.Sequential(
            nn.Linear(self.backbone.num_features, self.backbone.num_features),
            nn.ReLU(inplace=True),
            nn.Linear(self.backbone.num_features, dim),
        )
        self.dim = dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.head(self.backbone(images)), dim=1)


def create_embedder(backbone: str, dim: int, weights: Path | None = None) -> Embedder:
    """``weights``: a local state dict for the backbone or the whole embedder; tensors
    matching by name and shape are loaded (a bare timm checkpoint matches ``backbone.*``)."""
    model = Embedder(backbone, dim)
    if weights is not None:
        state = torch.load(weights, map_location="cpu", weights_only=True) if weights.is_file() else None
        if state is not None and not any(k.startswith(("backbone.", "head.")) for k in state):
            model.backbone = load_matching_weights(model.backbone, weights, backbone)
        else:
            load_matching_weights(model, weights, backbone)
    return model
