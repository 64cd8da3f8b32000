"""Detection datasets from manifest rows, with box-aware augmentation (transforms.v2)."""

from __future__ import annotations

from pathlib import Path

import torch


class DetectionSet(torch.utils.data.Dataset):
    """Images with their boxes; labels are class indices + 1 (0 is background).
    Images without boxes are kept as negatives."""

    def __init__(self, rows: list[dict], root: Path, classes: list[str], train: bool) -> None:
        from torchvision.transforms import v2

        self.rows, self.root = rows, root
        self.index = {c: i + 1 for i, c in enumerate(classes)}
        steps = [v2.ToImage()]
        if train:
            steps += [
                v2.RandomHorizontalFlip(0.5),
                v2.RandomVerticalFlip(0.5),
                v2.RandomPhotometricDistort(p=0.5),
            ]
        steps += [v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()]
        self.transform = v2.Compose(steps)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        from PIL import Image
        from torchvision import tv_tensors

        row = self.rows[i]
        with Image.open(self.root / row["path"]) as image:
            image = image.convert("RGB")
        boxes = torch.as_tensor(row["boxes"], dtype=torch.float32).reshape(-1, 4)
        target = {
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(image.height, image.width)),
            "labels": torch.as_tensor([self.index[label] for label in row["labels"]], dtype=torch.int64),
        }
        image, target = self.transform(image, target)
        # contiguous: PIL's HWC layout leaves a channels-last view, on which CPU convolutions crawl
        return image.as_subclass(torch.Tensor).contiguous(), {
            "boxes": target["boxes"].as_subclass(torch.Tensor),
            "labels": target["labels"],
        }


def collate(batch):
    return tuple(zip(*batch, strict=True))
