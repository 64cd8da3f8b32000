"""What makes a query similar to its prototype: Grad-CAM (captum's ``LayerGradCam``) on the
embedder's last spatial feature layer, whose target is the cosine similarity between the
query's embedding and the prototype of the class it is given (its nearest one).

The layer is found by running the backbone once and watching its modules' outputs (a timm
model's stages, its ``feature_info``, when it names them): the last one that is a feature map (B, C, H, W) of at least ``MIN_SIDE`` × ``MIN_SIDE`` cells
(a map of 1 × 1 or 2 × 2 says nothing about where; then the last of at least 2 × 2). A
backbone that turns its map into tokens and goes on with them (a vision transformer, the
vision tower of most open_clip models) has no such layer: it is not explained, and the
report and the CLI say so.

:func:`explain_evaluation` draws, for an evaluation, a per-class grid of correct and wrong
test queries with their maps (the classes with the most errors, at most
``MAX_CLASSES``) and the most-confused class pairs side by side."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from insectml import explain
from insectml.fewshot.data import ImageSet, normalisation

log = logging.getLogger(__name__)

MIN_SIDE = 4
MAX_CLASSES = 12  # rows of the per-class grid: the classes with the most errors
MIN_CLASSES = 8  # rows filled with error-free classes when fewer have errors
PER_CLASS = 2  # correct and wrong queries shown per class
PAIRS = 3  # most-confused class pairs shown
THUMBNAIL = 160  # pixels: the longer side of an image as shown


@dataclass(frozen=True)
class SpatialLayer:
    """The layer Grad-CAM looks at: its name in the backbone, the module, and the size of
    its map (rows, columns) for the model's input size."""

    name: str
    module: nn.Module
    shape: tuple[int, int]


def spatial_layer(model: nn.Module, image_size: int, min_side: int = MIN_SIDE) -> SpatialLayer | None:
    """The last spatial feature layer of ``model.backbone`` (see the module docstring), or
    None when the backbone has none. A timm model's stages (its ``feature_info``) are
    preferred to the layers inside them."""
    backbone = model.backbone
    names = {module: name for name, module in backbone.named_modules() if name}
    seen: list[tuple[str, int, tuple[int, ...]]] = []  # (name, ndim, shape) in the order outputs appear

    def watch(module, _inputs, output):
        if isinstance(output, torch.Tensor) and module in names:
            seen.append((names[module], output.dim(), tuple(output.shape)))

    handles = [module.register_forward_hook(watch) for module in names]
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(training)
    maps = [(i, name, shape[2:]) for i, (name, ndim, shape) in enumerate(seen) if ndim == 4 and min(shape[2:]) >= 2]
    if not maps or any(ndim == 3 for _, ndim, _ in seen[maps[-1][0] + 1 :]):
        return None  # no map, or it became tokens: a transformer's patch embedding, not a CNN's features
    stages = {info["module"] for info in getattr(backbone, "feature_info", None) or () if isinstance(info, dict)}
    if stages & {name for _, name, _ in maps}:
        maps = [m for m in maps if m[1] in stages]  # timm names its stages: a whole stage, not a layer inside one
    large = [m for m in maps if min(m[2]) >= min_side]
    _, name, shape = (large or maps)[-1]
    return SpatialLayer(name, backbone.get_submodule(name), (int(shape[0]), int(shape[1])))


def no_layer_sentence(backbone: str) -> str:
    return (
        f"The backbone {backbone} has no spatial feature layer (its image becomes tokens, as in a vision "
        "transformer), so Grad-CAM cannot show where it looks; no maps are drawn."
    )


class _Similarity(nn.Module):
    """images, prototypes → the cosine of each image's embedding to its prototype (B,)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        return (self.model(images) * prototypes).sum(1)


def similarity_maps(
    model: nn.Module, layer: SpatialLayer, images: torch.Tensor, prototypes: np.ndarray, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the cosine similarity of each image (normalised, (B, 3, H, W)) to its
    prototype (a unit row of ``prototypes``, (B, D)): the maps (B, H, W), non-negative,
    upsampled bilinearly to the input size, and the cosines (B,)."""
    from captum.attr import LayerAttribution, LayerGradCam

    model.eval()
    target = _Similarity(model)
    cam = LayerGradCam(target, layer.module)
    protos = torch.as_tensor(np.asarray(prototypes), dtype=torch.float32)
    maps, cosines = [], []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].clone().requires_grad_(True)  # gradients reach a frozen backbone
        proto = protos[start : start + batch_size]
        with torch.enable_grad():
            attribution = cam.attribute(batch, additional_forward_args=(proto,), relu_attributions=True)
        upsampled = LayerAttribution.interpolate(attribution.detach(), tuple(images.shape[-2:]), "bilinear")
        maps.append(upsampled[:, 0].numpy())
        with torch.no_grad():
            cosines.append(target(batch.detach(), proto).numpy())
    if not maps:
        return np.zeros((0, *images.shape[-2:]), np.float32), np.zeros(0, np.float32)
    return np.concatenate(maps).astype(np.float32), np.concatenate(cosines).astype(np.float32)


