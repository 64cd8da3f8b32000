"""Identification for raw images: the code path of the served few-shot model. The model
folder holds the embedder and ``gallery/`` (or a gallery folder is given).

The temperature of the probabilities belongs to the embedder (its cosines are what it
scales): the model's config.json ``temperature`` is used, whatever gallery it serves; a
model without one (trained before calibration existed) keeps the gallery's, if any."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from insectml.fewshot.data import load_tensor, normalisation
from insectml.fewshot.embed import load_embedder
from insectml.fewshot.gallery import Gallery


class FewshotPredictor:
    def __init__(self, model_dir: Path, gallery_dir: Path | None = None) -> None:
        self.model, self.config = load_embedder(model_dir)
        self.gallery = Gallery.load(gallery_dir or model_dir / "gallery")
        if self.config.get("temperature") is not None:
            self.gallery.temperature = float(self.config["temperature"])
        self.size = self.config["image_size"]
        self.normalisation = normalisation(self.config)

    @torch.no_grad()
    def embed_images(self, images: list) -> np.ndarray:
        """PIL images → unit embeddings (one forward pass for the batch)."""
        if not images:
            return np.zeros((0, self.config["dim"]), np.float32)
        batch = torch.stack([load_tensor(im, self.size, **self.normalisation) for im in images])
        return self.model(batch).numpy()

    def predict(self, images: list, k: int = 5) -> list[dict]:
        """The gallery's answer (:meth:`Gallery.answer`) for each image."""
        return [self.gallery.answer(e, k) for e in self.embed_images(images)]
