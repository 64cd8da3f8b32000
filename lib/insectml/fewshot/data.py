"""Image sets for the embedder and a class-balanced batch sampler (P classes × M images),
which is also the episode sampler of the prototypical loss."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch

from insectml.weights.store import IMAGENET_MEAN as MEAN
from insectml.weights.store import IMAGENET_STD as STD


def normalisation(config: dict) -> dict[str, tuple[float, ...]]:
    """The ``mean`` and ``std`` a model's images are normalised with: its config.json's (the
    weights it started from), ImageNet's for a model trained before config.json recorded
    them; as keywords of :class:`ImageSet` and :func:`load_tensor`."""
    return {"mean": tuple(config.get("mean", MEAN)), "std": tuple(config.get("std", STD))}


class ImageSet(torch.utils.data.Dataset):
    """Rows with ``path`` (relative to ``root``) and ``label``; returns (image, class index).
    Training augmentation changes pose, scale and brightness, never hue: in this family
    colour can be what tells two classes apart. ``mean``, ``std``: the model's
    normalisation (:func:`normalisation`)."""

    def __init__(
        self,
        rows: list[dict],
        root: Path,
        classes: list[str],
        size: int,
        train: bool,
        mean: tuple[float, ...] = MEAN,
        std: tuple[float, ...] = STD,
    ) -> None:
        from torchvision.transforms import v2

        self.rows, self.root = rows, root
        index = {c: i for i, c in enumerate(classes)}
        self.targets = [index.get(r["label"], -1) for r in rows]
        steps = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
        if train:
            steps += [
                v2.RandomHorizontalFlip(),
                v2.RandomAffine(degrees=20, translate=(0.08, 0.08), scale=(0.85, 1.1)),
                v2.ColorJitter(brightness=0.2, contrast=0.2),
            ]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from PIL import Image

        with Image.open(self.root / self.rows[i]["path"]) as image:
            image = image.convert("RGB")
        return self.transform(image).contiguous(), self.targets[i]


def load_tensor(image, size: int, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> torch.Tensor:
    """A PIL image → the normalised CHW tensor the embedder sees at inference."""
    from torchvision.transforms import v2

    steps = v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((size, size), antialias=True),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )
    return steps(image.convert("RGB")).contiguous()


class BalancedBatches(torch.utils.data.Sampler):
    """Batches of ``classes_per_batch`` classes × ``per_class`` images, drawn with the given
    generator (so an epoch's batches are reproducible). Classes with fewer images than
    ``per_class`` repeat some (augmentation makes the copies differ)."""

    def __init__(self, targets: list[int], classes_per_batch: int, per_class: int, generator: torch.Generator) -> None:
        by_class: dict[int, list[int]] = defaultdict(list)
        for i, t in enumerate(targets):
            by_class[t].append(i)
        self.by_class = [by_class[c] for c in sorted(by_class)]
        self.p = min(classes_per_batch, len(self.by_class))
        self.m, self.generator = per_class, generator
        self.n_batches = max(1, len(targets) // (self.p * self.m))

    def __len__(self) -> int:
        return self.n_batches

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.n_batches):
            classes = torch.randperm(len(self.by_class), generator=self.generator)[: self.p].tolist()
            batch = []
            for c in classes:
                members = self.by_class[c]
                order = torch.randperm(len(members), generator=self.generator).tolist()
                while len(order) < self.m:
                    order += torch.randperm(len(members), generator=self.generator).tolist()
                batch += [members[j] for j in order[: self.m]]
            yield batch
