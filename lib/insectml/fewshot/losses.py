"""Metric-learning losses by name. Supervised contrastive, ArcFace and CosFace (and the
miner) come from pytorch-metric-learning; the prototypical loss — which that library
does not have — is the episodic one of Snell et al. (2017) on cosine similarity."""

from __future__ import annotations

import torch
from torch import nn

from insectml.errors import ConfigError
from insectml.fewshot.names import LOSSES, MINERS


class PrototypicalLoss(nn.Module):
    """For a batch of P classes × M images: the first ``shots`` images of each class make
    its prototype, the rest are queries classified by scaled cosine similarity."""

    def __init__(self, shots: int = 1, scale: float = 10.0) -> None:
        super().__init__()
        self.shots, self.scale = shots, scale

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        classes = torch.unique(labels)
        protos, queries, query_labels = [], [], []
        for i, c in enumerate(classes):
            members = embeddings[labels == c]
            shots = min(self.shots, len(members) - 1)
            protos.append(nn.functional.normalize(members[:shots].mean(0), dim=0))
            queries.append(members[shots:])
            query_labels.append(torch.full((len(members) - shots,), i, device=labels.device))
        logits = self.scale * torch.cat(queries) @ torch.stack(protos).T
        return nn.functional.cross_entropy(logits, torch.cat(query_labels))


class MetricLoss(nn.Module):
    """A loss (with its own parameters, for ArcFace/CosFace) and an optional miner."""

    def __init__(self, name: str, n_classes: int, dim: int, miner: str = "none", shots: int = 1) -> None:
        from pytorch_metric_learning import losses, miners

        super().__init__()
        if name not in LOSSES:
            raise ConfigError(f"unknown loss '{name}' (choose from: {', '.join(LOSSES)})")
        if miner not in MINERS:
            raise ConfigError(f"unknown miner '{miner}' (choose from: {', '.join(MINERS)})")
        self.name = name
        if name == "proto":
            self.loss = PrototypicalLoss(shots)
        elif name == "supcon":
            self.loss = losses.SupConLoss(temperature=0.1)
        elif name == "arcface":
            self.loss = losses.ArcFaceLoss(n_classes, dim, margin=28.6, scale=30)
        else:
            self.loss = losses.CosFaceLoss(n_classes, dim, margin=0.35, scale=30)
        self.miner = miners.MultiSimilarityMiner(epsilon=0.1) if miner == "multisimilarity" else None
        if self.miner is not None and name == "proto":
            raise ConfigError("--miner works with supcon, arcface and cosface, not with the prototypical loss")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.name == "proto":
            return self.loss(embeddings, labels)
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, pairs)


class Trainable(nn.Module):
    """The embedder and its loss as one module, so the loss's own parameters (ArcFace and
    CosFace class centres) are optimised and checkpointed with the embedder."""

    def __init__(self, embedder: nn.Module, loss: MetricLoss) -> None:
        super().__init__()
        self.embedder, self.loss = embedder, loss
