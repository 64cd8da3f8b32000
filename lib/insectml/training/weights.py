"""Initialising a model from a local state dict (the ``--weights PATH`` of every family)."""

from __future__ import annotations

from pathlib import Path

import torch

from insectml.errors import InputFileError


def load_matching_weights(model: torch.nn.Module, weights: Path, name: str) -> torch.nn.Module:
    """Load the tensors of ``weights`` whose names and shapes match ``model``; a
    missing or unreadable file, or one with nothing matching, is the user's to fix."""
    if not weights.is_file():
        raise InputFileError(weights, "weights file not found")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise InputFileError(weights, f"not a PyTorch state dict ({type(exc).__name__})") from None
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise InputFileError(weights, f"no tensor matches the {name} model's layers")
    model.load_state_dict(usable, strict=False)
    return model
