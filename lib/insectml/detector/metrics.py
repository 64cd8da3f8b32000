"""COCO-style detection metrics (torchmetrics with the faster_coco_eval backend)."""

from __future__ import annotations

import torch


def predict(model, dataset, device, batch_size: int = 8) -> tuple[list[dict], list[dict]]:
    """Predictions and targets for every image of ``dataset`` (model in eval mode)."""
    from insectml.detector.data import collate

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    preds, targets = [], []
    for images, batch_targets in loader:
        out = model([im.to(device) for im in images])
        preds += [{k: v.detach().cpu() for k, v in o.items()} for o in out]
        targets += list(batch_targets)
    return preds, targets


def mean_average_precision(preds: list[dict], targets: list[dict], classes: list[str]) -> dict:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP (class index + 1 → name)."""
    from torchmetrics.detection import MeanAveragePrecision

    metric = MeanAveragePrecision(iou_type="bbox", backend="faster_coco_eval", class_metrics=True)
    metric.update(preds, targets)
    result = metric.compute()
    per_class = {}
    ids = result["classes"].tolist() if result["classes"].ndim else [int(result["classes"])]
    aps = result["map_per_class"].tolist() if result["map_per_class"].ndim else [float(result["map_per_class"])]
    for cid, ap in zip(ids, aps, strict=True):
        if 1 <= cid <= len(classes):
            per_class[classes[cid - 1]] = max(0.0, float(ap))
    return {
        "map": max(0.0, float(result["map"])),
        "map_50": max(0.0, float(result["map_50"])),
        "map_75": max(0.0, float(result["map_75"])),
        "ap_per_class": per_class,
    }
