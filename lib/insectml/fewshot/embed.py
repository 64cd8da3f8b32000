"""Embedding images, scoring N-way K-shot episodes, and the colour-histogram baseline embedding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from insectml.errors import InputFileError
from insectml.fewshot.data import MEAN, STD


def embed(model: torch.nn.Module, dataset, device, batch_size: int = 128) -> np.ndarray:
    """Unit-norm embeddings of every item of ``dataset`` (model in eval mode), float32."""
    from tqdm import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    model.eval()
    with torch.no_grad():
        for images, _ in tqdm(loader, desc="embed", unit="batch", leave=False, disable=None):
            out.append(model(images.to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, getattr(model, "dim", 1)), np.float32)


def episode_scores(
    embeddings: np.ndarray, labels: list[str], way: int, shot: int, episodes: int, seed: int, queries: int = 15
) -> np.ndarray:
    """Accuracy of each of ``episodes`` random ``way``-way ``shot``-shot episodes drawn
    from classes with at least shot + 1 images (empty if fewer than ``way`` such classes).
    The episodes depend on ``labels`` and ``seed`` only, so two embeddings of the same
    images scored with the same seed are scored on the same episodes (paired)."""
    members = _members(labels)
    eligible = [c for c, idx in members.items() if len(idx) > shot]
    if len(eligible) < way:
        return np.empty(0)
    from tqdm import tqdm

    rng = np.random.default_rng(seed)
    accs = np.empty(episodes)
    for e in tqdm(range(episodes), desc=f"{way}-way {shot}-shot episodes", unit="ep", leave=False, disable=None):
        chosen = rng.choice(len(eligible), way, replace=False)
        protos, query_idx, query_lab = [], [], []
        for k, ci in enumerate(chosen):
            idx = rng.permutation(members[eligible[ci]])
            proto = embeddings[idx[:shot]].mean(0)
            protos.append(proto / max(np.linalg.norm(proto), 1e-12))
            q = idx[shot : shot + queries]
            query_idx.append(q)
            query_lab.append(np.full(len(q), k))
        sims = embeddings[np.concatenate(query_idx)] @ np.stack(protos).T
        accs[e] = float((sims.argmax(1) == np.concatenate(query_lab)).mean())
    return accs


def episode_accuracy(
    embeddings: np.ndarray, labels: list[str], way: int, shot: int, episodes: int, seed: int, queries: int = 15
) -> dict:
    """Mean accuracy over the episodes of :func:`episode_scores`, with a 95 % confidence
    interval (1.96 σ/√n)."""
    return episode_summary(episode_scores(embeddings, labels, way, shot, episodes, seed, queries), labels, shot)


def episode_summary(accs: np.ndarray, labels: list[str], shot: int) -> dict:
    """Mean, 95 % half-width (1.96 σ/√n), count of the per-episode accuracies ``accs``
    from :func:`episode_scores`, and how many classes of ``labels`` could give ``shot``-shot
    episodes; ``mean`` is None when there were no episodes."""
    eligible = sum(len(idx) > shot for idx in _members(labels).values())
    if len(accs) == 0:
        return {"mean": None, "ci95": None, "episodes": 0, "eligible_classes": eligible}
    return {
        "mean": float(accs.mean()),
        "ci95": float(1.96 * accs.std(ddof=1) / np.sqrt(len(accs))) if len(accs) > 1 else 0.0,
        "episodes": len(accs),
        "eligible_classes": eligible,
    }


def _members(labels: list[str]) -> dict[str, np.ndarray]:
    """Indices of each class's rows, classes in sorted order."""
    labels_arr = np.asarray(labels)
    return {c: np.flatnonzero(labels_arr == c) for c in sorted(set(labels))}


class ColourHistogram(torch.nn.Module):
    """A baseline "embedder" with no learning: the ``bins``³ RGB histogram of the image an
    :class:`~insectml.fewshot.data.ImageSet` yields (its normalisation undone to recover
    the 0–255 pixels: ``mean`` and ``std`` are the set's), L1-normalised then square-rooted
    (Hellinger), so the rows have unit L2 norm and their dot product is a similarity like the
    embedder's cosine."""

    def __init__(self, bins: int = 8, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> None:
        super().__init__()
        self.bins = bins
        self.dim = bins**3
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = torch.round((images * self.std + self.mean) * 255).clamp(0, 255).long()
        q = pixels * self.bins // 256  # (B, 3, H, W) bin of each channel
        cell = ((q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]).flatten(1)
        counts = torch.zeros(len(images), self.dim, device=images.device)
        counts.scatter_add_(1, cell, torch.ones_like(cell, dtype=counts.dtype))
        return torch.sqrt(counts / counts.sum(1, keepdim=True))


def load_embedder(model_dir: Path):
    """The trained embedder (eval mode) and its config.json, rebuilt from the folder alone
    (config.json names the architecture, weights.pt holds every tensor)."""
    from insectml.fewshot.model import embedder_from_config
    from insectml.modeldir import read_json, verify_weights

    for name in ("config.json", "weights.pt"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = read_json(model_dir / "config.json", "model config", keys=("backbone",))
    model = embedder_from_config(config)
    verify_weights(model_dir / "weights.pt")
    model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval(), config
