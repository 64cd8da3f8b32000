"""Image feature extractors built from imported weights (:mod:`insectml.weights.store`).

:func:`image_backbone` turns a resolved ``--*_weights`` value into a module mapping
``(B, 3, H, W)`` images to ``(B, F)`` features, and F: a timm model without its classifier,
the vision tower of an open_clip model (BioCLIP), or, for a bare state dict or no weights,
a timm model of the family's ``--backbone`` with the tensors that match it by name and
shape. Nothing is downloaded. :class:`Architecture` is what a model folder records to
rebuild the same module (random init, then its own saved weights) without the weights
folder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from insectml.errors import ConfigError, InputFileError
from insectml.weights.store import MANIFEST, Weights, load_state

log = logging.getLogger(__name__)

KINDS = ("timm", "open_clip")


@dataclass(frozen=True)
class Architecture:
    """An image backbone by library and name; ``model_cfg``: an open_clip model's own
    configuration when it is not one open_clip ships."""

    kind: str
    model: str
    model_cfg: dict | None = None

    def config(self) -> dict:
        """The entries a model's config.json records (read back by :meth:`from_config`)."""
        cfg = {"backbone": self.model, "backbone_kind": self.kind}
        return cfg | ({"backbone_cfg": self.model_cfg} if self.model_cfg else {})

    @classmethod
    def from_config(cls, config: dict) -> Architecture:
        """The architecture a config.json records (a model trained before imported weights: timm)."""
        return cls(config.get("backbone_kind", "timm"), config["backbone"], config.get("backbone_cfg"))


def architecture(weights: Weights | None, fallback_timm: str) -> Architecture:
    """The architecture ``weights`` were made for; timm ``fallback_timm`` for none or a bare state dict."""
    if weights is None or weights.kind is None:
        return Architecture("timm", fallback_timm)
    if weights.kind not in KINDS:
        raise InputFileError(
            weights.path.parent / MANIFEST,
            f"{weights.kind} weights ({weights.model}) are not an image backbone; give timm or open_clip weights",
        )
    model_cfg = weights.manifest.get("architecture", {}).get("model_cfg")
    if not weights.model and not model_cfg:
        raise InputFileError(weights.path.parent / MANIFEST, "architecture names no model")
    return Architecture(weights.kind, weights.model or "custom", model_cfg)


def build_backbone(arch: Architecture) -> tuple[nn.Module, int]:
    """The randomly initialised feature extractor of ``arch`` and its feature size."""
    if arch.kind == "open_clip":
        return _open_clip_visual(arch)
    import timm

    try:
        model = timm.create_model(arch.model, pretrained=False, num_classes=0)
    except RuntimeError as exc:  # timm: "Unknown model (...)"
        raise ConfigError(f"unknown timm backbone '{arch.model}' ({exc})") from None
    # with num_classes=0 the model returns its pre-logits: for some (MobileNetV3, ...) a
    # hidden layer after pooling, wider than num_features (the last feature map's channels)
    return model, getattr(model, "head_hidden_size", None) or model.num_features


def image_backbone(weights: Weights | None, fallback_timm: str) -> tuple[nn.Module, int]:
    """The feature extractor ``weights`` hold and its feature size: every tensor of a
    timm or open_clip manifest's model (a timm classifier dropped) must load, or
    :class:`InputFileError`; a bare state dict loads what matches timm ``fallback_timm``."""
    arch = architecture(weights, fallback_timm)
    backbone, features = build_backbone(arch)
    if weights is None:
        return backbone, features
    if weights.kind is None:
        from insectml.training.weights import load_matching_weights

        return load_matching_weights(backbone, weights.path, fallback_timm), features
    state = load_state(weights)
    if arch.kind == "open_clip":
        state = {k.removeprefix("visual."): v for k, v in state.items() if k.startswith("visual.")}
        if not state:
            raise InputFileError(weights.path, "holds no 'visual.' tensors: not an open_clip model's state")
    else:
        state = _without_classifier(backbone, state)
    _load_all(backbone, state, weights.path, f"{arch.kind} {arch.model}")
    return backbone, features


def _without_classifier(model: nn.Module, state: dict) -> dict:
    """``state`` minus the classifier tensors a timm model built with ``num_classes=0`` lacks."""
    heads = model.pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    own = model.state_dict()
    return {k: v for k, v in state.items() if k in own or not k.startswith(tuple(f"{h}." for h in heads))}


def _load_all(module: nn.Module, state: dict, path: Path, name: str) -> None:
    own = module.state_dict()
    wrong = sorted(
        k for k in own.keys() | state.keys() if k not in own or k not in state or own[k].shape != state[k].shape
    )
    if wrong:
        raise InputFileError(
            path,
            f"does not load into {name}: {len(wrong)} of {len(own)} tensors missing or of another shape "
            f"(e.g. {wrong[0]})",
        )
    module.load_state_dict(state)
    log.info("loaded %d tensors into %s from %s", len(state), name, path)


def _open_clip_visual(arch: Architecture) -> tuple[nn.Module, int]:
    """The vision tower of an open_clip model (``pretrained=None``: nothing downloaded)."""
    import open_clip

    # open_clip warns that the model is "initialized randomly"; its weights load next
    with _quiet(), tempfile.TemporaryDirectory() as tmp:
        try:
            if arch.model_cfg:
                # a configuration open_clip does not ship: its documented way is a local folder
                (Path(tmp) / "open_clip_config.json").write_text(json.dumps({"model_cfg": arch.model_cfg}))
                model = open_clip.create_model(f"local-dir:{tmp}", load_weights=False, pretrained_text=False)
                embed_dim = arch.model_cfg["embed_dim"]
            else:
                model = open_clip.create_model(arch.model, pretrained=None, pretrained_text=False)
                embed_dim = open_clip.get_model_config(arch.model)["embed_dim"]
        except RuntimeError as exc:  # open_clip: "Model config for '...' not found in built-ins"
            raise ConfigError(f"unknown open_clip model '{arch.model}' ({str(exc).split('. ')[0]})") from None
    return model.visual, embed_dim


@contextlib.contextmanager
def _quiet():
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
