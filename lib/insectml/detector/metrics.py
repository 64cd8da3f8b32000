"""COCO-style detection metrics (torchmetrics with the faster_coco_eval backend), and
image-bootstrap confidence intervals on mAP that reproduce the same COCO computation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# COCO's settings exactly as torchmetrics' MeanAveragePrecision hands them to the backend
# by default: ten IoU thresholds and 101 recall points from a float32 linspace (so 0.65 is
# float32's 0.65, which decides borderline matches), and the largest of its
# max-detection limits, which applies per image and class.
IOU_THRESHOLDS = np.asarray(torch.linspace(0.5, 0.95, 10).tolist())
RECALL_THRESHOLDS = np.asarray(torch.linspace(0.0, 1.0, 101).tolist())
MAX_DETECTIONS = 100
CONFUSION_IOU = 0.5  # a detection is taken for the truth box it overlaps this much
CONFUSION_SCORE = 0.5  # detections below this score are left out of the confusion matrix and the grid


def predict(model, dataset, device, batch_size: int = 8, desc: str = "predict") -> tuple[list[dict], list[dict]]:
    """Predictions and targets for every image of ``dataset`` (model in eval mode)."""
    from tqdm import tqdm

    from insectml.detector.data import collate

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    preds, targets = [], []
    for images, batch_targets in tqdm(loader, desc=desc, unit="batch", leave=False, disable=None):
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


@dataclass(frozen=True)
class _ClassMatches:
    """One class's detections over all images, matched once so that a bootstrap resample
    only reweights them: COCO's order (score descending, ties in image order), each
    detection's image, its TP flag at every IoU threshold, and truth boxes per image."""

    image: np.ndarray  # (n_detections,) image index
    scores: np.ndarray  # (n_detections,) descending
    tp: np.ndarray  # (n_thresholds, n_detections) bool
    n_truth: np.ndarray  # (n_images,) ground-truth boxes of this class


def map_bootstrap_ci(
    preds: list[dict], targets: list[dict], classes: list[str], *, n_boot: int = 200, seed: int = 0, level: float = 0.95
) -> dict:
    """Basic (reverse-percentile) bootstrap intervals for ``map`` (mAP@[.5:.95]) and
    ``map_50`` from ``n_boot`` resamples of the images with replacement (an image drawn
    twice counts twice): ``[2·value − q_high, 2·value − q_low]``, clipped to [0, 1].
    mAP on a sample is biased upwards, and a resample adds the same bias again, so plain
    percentiles sit above the value (on 100 images of a weak detector the value fell
    outside its own percentile interval); the basic interval subtracts that bias.

    ``value`` is the full-set figure, computed as COCO does (greedy matching per image and
    class, 101-point interpolated AP, classes without truth left out), so it equals
    :func:`mean_average_precision`'s; crowd boxes are not supported (our targets have none).
    ``classes`` mirrors :func:`mean_average_precision`: labels are scored whether or not
    they name one. Same inputs and ``seed`` → same intervals.

    ``per_class``: the same intervals for each named class's ``ap`` (AP@[.5:.95]) and
    ``ap_50``, from the resamples that hold at least one of its truth boxes (a class
    without truth in the whole set has none)."""
    from tqdm import tqdm

    if n_boot < 1 or not 0 < level < 1:
        raise ValueError(f"need n_boot ≥ 1 and 0 < level < 1, got n_boot={n_boot}, level={level}")
    matches = _match_all(preds, targets)
    n_images = len(targets)
    value = _class_aps(matches, np.ones(n_images, dtype=np.int64))
    rng = np.random.default_rng(seed)
    boot = np.stack(
        [
            _class_aps(matches, np.bincount(rng.integers(0, n_images, n_images), minlength=n_images))
            for _ in tqdm(range(n_boot), desc="bootstrap", unit="resample", leave=False, disable=None)
        ]
    )  # (n_boot, n_labels, n_thresholds), nan where a resample holds no truth of the label
    tails = 100 * (1 - level) / 2, 100 * (1 + level) / 2

    def interval(full: float, resampled: np.ndarray) -> dict:
        q_low, q_high = np.percentile(resampled, tails)
        low, high = (float(np.clip(2 * full - q, 0.0, 1.0)) for q in (q_high, q_low))
        return {"value": round(full, 6), "low": round(low, 6), "high": round(high, 6)}

    result = {}
    full, resampled = _means(value), np.asarray([_means(b) for b in boot])
    for column, key in enumerate(("map", "map_50")):
        result[key] = interval(full[column], resampled[:, column])
    per_class = {}
    for row, label in enumerate(matches):
        if 1 <= label <= len(classes) and not np.isnan(value[row, 0]):
            kept = boot[~np.isnan(boot[:, row, 0]), row]
            per_class[classes[label - 1]] = {
                "ap": interval(float(value[row].mean()), kept.mean(axis=1)),
                "ap_50": interval(float(value[row, 0]), kept[:, 0]),
            }
    return {**result, "level": level, "n_boot": n_boot, "unit": "image", "n_units": n_images, "per_class": per_class}


