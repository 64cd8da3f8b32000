"""Small generators of good and bad inputs for the bad-input corpus: recordings, images,
box-label exports (Supervisely, COCO, YOLO, Pascal VOC) and labels CSVs, written into a
temporary folder. Nothing here is checked in as a binary file; every file is made."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

RATE = 8000  # the default --wingbeat_sample_rate


# ---------------------------------------------------------------- recordings


def tone(seconds: float, rate: int = RATE, seed: int = 0) -> np.ndarray:
    """A wingbeat-like tone with noise; each seed gives different bytes (no duplicates)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    f0 = 300 + 20 * seed % 400
    return (0.3 * np.sin(2 * np.pi * f0 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def wav(path: Path, seconds: float = 0.2, rate: int = RATE, channels: int = 1, subtype: str = "PCM_16", seed: int = 0):
    audio = tone(seconds, rate, seed)
    sf.write(path, np.stack([audio] * channels, axis=1) if channels > 1 else audio, rate, subtype=subtype)


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    """A recording as a request body; a long one repeats a one-second tone (cheap to make)."""
    audio = np.resize(tone(min(seconds, 1.0), seed=seed), int(seconds * RATE))
    buffer = io.BytesIO()
    sf.write(buffer, audio, RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def wav_truncated(path: Path) -> None:
    wav(path, seconds=1.0, seed=91)
    path.write_bytes(path.read_bytes()[:300])  # the header still promises a second of audio


def wav_with(value: float):
    """A float WAV holding ``value`` (NaN, inf) in a few samples."""

    def make(path: Path) -> None:
        audio = tone(0.2, seed=92)
        audio[10:13] = value
        sf.write(path, audio, RATE, subtype="FLOAT")

    return make


# ---------------------------------------------------------------- images


def noise(size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB") -> Image.Image:
    """Blocky noise: every seed a different picture, far apart in dHash."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize(size, Image.Resampling.NEAREST).convert(mode)


def png(path: Path, size: tuple[int, int] = (64, 48), seed: int = 0) -> None:
    noise(size, seed).save(path, format="PNG")


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def jpeg_truncated() -> bytes:
    whole = encoded(noise((256, 192), seed=81), "JPEG", quality=95)
    return whole[: len(whole) // 2]


def cmyk_jpeg() -> bytes:
    return encoded(noise(seed=82, mode="CMYK"), "JPEG")


def png_16bit() -> bytes:
    """A greyscale 16-bit PNG (PIL mode I;16), as scientific cameras write."""
    ramp = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    return encoded(Image.fromarray(ramp), "PNG")


def png_1x1() -> bytes:
    return encoded(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG")


def bomb() -> bytes:
    """A few kB that declare 200 Mpx: above twice PIL's MAX_IMAGE_PIXELS, so PIL refuses it."""
    return encoded(Image.new("1", (20000, 10000)), "PNG")


def bomb_48mpx() -> bytes:
    """48 Mpx: under PIL's own refusal, over the server's 40 Mpx cap."""
    return encoded(Image.new("1", (8000, 6000)), "PNG")


def gif_animated() -> bytes:
    frames = [noise(seed=83 + i, mode="P") for i in range(3)]
    return encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def png_as_wav(path: Path) -> None:
    path.write_bytes(encoded(noise(seed=84), "PNG"))


# ---------------------------------------------------------------- box labels


def yolo(root: Path, n: int = 6, names: tuple[str, ...] = ("bug",)) -> Path:
    """A YOLO export (data.yaml, train/images, train/labels) of ``n`` 64x48 images with one
    box each; returns data.yaml."""
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir(parents=True)
    for i in range(n):
        png(root / "train" / "images" / f"img{i}.png", seed=i)
        (root / "train" / "labels" / f"img{i}.txt").write_text("0 0.5 0.5 0.4 0.4\n")
    data = root / "data.yaml"
    data.write_text(f"train: train/images\nnames: {json.dumps(list(names))}\n")
    return data


def yolo_image(root: Path, name: str, body: bytes, label: str = "0 0.5 0.5 0.4 0.4\n") -> None:
    """One more image (any bytes) with its label file in a :func:`yolo` export."""
    (root / "train" / "images" / name).write_bytes(body)
    (root / "train" / "labels" / Path(name).with_suffix(".txt")).write_text(label)


def supervisely(root: Path, n: int = 6, box=(10, 10, 40, 30), cls: str = "bug") -> Path:
    """A Supervisely project (meta.json, ds/img, ds/ann); image 0's one box is ``box``
    ([x1, y1, x2, y2], right/bottom exclusive) of class ``cls``; returns the project."""
    project = root / "sly"
    (project / "ds" / "img").mkdir(parents=True)
    (project / "ds" / "ann").mkdir(parents=True)
    meta = {
        "classes": [{"title": "bug", "shape": "rectangle", "color": "#FF0000"}],
        "tags": [],
        "projectType": "images",
    }
    (project / "meta.json").write_text(json.dumps(meta))
    for i in range(n):
        png(project / "ds" / "img" / f"img{i}.png", seed=i)
        x1, y1, x2, y2 = box if i == 0 else (10, 10, 40, 30)
        obj = {
            "classTitle": cls if i == 0 else "bug",
            "geometryType": "rectangle",
            "tags": [],
            "points": {"exterior": [[x1, y1], [x2 - 1, y2 - 1]], "interior": []},
        }
        ann = {"description": "", "tags": [], "size": {"width": 64, "height": 48}, "objects": [obj]}
        (project / "ds" / "ann" / f"img{i}.png.json").write_text(json.dumps(ann))
    return project


def coco(root: Path, n: int = 6, dangling: bool = False) -> Path:
    """A COCO file beside its images; with ``dangling``, one annotation names image id 99."""
    root.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(n):
        png(root / f"img{i}.png", seed=i)
        images.append({"id": i + 1, "file_name": f"img{i}.png", "width": 64, "height": 48})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0})
    if dangling:
        annotations.append({"id": 50, "image_id": 99, "category_id": 1, "bbox": [10, 10, 20, 20], "iscrowd": 0})
    data = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "bug"}]}
    path = root / "instances.json"
    path.write_text(json.dumps(data))
    return path


def voc(root: Path, n: int = 6, sized: bool = True) -> Path:
    """A Pascal VOC folder (Annotations, JPEGImages); without ``sized``, image 0's XML has no <size>."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir(parents=True)
    for i in range(n):
        png(root / "JPEGImages" / f"img{i}.png", seed=i)
        size = "<size><width>64</width><height>48</height><depth>3</depth></size>" if sized or i else ""
        (root / "Annotations" / f"img{i}.xml").write_text(
            f"<annotation><filename>img{i}.png</filename>{size}<object><name>bug</name>"
            "<bndbox><xmin>11</xmin><ymin>11</ymin><xmax>30</xmax><ymax>30</ymax></bndbox></object></annotation>"
        )
    return root


# ---------------------------------------------------------------- few-shot image sets


def fewshot_set(root: Path, classes: int = 10, per_class: int = 2) -> Path:
    """``classes`` x ``per_class`` images under root/images/<class>/ and labels.csv (path,label)
    listing them; returns labels.csv."""
    rows = ["path,label"]
    for c in range(classes):
        (root / "images" / f"class{c}").mkdir(parents=True)
        for k in range(per_class):
            rel = f"images/class{c}/{k}.png"
            png(root / rel, seed=1000 + c * per_class + k)
            rows.append(f"{rel},class{c}")
    labels = root / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels
