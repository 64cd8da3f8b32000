"""Deterministic detection demo data from real insect pictures shipped by Debian.

Insect cut-outs with alpha channels come from ``openclipart-png`` (public domain,
``animals/bugs``) and ``tuxpaint-stamps-default`` (``animals/insects``). They are
scaled, rotated, flipped and recoloured slightly, pasted onto procedural backgrounds
(several per image, sometimes overlapping, some images with none), and their boxes are
taken from the pasted alpha mask. Two sets are written:

- ``insects_sly/``: a Supervisely project (``meta.json``, ``<dataset>/img``,
  ``<dataset>/ann``) with rectangles for every insect class, the target
  (``stink_bug``) rare among them;
- ``species/<class>/``: images that carry only a species label (mostly the target),
  for the pseudo-label stage.

Images of one scene share a background and a ``group`` tag, so splits can keep them
on one side.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from insectml.errors import UserError

log = logging.getLogger(__name__)

OPENCLIPART = Path("/usr/share/openclipart/png/animals/bugs")
TUXPAINT = Path("/usr/share/tuxpaint/stamps/animals/insects")
DEBIAN_PACKAGES = ("openclipart-png", "tuxpaint-stamps-default")
TARGET = "stink_bug"
SPRITES: dict[str, list[Path]] = {
    "stink_bug": [OPENCLIPART / "punaisa_01.png"],
    "ladybird": [
        OPENCLIPART / n
        for n in (
            "ladybug_01.png",
            "ladybug_02.png",
            "coccinella_architetto_fr_01.png",
            "coccinella_rollandin_arc_01.png",
            "coccinelle_tanguy_jacq_01.png",
            "bug_nicu_buculei_01.png",
        )
    ],
    "bee": [
        OPENCLIPART / n
        for n in (
            "bee.png",
            "bee1_mimooh_01.png",
            "bee2_mimooh_01.png",
            "bee3_mimooh_01.png",
            "abeille_tanguy_jacq_01.png",
        )
    ]
    + [TUXPAINT / "bee.png"],
    "fly": [OPENCLIPART / "fly_01.png", TUXPAINT / "fly.png", TUXPAINT / "hoverfly.png"],
    "wasp": [
        OPENCLIPART / "flying_wasp_gerald_g._01.png",
        OPENCLIPART / "flying_wasp_gerald_g._02.png",
        TUXPAINT / "hornet.png",
    ],
    "grasshopper": [
        OPENCLIPART / "grass_hopper_02.png",
        OPENCLIPART / "cavalletta_architetto_fr_01.png",
        TUXPAINT / "grasshopper.png",
    ],
    "mantis": [
        OPENCLIPART / "mante_religieuse_01.png",
        OPENCLIPART / "mantide_religiosa_archit_01.png",
        TUXPAINT / "mantis.png",
    ],
}
# Relative frequency in the box-labelled set: the target is rare there on purpose.
BOX_WEIGHTS = {
    "stink_bug": 0.4,
    "ladybird": 1.0,
    "bee": 1.0,
    "fly": 1.0,
    "wasp": 1.0,
    "grasshopper": 1.0,
    "mantis": 1.0,
}
COLOURS = {
    "stink_bug": "#2E7D32",
    "ladybird": "#D32F2F",
    "bee": "#FBC02D",
    "fly": "#616161",
    "wasp": "#F57C00",
    "grasshopper": "#7CB342",
    "mantis": "#00897B",
}
IMAGE_SIZE = 320


def load_sprites() -> dict[str, list]:
    """Every cut-out, cropped to its alpha bounding box, longest side at most 256 px."""
    from PIL import Image

    missing = [p for paths in SPRITES.values() for p in paths if not p.is_file()]
    if missing:
        raise UserError(
            f"{missing[0]}: insect picture not found; install the Debian packages "
            f"{' '.join(DEBIAN_PACKAGES)} (make setup does, as root)"
        )
    sprites: dict[str, list] = {}
    for name, paths in SPRITES.items():
        sprites[name] = []
        for path in paths:
            image = Image.open(path).convert("RGBA")
            image = image.crop(image.getchannel("A").point(lambda a: 255 if a > 32 else 0).getbbox())
            image.thumbnail((256, 256), Image.Resampling.LANCZOS)
            sprites[name].append(image)
    return sprites


def background(rng: np.random.Generator, size: int = IMAGE_SIZE):
    """A leafy, soil- or sky-like procedural background."""
    from PIL import Image, ImageDraw, ImageFilter

    base = rng.uniform(40, 220, size=3)
    tilt = rng.uniform(-60, 60, size=3)
    ramp = np.linspace(0, 1, size)[:, None, None]
    pixels = base[None, None, :] + tilt[None, None, :] * ramp + rng.normal(0, 12, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 14))):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(15, 90, 2)
        colour = tuple(int(c) for c in np.clip(base + rng.normal(0, 45, 3), 0, 255))
        draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
    return image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5))))


def paste(canvas, sprite, rng: np.random.Generator) -> list[int] | None:
    """Paste a transformed ``sprite`` at a random place; return its box [x1, y1, x2, y2]
    from the pasted alpha mask (None if nothing visible landed on the canvas)."""
    from PIL import Image, ImageEnhance

    longest = float(rng.uniform(38, 120))
    scale = longest / max(sprite.size)
    image = sprite.resize(
        (max(4, int(sprite.width * scale)), max(4, int(sprite.height * scale))), Image.Resampling.LANCZOS
    )
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(float(rng.uniform(0, 360)), resample=Image.Resampling.BICUBIC, expand=True)
    alpha = image.getchannel("A")
    rgb = ImageEnhance.Brightness(image.convert("RGB")).enhance(float(rng.uniform(0.75, 1.25)))
    image = Image.merge("RGBA", (*rgb.split(), alpha))
    x = int(rng.integers(-image.width // 4, canvas.width - 3 * image.width // 4))
    y = int(rng.integers(-image.height // 4, canvas.height - 3 * image.height // 4))
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    layer.paste(image, (x, y), image)
    box = layer.getchannel("A").point(lambda a: 255 if a > 64 else 0).getbbox()
    if box is None:
        return None
    canvas.alpha_composite(layer)
    return list(box)


def _annotation(boxes: list[tuple[str, list[int]]], group: str, size: int) -> dict:
    return {
        "description": "",
        "tags": [{"name": "group", "value": group}],
        "size": {"height": size, "width": size},
        "objects": [
            {
                "classTitle": name,
                "geometryType": "rectangle",
                "tags": [],
                "points": {"exterior": [[x1, y1], [x2 - 1, y2 - 1]], "interior": []},
            }
            for name, (x1, y1, x2, y2) in boxes
        ],
    }


def _meta() -> dict:
    return {
        "classes": [{"title": n, "shape": "rectangle", "color": COLOURS[n]} for n in SPRITES],
        "tags": [{"name": "group", "value_type": "any_string", "color": "#0F8CE6"}],
        "projectType": "images",
    }


def write_detector_demo(
    out_dir: Path, n_box_images: int = 240, n_species_images: int = 120, seed: int = 20240601
) -> Path:
    """Write ``out_dir/insects_sly`` and ``out_dir/species``; same seed, same bytes."""
    from tqdm import tqdm

    sprites = load_sprites()
    names = list(SPRITES)
    weights = np.asarray([BOX_WEIGHTS[n] for n in names])
    weights = weights / weights.sum()
    out_dir = Path(out_dir)
    project = out_dir / "insects_sly"
    (project / "insects" / "img").mkdir(parents=True, exist_ok=True)
    (project / "insects" / "ann").mkdir(parents=True, exist_ok=True)
    (project / "meta.json").write_text(json.dumps(_meta(), indent=2) + "\n")
    scenes = max(8, n_box_images // 6)
    for i in tqdm(range(n_box_images), desc="detector demo (boxes)", unit="img", disable=None):
        rng = np.random.default_rng([seed, 1, i])
        scene = int(rng.integers(scenes))
        canvas = background(np.random.default_rng([seed, 2, scene])).convert("RGBA")
        boxes = []
        count = 0 if rng.random() < 0.1 else int(rng.integers(1, 5))
        for _ in range(count):
            name = names[int(rng.choice(len(names), p=weights))]
            sprite = sprites[name][int(rng.integers(len(sprites[name])))]
            box = paste(canvas, sprite, rng)
            if box is not None:
                boxes.append((name, box))
        file = f"insects_{i:04d}.jpg"
        canvas.convert("RGB").save(project / "insects" / "img" / file, quality=90)
        (project / "insects" / "ann" / f"{file}.json").write_text(
            json.dumps(_annotation(boxes, f"scene{scene:03d}", canvas.width), indent=2) + "\n"
        )
    species_counts = {TARGET: int(n_species_images * 0.6), "ladybird": int(n_species_images * 0.2)}
    species_counts["bee"] = n_species_images - sum(species_counts.values())
    for s, (name, n) in enumerate(species_counts.items()):
        folder = out_dir / "species" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rng = np.random.default_rng([seed, 3, s, i])
            canvas = background(rng).convert("RGBA")
            for _ in range(1 if rng.random() < 0.85 else 2):
                paste(canvas, sprites[name][int(rng.integers(len(sprites[name])))], rng)
            canvas.convert("RGB").save(folder / f"{name}_{i:04d}.jpg", quality=90)
    log.info("wrote %d box-labelled and %d species-labelled images to %s", n_box_images, n_species_images, out_dir)
    return out_dir