def pr_curves(preds: list[dict], targets: list[dict], classes: list[str]) -> dict[str, dict]:
    """Per named class with truth boxes, its precision–recall curve at IoU 0.5 from the
    same COCO matching as the AP: ``scores`` (descending), ``precision`` and ``recall``
    after each detection, ``n_truth``, and ``ap_50`` (COCO's 101-point interpolated AP)."""
    curves = {}
    for label, m in _match_all(preds, targets).items():
        n_truth = int(m.n_truth.sum())
        if not 1 <= label <= len(classes) or n_truth == 0:
            continue
        tp = m.tp[0]
        hits = np.cumsum(tp)
        curves[classes[label - 1]] = {
            "scores": m.scores,
            "precision": hits / np.arange(1, len(tp) + 1),
            "recall": hits / n_truth,
            "n_truth": n_truth,
            "ap_50": float(_average_precision(m.tp[:1], np.ones(len(tp), dtype=np.int64), n_truth)[0]),
        }
    return curves


def _match_all(preds: list[dict], targets: list[dict]) -> dict[int, _ClassMatches]:
    """Every label in ``preds`` or ``targets`` → its matched detections."""
    labels = sorted({int(x) for item in [*preds, *targets] for x in item["labels"].tolist()})
    matches = {}
    for label in labels:
        scores, images, flags, n_truth = [], [], [], []
        for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
            mine, truth = pred["labels"] == label, target["boxes"][target["labels"] == label]
            s, tp, n = _match_image(pred["boxes"][mine], pred["scores"][mine], truth)
            scores.append(s)
            images.append(np.full(len(s), i))
            flags.append(tp)
            n_truth.append(n)
        scores = np.concatenate(scores)
        order = np.argsort(-scores, kind="mergesort")  # stable: ties stay in image order, as in COCO
        matches[label] = _ClassMatches(
            image=np.concatenate(images)[order],
            scores=scores[order],
            tp=np.concatenate(flags, axis=1)[:, order],
            n_truth=np.asarray(n_truth),
        )
    return matches


def _match_image(boxes: torch.Tensor, scores: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray, int]:
    """One image and class: the kept detections' scores (descending), their TP flags per
    IoU threshold, and the number of truth boxes that count. COCO's rules: keep the
    MAX_DETECTIONS best, each detection in turn takes the unmatched truth box of highest
    IoU ≥ threshold (the later box on ties), and boxes whose area is outside COCO's "all"
    range (in practice: inverted boxes) are ignored: such a truth box is not counted (it cannot be
    matched) and such a detection is neither a TP nor an FP."""
    scores = scores.detach().cpu().double().numpy()
    keep = np.argsort(-scores, kind="mergesort")[:MAX_DETECTIONS]
    dets, truth = _coco_xywh(boxes[torch.as_tensor(keep, dtype=torch.long)]), _coco_xywh(truth)
    counted = _in_area_range(dets)
    dets, scores, truth = dets[counted], scores[keep][counted], truth[_in_area_range(truth)]
    tp = np.zeros((len(IOU_THRESHOLDS), len(dets)), dtype=bool)
    if len(dets) and len(truth):
        ious = _coco_iou(dets, truth)
        for t, threshold in enumerate(IOU_THRESHOLDS):
            free = np.ones(len(truth), dtype=bool)
            for d, row in enumerate(ious):
                candidates = np.where(free, row, -1.0)
                g = len(candidates) - 1 - int(np.argmax(candidates[::-1]))
                if candidates[g] >= threshold:
                    free[g] = False
                    tp[t, d] = True
    return scores, tp, len(truth)


