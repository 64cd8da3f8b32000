"""What a detector looked at for one box: Grad-CAM (captum's ``LayerGradCam``) on the
backbone's last feature layer that every detection depends on (:func:`feature_layer`),
whose target is the score of the detection that best matches the box explained (highest
IoU among the detections of its class, else among all). torchvision detectors in eval
mode keep the autograd graph from the image to the scores they return, so the score's
gradient reaches the layer.

The map is computed on the image as the detector sees it (resized, for the FPN models
padded to a multiple of 32), the padding cut off, and resized back onto the original
image, so it lines up with the box.

:func:`explain_evaluation` draws, for an evaluation, a per-class grid of correct and
wrong detections with their maps (rows: the true class, "background" for false alarms)
and the most-confused class pairs side by side; :func:`explain_files` is ``insectml
detector explain``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from insectml import explain
from insectml.detector.metrics import CONFUSION_SCORE, match_detections
from insectml.detector.models import load_detector

log = logging.getLogger(__name__)

MAX_CLASSES = 12  # rows of the per-class grid
PER_CLASS = 2  # correct and wrong detections shown per class
PAIRS = 3  # most-confused class pairs shown
THUMBNAIL = 192  # pixels: the longer side of a crop as shown
CONTEXT = 0.5  # a crop reaches this share of the box's side beyond each of its edges
MAX_BOXES = 12  # boxes explained per image by the CLI (the most confident)
METHOD = "Grad-CAM (captum LayerGradCam), target: the score of the detection matching the box"


def feature_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """The backbone's last feature layer that every detection depends on, by name and
    module: the last stage of an FPN detector's body (ResNet's ``layer4``, MobileNet's last
    block; every pyramid level takes it in through the top-down path), and for SSDlite
    the MobileNet stage that ends at stride 16 (``features.0``): its map feeds the first
    detection head and every deeper map, whereas a box found on that first map does not
    depend on the deeper ``features.1`` at all (its map there would be zero)."""
    backbone = model.backbone
    if hasattr(backbone, "body"):
        name, module = list(backbone.body.named_children())[-1]
        return f"backbone.body.{name}", module
    return "backbone.features.0", backbone.features[0]


class _BoxScore(nn.Module):
    """image batch (1, 3, H, W) → (1,): the score of the detection that best matches ``box``
    (among those labelled ``label`` when there are any)."""

    def __init__(self, model: nn.Module, box: torch.Tensor, label: int | None) -> None:
        super().__init__()
        self.model, self.box, self.label = model, box.reshape(1, 4), label

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from torchvision.ops import box_iou

        out = self.model([images[0]])[0]
        if len(out["boxes"]) == 0:
            raise RuntimeError("the detector returned no box to explain")
        mine = out["labels"] == self.label if self.label is not None else torch.ones_like(out["labels"], dtype=bool)
        if not bool(mine.any()):
            mine = torch.ones_like(mine)
        ious = box_iou(out["boxes"][mine], self.box)[:, 0]
        return out["scores"][mine][int(torch.argmax(ious))].reshape(1)


def box_gradcam(model: nn.Module, image: torch.Tensor, box: Sequence[float], label: int | None = None) -> np.ndarray:
    """Grad-CAM map (H, W) over ``image`` (3, H, W, values in [0, 1]) for the detection of
    ``model`` (eval mode) that best matches ``box`` (x1, y1, x2, y2 in image pixels; its
    label index + 1, 0 being background, as the detector numbers them): non-negative,
    scaled to [0, 1] (all zeros when the score's gradient vanishes)."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    _, layer = feature_layer(model)
    target = _BoxScore(model, torch.as_tensor(box, dtype=torch.float32), label)
    with torch.no_grad():
        seen, _ = model.transform([image])
    padded, (rows, cols) = tuple(seen.tensors.shape[-2:]), seen.image_sizes[0]
    with torch.enable_grad():
        attribution = LayerGradCam(target, layer).attribute(image[None].clone(), relu_attributions=True)
    heat = LayerAttribution.interpolate(attribution.detach(), padded, "bilinear")[:, :, :rows, :cols]
    heat = torch.nn.functional.interpolate(heat, tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
    return explain.normalise_heat(heat[0, 0].clamp_min(0).numpy()).astype(np.float32)


def share_in_box(heat: np.ndarray, box: Sequence[float]) -> float:
    """The share of the map's mass inside ``box`` (0 for an empty map)."""
    total = float(heat.sum())
    if total <= 0:
        return 0.0
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return float(heat[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)].sum()) / total


@dataclass
class Explained:
    """What :func:`explain_evaluation` drew: the figures (path, caption), the sentences for
    the report, and a summary for metrics.json."""

    figures: list[tuple[Path, str]]
    text: list[str]
    summary: dict


@dataclass(frozen=True)
class _Detection:
    image: int  # index into the evaluated set
    det: int  # index into that image's predictions
    truth: int  # class index of the matched truth box; len(classes) = background (a false alarm)
    label: int  # class index the detector gave
    score: float


def explain_evaluation(
    model: nn.Module,
    data,
    rows: list[dict],
    preds: list[dict],
    targets: list[dict],
    classes: list[str],
    matrix: np.ndarray,
    out_dir: Path,
    max_classes: int = MAX_CLASSES,
    per_class: int = PER_CLASS,
    pairs: int = PAIRS,
) -> Explained:
    """Explain the detections of an evaluation (``data[i]`` the image of ``rows[i]`` as the
    model saw it, ``preds``/``targets`` its outputs and truth, ``matrix`` the confusion at
    IoU 0.5 with background last): every detection is matched to the truth at IoU 0.5;
    per true class (of the ``max_classes`` with the most wrong detections) the
    ``per_class`` most confident correct and wrong detections (``explanations_classes.png``),
    and the ``pairs`` most-confused class pairs, a detection of A taken for B beside the
    most confident correct detection of B (``explanations_pairs.png``)."""
    from tqdm import tqdm

    layer_name, _ = feature_layer(model)
    labels = [*classes, "background"]
    background = len(classes)
    found = []
    for i, (pred, target) in enumerate(zip(preds, targets, strict=True)):
        for d, t in match_detections(pred, target, score=0.0)[0]:
            truth = background if t is None else int(target["labels"][t]) - 1
            found.append(_Detection(i, d, truth, int(pred["labels"][d]) - 1, float(pred["scores"][d])))
    if not found:
        return Explained([], ["The detector found nothing in these images: there is no detection to explain."], {})
    truth = np.asarray([f.truth for f in found])
    given = np.asarray([f.label for f in found])
    scores = np.asarray([f.score for f in found])
    chosen = explain.pick(truth, given, scores, per_class=per_class)
    errors = np.bincount(truth[given != truth], minlength=len(labels))
    shown = sorted(chosen, key=lambda c: (-errors[c], c))[:max_classes]
    confused = explain.confused_pairs(matrix, labels, top=pairs, skip=("background",))

    jobs = {n for c in shown for kind in ("correct", "wrong") for n in chosen[c][kind]}
    pair_jobs = []
    for a, b, _ in confused:
        ia, ib = labels.index(a), labels.index(b)
        taken = _most_confident(found, lambda f, ia=ia, ib=ib: f.truth == ia and f.label == ib, CONFUSION_SCORE)
        ref = _most_confident(found, lambda f, ib=ib: f.truth == ib and f.label == ib, 0.0)
        if taken is not None:
            pair_jobs.append((taken, ref))
            jobs |= {n for n in (taken, ref) if n is not None}

    examples, cached, empty = {}, {}, 0
    for n in tqdm(sorted(jobs, key=lambda n: (found[n].image, found[n].det)), desc="explain", disable=None):
        f = found[n]
        if f.image not in cached:
            cached = {f.image: data[f.image][0]}  # jobs run image by image: one image held at a time
        image = cached[f.image]
        box = preds[f.image]["boxes"][f.det]
        heat = box_gradcam(model, image, box.tolist(), f.label + 1)
        crop, crop_heat = _crop(image.permute(1, 2, 0).numpy(), heat, box.tolist())
        empty += heat.max() == 0
        examples[n] = explain.Example(
            crop,
            labels[f.truth],
            labels[f.label],
            score=f.score,
            heat=crop_heat if heat.max() > 0 else None,  # an empty map is not drawn: it would tint the crop
            name=rows[f.image]["path"],
        )

    figures = []
    grid = {labels[c]: {kind: [examples[n] for n in chosen[c][kind]] for kind in ("correct", "wrong")} for c in shown}
    path = explain.class_grid(
        grid,
        out_dir / "explanations_classes.png",
        f"Grad-CAM of each detection's score ({layer_name}); rows: the true class",
        per_class=per_class,
    )
    figures.append(
        (
            path,
            f"Detections of the {len(grid)} true classes with the most wrong detections (background: false alarms): "
            f"up to {per_class} correct and {per_class} wrong each, the most confident first, whatever their score; "
            "the box is drawn, the colour marks what raised its score",
        )
    )
    if pair_jobs:
        path = explain.pair_grid(
            [(examples[taken], None if ref is None else examples[ref]) for taken, ref in pair_jobs],
            out_dir / "explanations_pairs.png",
            "Most-confused classes at IoU 0.5: a detection of A labelled B, beside a correct B",
        )
        figures.append(
            (
                path,
                "The most-confused class pairs at IoU 0.5, score ≥ 0.5 ("
                + "; ".join(f"{a} → {b}: {n}" for a, b, n in confused)
                + ")",
            )
        )
    text = [
        f"Grad-CAM (captum LayerGradCam) on the backbone's layer {layer_name} (the last one every detection "
        "depends on), with the score of the "
        "detection as target: the colour marks the image regions that raised that score. Every detection is matched "
        "to the truth box it overlaps most (IoU ≥ 0.5, the more confident detections first); unmatched detections are "
        "false alarms (true class: background). Missed objects have no detection to explain: see the confusion matrix."
    ]
    if empty:
        text.append(
            f"{empty} of the {len(examples)} maps are empty (shown without colour): nothing in the image raised "
            "those scores, as with a detector that has barely trained."
        )
    if not confused:
        text.append("No detection scoring at least 0.5 was taken for another class, so there is no confused pair.")
    summary = {
        "method": METHOD,
        "layer": layer_name,
        "classes_shown": [labels[c] for c in shown],
        "confused_pairs": [{"truth": a, "predicted": b, "count": n} for a, b, n in confused],
        "maps": len(examples),
        "empty_maps": int(empty),
    }
    return Explained(figures, text, summary)


def _most_confident(found: list[_Detection], wanted, floor: float) -> int | None:
    best = [n for n, f in enumerate(found) if wanted(f) and f.score >= floor]
    return max(best, key=lambda n: (found[n].score, -n)) if best else None


def _crop(image: np.ndarray, heat: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The box with ``CONTEXT`` around it, its longer side at most ``THUMBNAIL`` pixels,
    the box drawn; the map cut the same way."""
    from PIL import Image, ImageDraw

    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    dx, dy = CONTEXT * max(x2 - x1, 8), CONTEXT * max(y2 - y1, 8)
    left, top = int(max(0, x1 - dx)), int(max(0, y1 - dy))
    right, bottom = int(min(width, np.ceil(x2 + dx))), int(min(height, np.ceil(y2 + dy)))
    right, bottom = max(right, left + 1), max(bottom, top + 1)
    crop = Image.fromarray((np.clip(image[top:bottom, left:right], 0, 1) * 255).astype(np.uint8))
    scale = min(1.0, THUMBNAIL / max(crop.size))
    crop = crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.BILINEAR)
    ImageDraw.Draw(crop).rectangle(
        [(x1 - left) * scale, (y1 - top) * scale, (x2 - left) * scale, (y2 - top) * scale], outline=(0, 255, 0), width=2
    )
    return np.asarray(crop, dtype=np.float32) / 255.0, heat[top:bottom, left:right]


def explain_files(
    model_dir: Path, images: list[Path], out_dir: Path, score: float = CONFUSION_SCORE, force: bool = False
) -> dict:
    """For each image, ``OUT/<stem>_explain.png``: every box scoring at least ``score`` (the
    ``MAX_BOXES`` most confident) with its Grad-CAM map, and ``OUT/explanations.json``:
    per image its detections (label, score, box, the share of the map inside the box: None
    for an all-zero map).
    Existing outputs are replaced only with ``force``."""
    from insectml.detector.predict import decode_image
    from insectml.errors import ConfigError, InputFileError
    from insectml.fileio import write_json_atomic

    if not 0 < score < 1:
        raise ConfigError(f"--score must be between 0 and 1, got {score}")
    for path in images:
        if not path.is_file():
            raise InputFileError(path, "image not found")
    pngs = [p.name for p in explain.output_paths(images, out_dir, force)]
    tensors = [decode_image(path.read_bytes(), name=str(path)) for path in images]
    model, classes, config = load_detector(model_dir)
    layer_name, _ = feature_layer(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    answers = []
    for path, png, image in zip(images, pngs, tensors, strict=True):
        with torch.no_grad():
            out = model([image])[0]
        keep = torch.nonzero(out["scores"] >= score).flatten().tolist()  # torchvision sorts by score
        detections = []
        for rank, d in enumerate(keep):
            box = [round(float(v), 1) for v in out["boxes"][d]]
            entry = {
                "label": classes[int(out["labels"][d]) - 1],
                "score": round(float(out["scores"][d]), 4),
                "box": box,
            }
            if rank < MAX_BOXES:
                heat = box_gradcam(model, image, out["boxes"][d].tolist(), int(out["labels"][d]))
                # an all-zero map (nothing raised the score: an untrained detector) has no share to give
                entry["map_in_box"] = round(share_in_box(heat, box), 4) if heat.max() > 0 else None
                entry["heat"] = heat
            detections.append(entry)
        _draw(image.permute(1, 2, 0).numpy(), detections, out_dir / png, f"{path.name} — {config['model']}")
        answers.append(
            {
                "file": str(path),
                "png": png,
                "detections": [{k: v for k, v in e.items() if k != "heat"} for e in detections],
            }
        )
    result = {
        "model": config["model"],
        "model_dir": str(model_dir),
        "score": score,
        "method": METHOD,
        "layer": layer_name,
        "max_boxes_explained": MAX_BOXES,
        "images": answers,
    }
    write_json_atomic(out_dir / explain.RESULTS, result, indent=2)
    return result


def _draw(image: np.ndarray, detections: list[dict], path: Path, title: str) -> Path:
    """One panel per explained box: the image, the box, its map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from insectml.fileio import open_atomic

    explained = [d for d in detections if "heat" in d]
    n = max(len(explained), 1)
    cols = min(n, 3)
    rows = -(-n // cols)
    height, width = image.shape[:2]
    side = 3.6
    fig, axes = plt.subplots(rows, cols, figsize=(side * cols, side * rows * height / width + 0.6), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    if not explained:
        axes[0, 0].imshow(image)
        axes[0, 0].set_title("no box above the score threshold", fontsize=9)
    for ax, d in zip(axes.ravel(), explained, strict=False):
        ax.imshow(image)
        ax.imshow(d["heat"], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        x1, y1, x2, y2 = d["box"]
        ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color="lime", lw=1.8))
        share = "empty map" if d["map_in_box"] is None else f"{d['map_in_box']:.0%} of the map in the box"
        ax.set_title(f"{d['label']} {d['score']:.2f} · {share}", fontsize=8, parse_math=False)
    more = len(detections) - len(explained)
    suffix = f" ({more} more boxes above the threshold not explained)" if more else ""
    fig.suptitle(f"{title}{suffix}\nGrad-CAM of each box's score", fontsize=9, parse_math=False)
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)
    return path
