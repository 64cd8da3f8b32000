"""Embedding images and scoring N-way K-shot episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from insectml.errors import InputFileError


def embed(model: torch.nn.Module, dataset, device, batch_size: int = 128) -> np.ndarray:
    """Unit-norm embeddings of every item of ``dataset`` (model in eval mode), float32."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    out = []
    model.eval()
    with torch.no_grad():
        for images, _ in loader:
            out.append(model(images.to(device)).cpu().numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, getattr(model, "dim", 1)), np.float32)


def episode_accuracy(
    embeddings: np.ndarray, labels: list[str], way: int, shot: int, episodes: int, seed: int, queries: int = 15
) -> dict:
    """Mean accuracy over ``episodes`` random ``way``-way ``shot``-shot episodes drawn from
    classes with at least shot + 1 images, with a 95 % confidence interval (1.96 σ/√n)."""
    labels_arr = np.asarray(labels)
    members = {c: np.flatnonzero(labels_arr == c) for c in sorted(set(labels))}
    eligible = [c for c, idx in members.items() if len(idx) > shot]
    if len(eligible) < way:
        return {"mean": None, "ci95": None, "episodes": 0, "eligible_classes": len(eligible)}
    rng = np.random.default_rng(seed)
    accs = np.empty(episodes)
    for e in range(episodes):
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
    return {
        "mean": float(accs.mean()),
        "ci95": float(1.96 * accs.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
        "episodes": episodes,
        "eligible_classes": len(eligible),
    }


def load_embedder(model_dir: Path):
    """The trained embedder (eval mode) and its config.json."""
    from insectml.fewshot.model import create_embedder

    for name in ("config.json", "weights.pt"):
        if not (model_dir / name).is_file():
            raise InputFileError(model_dir / name, "missing from the model directory")
    config = json.loads((model_dir / "config.json").read_text())
    model = create_embedder(config["backbone"], config["dim"])
    model.load_state_dict(torch.load(model_dir / "weights.pt", map_location="cpu", weights_only=True))
    return model.eval(), config
