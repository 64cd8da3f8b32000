"""Read labelled images into manifest rows: Supervisely projects (boxes) and
folder-per-species image sets (image-level labels only).

Supervisely exports are read with the ``supervisely`` SDK: rectangles become boxes,
polygons and bitmaps are reduced to their bounding boxes, image tags are kept (a
``group`` tag, if present, is the split group). Boxes are ``[x1, y1, x2, y2]`` in pixels,
right/bottom exclusive; Supervisely's rectangle corners are inclusive pixel indices.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from insectml.errors import InputFileError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def class_name(text: str) -> str:
    """A class name as written, in Unicode NFC and without outer whitespace: "Stål" typed
    on one system and a folder "Stål" made on macOS (which stores it decomposed) must be
    one class; case, spaces, dots, brackets and commas stay as they are."""
    return unicodedata.normalize("NFC", text).strip()


@dataclass
class ImageRecord:
    path: str  # relative to the data root
    group: str
    boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    species: str | None = None  # image-level label (species sets)
    tags: dict[str, object] = field(default_factory=dict)
    declared_size: tuple[int, int] | None = None  # (width, height) from the annotation


def read_supervisely(project_dir: Path, root: Path) -> tuple[list[str], list[ImageRecord], list[str]]:
    """Classes, one record per image, and problems found while reading (an annotation
    the SDK refuses, e.g. an unknown class, is a problem naming its file)."""
    sly = _import_supervisely()

    if not (project_dir / "meta.json").is_file():
        raise InputFileError(project_dir, "not a Supervisely project (no meta.json)")
    try:
        project = sly.Project(str(project_dir), sly.OpenMode.READ)
    except Exception as exc:  # noqa: BLE001 - the SDK raises many types for a malformed project
        raise InputFileError(project_dir, f"Supervisely project cannot be read ({_short(exc)})") from None
    classes = [class_name(c.name) for c in project.meta.obj_classes]
    records, problems = [], []
    for dataset in project.datasets:
        for item in dataset:
            image_path, ann_path = (Path(p) for p in dataset.get_item_paths(item))
            rel = image_path.relative_to(root).as_posix()
            # Labels one by one: sly.Annotation would silently crop boxes to the image,
            # and validation must see (and report) boxes that stick out.
            try:
                data = json.loads(ann_path.read_text(encoding="utf-8"))
                labels = [sly.Label.from_json(obj, project.meta) for obj in data.get("objects", [])]
                size = data["size"]
            except Exception as exc:  # noqa: BLE001 - malformed JSON, unknown class, bad geometry
                problems.append(f"{ann_path.relative_to(root).as_posix()}: {_short(exc)}")
                continue
            tags = {t["name"]: t.get("value") for t in data.get("tags", [])}
            record = ImageRecord(
                path=rel,
                group=str(tags.get("group") or f"{dataset.name}/{item}"),
                tags=tags,
                declared_size=(size["width"], size["height"]),
            )
            for label in labels:
                bbox = label.geometry.to_bbox()
                record.boxes.append([bbox.left, bbox.top, bbox.right + 1, bbox.bottom + 1])
                record.labels.append(class_name(label.obj_class.name))
            records.append(record)
    return classes, records, problems


def _import_supervisely():
    """The ``supervisely`` SDK, imported without its process-wide side effects: on import it
    switches off PIL's decompression-bomb limit, and replaces ``tqdm.tqdm`` in modules on
    the import stack with its own class (whose ``update`` needs an argument). Validation
    and feature extraction in the same process rely on both, so they are put back."""
    import sys

    from PIL import Image, ImageFile

    saved_pixels, saved_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    tqdm_module = sys.modules.get("tqdm")
    saved_tqdm = getattr(tqdm_module, "tqdm", None)
    try:
        import supervisely
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved_pixels, saved_truncated
        if tqdm_module is not None and saved_tqdm is not None:
            tqdm_module.tqdm = saved_tqdm
    return supervisely


def read_species_folders(folder: Path, root: Path) -> list[ImageRecord]:
    """``<species>/<image>`` below ``folder``: image-level labels, no boxes."""
    if not folder.is_dir():
        raise InputFileError(folder, "species image folder not found")
    records = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        parts = path.relative_to(folder).parts
        if len(parts) < 2:
            raise InputFileError(path, "lies directly in the species folder; expected <species>/<image>")
        rel = path.relative_to(root).as_posix()
        records.append(ImageRecord(path=rel, group=rel, species=class_name(parts[0])))
    if not records:
        raise InputFileError(folder, "no images below this folder")
    return records


def _short(exc: Exception) -> str:
    return " ".join(str(exc).split())[:160] or type(exc).__name__