def thumbnail(path: Path, side: int = THUMBNAIL) -> np.ndarray:
    """The image at ``path`` as shown: RGB in [0, 1], its longer side at most ``side``. The
    model sees it squeezed to a square; a map resized onto this keeps the correspondence."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((side, side))
        return np.asarray(image, dtype=np.float32) / 255.0


@dataclass
class Explained:
    """What :func:`explain_evaluation` drew: the figures (class grid, pairs), the sentences
    for the report, and a summary for metrics.json."""

    figures: list[tuple[Path, str]]
    text: list[str]
    summary: dict


def explain_evaluation(
    model: nn.Module,
    config: dict,
    rows: list[dict],
    root: Path,
    emb: np.ndarray,
    out_dir: Path,
    max_classes: int = MAX_CLASSES,
    min_classes: int = MIN_CLASSES,
    per_class: int = PER_CLASS,
    pairs: int = PAIRS,
) -> Explained:
    """Explain the nearest-prototype classification of ``rows``' query images (prototypes
    from their support images; ``emb``: the rows' embeddings by ``model``) in ``out_dir``:
    ``explanations_classes.png``, per class the ``per_class`` most similar correct and wrong
    queries, for the ``max_classes`` classes with the most wrong queries, filled up to
    ``min_classes`` with error-free ones; ``explanations_pairs.png``, the ``pairs``
    most-confused class pairs, a query of A taken for B beside the most similar recognised
    image of B."""
    from insectml.fewshot.gallery import prototype_classification

    layer = spatial_layer(model, config["image_size"])
    if layer is None:
        return Explained([], [no_layer_sentence(config["backbone"])], {"method": None, "layer": None})
    gallery, queries, truth = prototype_classification(emb, rows)
    query_rows = [r for r in rows if r["subset"] == "query"]
    sims = gallery.similarities(queries)
    predicted = sims.argmax(1)
    best = sims.max(1)
    classes = gallery.classes

    errors = np.bincount(truth[predicted != truth], minlength=len(classes))
    ranked = sorted(set(truth.tolist()), key=lambda c: (-errors[c], classes[c]))
    # the classes with errors, then (for the correct examples) error-free ones up to ``min_classes``
    shown = [c for c in ranked if errors[c]][:max_classes]
    shown += [c for c in ranked if not errors[c]][: max(0, min(min_classes, max_classes) - len(shown))]
    chosen = explain.pick(truth, predicted, best, per_class=per_class)
    matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    confused = explain.confused_pairs(matrix, classes, top=pairs)

    # every image to explain, keyed by ("query", index into query_rows) or ("row", index into rows),
    # with the class whose prototype is its target
    jobs: dict[tuple[str, int], tuple[dict, int]] = {}
    for c in shown:
        for i in chosen[c]["correct"] + chosen[c]["wrong"]:
            jobs[("query", i)] = (query_rows[i], int(predicted[i]))
    pair_keys = []
    for a, b, _ in confused:
        ia, ib = classes.index(a), classes.index(b)
        taken = next(int(i) for i in np.argsort(-best, kind="stable") if truth[i] == ia and predicted[i] == ib)
        jobs[("query", taken)] = (query_rows[taken], ib)
        ref = _recognised(emb, rows, gallery, b)
        if ref is not None:
            jobs[("row", ref)] = (rows[ref], ib)
        pair_keys.append((("query", taken), None if ref is None else ("row", ref)))

    keys = list(jobs)
    if not keys:
        return Explained([], ["No test queries to explain."], {"method": None, "layer": layer.name})
    images = ImageSet([jobs[k][0] for k in keys], root, [], config["image_size"], False, **normalisation(config))
    batch = torch.stack([images[n][0] for n in range(len(keys))])
    targets = [jobs[k][1] for k in keys]
    heat, cosine = similarity_maps(model, layer, batch, gallery.prototypes[targets])
    examples = {
        key: explain.Example(
            thumbnail(root / jobs[key][0]["path"]),
            jobs[key][0]["label"],
            classes[targets[n]],
            score=float(cosine[n]),
            heat=heat[n],
            name=jobs[key][0]["path"],
        )
        for n, key in enumerate(keys)
    }

    figures = []
    grid = {
        classes[c]: {kind: [examples[("query", i)] for i in chosen[c][kind]] for kind in ("correct", "wrong")}
        for c in shown
    }
    if grid:
        path = explain.class_grid(
            grid,
            out_dir / "explanations_classes.png",
            f"Grad-CAM of the cosine to the nearest prototype ({layer.name}, {layer.shape[0]}×{layer.shape[1]})",
            per_class=per_class,
        )
        figures.append(
            (
                path,
                f"Test queries of {len(grid)} classes, those with the most errors first "
                f"({int((errors > 0).sum())} of {len(classes)} classes have errors): up to {per_class} correct and "
                f"{per_class} wrong each (the most similar first), coloured by what raised their similarity to the "
                "prototype they were given",
            )
        )
    if pair_keys:
        path = explain.pair_grid(
            [(examples[wrong], examples[ref] if ref is not None else None) for wrong, ref in pair_keys],
            out_dir / "explanations_pairs.png",
            "Most-confused classes: a query taken for B, beside a recognised B",
        )
        figures.append(
            (path, "The most-confused class pairs (" + "; ".join(f"{a} → {b}: {n}" for a, b, n in confused) + ")")
        )
    text = [
        "Grad-CAM (captum LayerGradCam) on the backbone's layer "
        f"{layer.name} ({layer.shape[0]}×{layer.shape[1]} cells at {config['image_size']} px), with the cosine "
        "similarity of the query's embedding to the prototype of the class it was given as target: the colour marks "
        "what made the query look like that class. Prototypes from the test classes' support images."
    ]
    summary = {
        "method": "grad-cam (captum LayerGradCam), target: cosine to the nearest prototype",
        "layer": layer.name,
        "map_shape": list(layer.shape),
        "classes_shown": [classes[c] for c in shown],
        "confused_pairs": [{"truth": a, "predicted": b, "count": n} for a, b, n in confused],
    }
    return Explained(figures, text, summary)


def _recognised(emb: np.ndarray, rows: list[dict], gallery, label: str) -> int | None:
    """The row of class ``label`` (a query first, else a support image) whose nearest
    prototype is its own, the most similar; None if none is."""
    target = gallery.classes.index(label)
    sims = emb @ gallery.prototypes.T
    candidates = [i for i, r in enumerate(rows) if r["label"] == label and int(sims[i].argmax()) == target]
    if not candidates:
        return None
    return min(candidates, key=lambda i: (rows[i]["subset"] != "query", -float(sims[i, target]), i))


RESULTS = explain.RESULTS


def explain_images(
    model_dir: Path, gallery_dir: Path, paths: list[Path], out_dir: Path, force: bool = False
) -> list[dict]:
    """For each image: its nearest gallery class, the cosine to that class's prototype, the
    served label (``unknown`` below the gallery's threshold) and the Grad-CAM map of that
    cosine drawn over the image (``<stem>_explain.png`` in ``out_dir``), all listed in
    ``explanations.json``. Every image is read and every output checked before anything is
    written; an existing output is kept unless ``force``."""
    from insectml.errors import ConfigError
    from insectml.fewshot.data import load_tensor
    from insectml.fewshot.predict import FewshotPredictor
    from insectml.fileio import write_json_atomic

    outputs = explain.output_paths(paths, out_dir, force)
    images = [_read_image(p) for p in paths]
    predictor = FewshotPredictor(model_dir, gallery_dir)
    layer = spatial_layer(predictor.model, predictor.size)
    if layer is None:
        raise ConfigError(f"{model_dir}: {no_layer_sentence(predictor.config['backbone'])}")
    gallery = predictor.gallery
    embeddings = predictor.embed_images(images)
    answers = [gallery.answer(e, k=1) for e in embeddings]
    nearest = gallery.similarities(embeddings).argmax(1)
    batch = torch.stack([load_tensor(im, predictor.size, **predictor.normalisation) for im in images])
    heat, cosine = similarity_maps(predictor.model, layer, batch, gallery.prototypes[nearest])
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for k, (path, out) in enumerate(zip(paths, outputs, strict=True)):
        name = gallery.classes[int(nearest[k])]
        said = "" if answers[k]["label"] == name else f" — answered unknown (threshold {gallery.threshold:.3f})"
        plot_image(images[k], heat[k], out, f"{Path(path).name}: nearest {name} (cosine {cosine[k]:.3f}){said}")
        results.append(
            {
                "file": str(path),
                "nearest": name,
                "similarity": round(float(cosine[k]), 6),
                "label": answers[k]["label"],
                "threshold": gallery.threshold,
                "map": out.name,
            }
        )
    write_json_atomic(
        out_dir / RESULTS,
        {
            "model": str(model_dir),
            "gallery": str(gallery_dir),
            "method": "grad-cam (captum LayerGradCam), target: cosine to the nearest prototype",
            "layer": layer.name,
            "map_shape": list(layer.shape),
            "images": results,
        },
    )
    return results


def _read_image(path: Path):
    from insectml.data.images import open_image
    from insectml.errors import InputFileError

    if not Path(path).is_file():
        raise InputFileError(path, "image not found")
    return open_image(Path(path).read_bytes(), name=str(path))


def plot_image(image, heat: np.ndarray, path: Path, title: str, side: int = 2 * THUMBNAIL) -> Path:
    """The image (a PIL image) beside the same image under its map (resized onto it), as PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from insectml.fileio import open_atomic

    shown = image.convert("RGB")
    shown.thumbnail((side, side))
    pixels = np.asarray(shown, dtype=np.float32) / 255.0
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(pixels)
    axes[1].imshow(pixels)
    axes[1].imshow(
        explain.normalise_heat(explain.resize_heat(heat, pixels.shape[:2])), cmap="jet", alpha=0.45, vmin=0, vmax=1
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with open_atomic(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)
    return path