def _coco_xywh(boxes: torch.Tensor) -> np.ndarray:
    """x, y, width, height as torchmetrics hands boxes to COCO (converted in float32)."""
    from torchvision.ops import box_convert

    return box_convert(boxes.detach().cpu().float().reshape(-1, 4), "xyxy", "xywh").double().numpy()


def _in_area_range(xywh: np.ndarray) -> np.ndarray:
    area = xywh[:, 2] * xywh[:, 3]
    return (area >= 0) & (area <= 1e5**2)


def _coco_iou(dets: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU as COCO computes it from x, y, width, height, in double precision."""
    a, b = dets[:, None, :], truth[None, :, :]
    w = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _class_aps(matches: dict[int, _ClassMatches], counts: np.ndarray) -> np.ndarray:
    """AP per label (rows in ``matches``' order) and IoU threshold when image i is counted
    ``counts[i]`` times; nan for a label without truth boxes in the sample."""
    aps = np.full((len(matches), len(IOU_THRESHOLDS)), np.nan)
    for row, m in enumerate(matches.values()):
        n_truth = int(counts @ m.n_truth)
        if n_truth:
            weights = counts[m.image]
            kept = weights > 0
            aps[row] = _average_precision(m.tp[:, kept], weights[kept], n_truth)
    return aps


def _means(aps: np.ndarray) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) over the labels with truth; none at all gives 0 (as
    :func:`mean_average_precision` clamps COCO's -1)."""
    present = aps[~np.isnan(aps[:, 0])] if len(aps) else aps
    if not len(present):
        return 0.0, 0.0
    return float(present.mean()), float(present[:, 0].mean())


def _map_from_matches(matches: dict[int, _ClassMatches], counts: np.ndarray) -> tuple[float, float]:
    """(mAP@[.5:.95], mAP@.5) when image i is counted ``counts[i]`` times; classes with no
    truth box in the sample are left out."""
    return _means(_class_aps(matches, counts))


def _average_precision(tp: np.ndarray, weights: np.ndarray, n_truth: int) -> np.ndarray:
    """COCO's 101-point interpolated AP per IoU threshold for score-sorted detections.
    ``weights[i]`` counts detection i that many times; that equals repeating it in a row,
    because the points inside such a run never raise the precision envelope and are never
    the first point to reach a recall level."""
    n = tp.shape[1]
    if n == 0:
        return np.zeros(len(tp))
    tps = np.cumsum(tp * weights, axis=1)
    fps = np.cumsum(~tp * weights, axis=1)
    recall = tps / n_truth
    precision = tps / (tps + fps + np.spacing(1))
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    ap = np.zeros(len(tp))
    for t in range(len(tp)):
        index = np.searchsorted(recall[t], RECALL_THRESHOLDS, side="left")
        ap[t] = np.where(index < n, envelope[t, np.minimum(index, n - 1)], 0.0).mean()
    return ap


def match_detections(
    pred: dict, target: dict, iou: float = CONFUSION_IOU, score: float = CONFUSION_SCORE
) -> tuple[list[tuple[int, int | None]], list[int]]:
    """Greedy matching of one image's detections scoring at least ``score``, best first,
    each to the unmatched truth box it overlaps most if that IoU reaches ``iou``: the
    (detection, truth box or None) pairs in that order, and the truth boxes left unmatched."""
    from torchvision.ops import box_iou

    kept = torch.nonzero(pred["scores"] >= score).flatten()
    order = kept[torch.argsort(pred["scores"][kept], descending=True)].tolist()
    truth = target["boxes"]
    matched = torch.zeros(len(truth), dtype=torch.bool)
    ious = box_iou(pred["boxes"], truth) if len(pred["boxes"]) and len(truth) else None
    pairs: list[tuple[int, int | None]] = []
    for p in order:
        if ious is not None:
            candidates = ious[p].clone()
            candidates[matched] = -1
            t = int(torch.argmax(candidates))
            if candidates[t] >= iou:
                matched[t] = True
                pairs.append((p, t))
                continue
        pairs.append((p, None))
    return pairs, torch.nonzero(~matched).flatten().tolist()
