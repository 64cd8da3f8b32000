"""Neural wingbeat models on log-mel spectrograms, built by name.

Every model takes ``(x, frames)``: ``x`` is batch × n_mels × time (dB, normalised),
``frames`` the number of real (not padded) frames per recording, and returns logits.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from insectml.errors import ConfigError, InputFileError
from insectml.training.weights import load_matching_state, resolve_weights
from insectml.weights.store import Weights, load_state

log = logging.getLogger(__name__)


def padding_mask(frames: torch.Tensor, length: int) -> torch.Tensor:
    """True where a frame is padding (batch × length)."""
    return torch.arange(length, device=frames.device)[None, :] >= frames[:, None]


class SpectrogramCNN(nn.Module):
    """A timm image backbone on the spectrogram as a one-channel image."""

    def __init__(self, n_classes: int, n_mels: int, backbone: str = "mobilenetv3_small_050", **_) -> None:
        import timm

        super().__init__()
        self.backbone = backbone
        self.net = timm.create_model(backbone, pretrained=False, in_chans=1, num_classes=n_classes)

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1))

    def from_timm(self, state: dict) -> dict:
        """A timm state dict of :attr:`backbone` (an RGB ImageNet model) under this model's
        names, without its classifier, its first convolution summed over the colour channels:
        what timm itself does when pretrained weights meet one input channel."""
        cfg = self.net.pretrained_cfg
        heads = _names(cfg.get("classifier"))
        first = {f"{n}.weight" for n in _names(cfg.get("first_conv"))}
        own = self.net.state_dict()
        adapted = {}
        for key, tensor in state.items():
            if any(key == h or key.startswith(h + ".") for h in heads):
                continue
            if key in first and key in own and tensor.ndim == 4 and own[key].shape[1] == 1 and tensor.shape[1] > 1:
                tensor = tensor.float().sum(dim=1, keepdim=True).to(tensor.dtype)
            adapted[f"net.{key}"] = tensor
        return adapted


def _names(value: str | tuple | list | None) -> tuple[str, ...]:
    """A timm ``pretrained_cfg`` entry (one module name or several) as a tuple."""
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


class FrameGRU(nn.Module):
    """Bidirectional GRU over spectrogram frames, mean-pooled over real frames."""

    def __init__(self, n_classes: int, n_mels: int, hidden: int = 96, layers: int = 2, dropout: float = 0.2, **_):
        super().__init__()
        self.gru = nn.GRU(
            n_mels,
            hidden,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, n_classes))

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        seq = x.transpose(1, 2)  # batch × time × mels
        packed = nn.utils.rnn.pack_padded_sequence(seq, frames.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.gru(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=seq.shape[1])
        keep = (~padding_mask(frames, seq.shape[1])).unsqueeze(-1).to(out.dtype)
        pooled = (out * keep).sum(1) / keep.sum(1).clamp(min=1)
        return self.head(pooled)


class FrameTransformer(nn.Module):
    """Transformer encoder over frames: sinusoidal positions, a CLS token, padding mask."""

    def __init__(
        self,
        n_classes: int,
        n_mels: int,
        d_model: int = 96,
        heads: int = 4,
        layers: int = 3,
        dropout: float = 0.1,
        max_frames: int = 2048,
        **_,
    ):
        super().__init__()
        self.proj = nn.Linear(n_mels, d_model)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        position = torch.arange(max_frames + 1).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_frames + 1, d_model)
        pe[:, 0::2] = torch.sin(position * div)
        pe[:, 1::2] = torch.cos(position * div)
        self.register_buffer("positions", pe, persistent=False)
        layer = nn.TransformerEncoderLayer(
            d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, n_classes))

    def forward(self, x: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        seq = self.proj(x.transpose(1, 2))
        seq = torch.cat([self.cls.expand(seq.shape[0], -1, -1), seq], dim=1)
        seq = seq + self.positions[: seq.shape[1]]
        mask = torch.cat([torch.zeros_like(frames[:, None], dtype=torch.bool), padding_mask(frames, x.shape[2])], dim=1)
        return self.head(self.encoder(seq, src_key_padding_mask=mask)[:, 0])


NETS: dict[str, Callable[..., nn.Module]] = {
    "cnn": SpectrogramCNN,
    "gru": FrameGRU,
    "transformer": FrameTransformer,
}


def create_net(
    name: str, n_classes: int, n_mels: int, weights: Weights | Path | str | None = None, **options
) -> nn.Module:
    """Build a net by name; ``weights`` initialise it where names and shapes match: a state
    dict of the net, or imported timm weights (a folder or NAME), whose architecture the
    ``cnn`` net then takes as its backbone."""
    if name not in NETS:
        raise ConfigError(f"unknown wingbeat net '{name}' (choose from: {', '.join(NETS)})")
    weights = resolve_weights(weights) if weights is not None else None
    if weights is not None and weights.kind is not None:
        if weights.kind != "timm" or name != "cnn":
            raise InputFileError(
                weights.path, f"{weights.kind} weights ({weights.model}); only timm weights fit, and only the cnn net"
            )
        if options.get("backbone", weights.model) != weights.model:
            log.info("cnn: backbone %s, the weights' architecture (not %s)", weights.model, options["backbone"])
        options = {**options, "backbone": weights.model}
    try:
        model = NETS[name](n_classes=n_classes, n_mels=n_mels, **options)
    except RuntimeError as exc:  # timm: unknown backbone name
        raise ConfigError(f"{name}: {exc}") from None
    if weights is not None:
        state = load_state(weights)
        if weights.kind == "timm":
            state = model.from_timm(state)
        load_matching_state(model, state, weights.path, name)
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
