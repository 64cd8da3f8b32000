"""Initialising a model from weights: a state-dict file, an imported folder or a NAME (the
``--weights`` of every family; see :mod:`insectml.weights.store`)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import torch

from insectml.errors import InputFileError
from insectml.weights.store import Weights, load_state, resolve

log = logging.getLogger(__name__)

# How many groups of tensors left as initialised the log line names before "…".
SHOWN_GROUPS = 6
COUNTER = "num_batches_tracked"


def resolve_weights(weights: Weights | Path | str) -> Weights:
    """``weights`` as :class:`~insectml.weights.store.Weights` (a file, folder or NAME is resolved)."""
    return weights if isinstance(weights, Weights) else resolve(weights)


def load_matching_weights(model: torch.nn.Module, weights: Weights | Path | str, name: str) -> torch.nn.Module:
    """Load the tensors of ``weights`` whose names and shapes match ``model``; missing or
    unreadable weights, or weights with nothing matching, are the user's to fix."""
    weights = resolve_weights(weights)
    return load_matching_state(model, load_state(weights), weights.path, name)


def load_matching_state(model: torch.nn.Module, state: dict, source: Path, name: str) -> torch.nn.Module:
    """Load the tensors of ``state`` (read from ``source``) whose names and shapes match
    ``model``, and log how many did and which groups of the model's tensors did not."""
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise InputFileError(source, f"no tensor matches the {name} model's layers")
    model.load_state_dict(usable, strict=False)
    skipped = unloaded_groups(own, usable)
    shown = ", ".join(g + "*" if g.endswith(".") else g for g in skipped[:SHOWN_GROUPS]) + (
        ", …" if len(skipped) > SHOWN_GROUPS else ""
    )
    log.info(
        "%s: loaded %d of %d tensors from %s%s",
        name,
        len(usable),
        len(own),
        source,
        f"; left as initialised: {shown}" if skipped else "",
    )
    return model


def unloaded_groups(own: Iterable[str], loaded: Iterable[str]) -> list[str]:
    """The shortest name prefixes (``roi_heads.box_predictor.``) under which no tensor of
    ``own`` was loaded, covering every tensor that was not. Batch-norm counters, which load
    wherever the name matches, are left out."""
    own = [k for k in own if not k.endswith(COUNTER)]
    loaded = {k for k in loaded if not k.endswith(COUNTER)}
    missing = [k for k in own if k not in loaded]
    groups: list[str] = []
    for key in missing:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            prefix = ".".join(parts[:n]) + ("." if n < len(parts) else "")
            if prefix == key or not any(k.startswith(prefix) for k in loaded):
                break
        if prefix not in groups:
            groups.append(prefix)
    return groups


def weights_lineage(weights: Weights | None) -> dict | None:
    """What ``lineage.json`` records about the weights a model started from (path, sha256,
    and the manifest's name, architecture, source and licence); None without weights."""
    return weights.lineage() if weights is not None else None
