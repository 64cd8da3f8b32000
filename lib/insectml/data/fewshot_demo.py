"""Deterministic few-shot demo data: hundreds of similar "morphospecies" from real
insect pictures shipped by Debian.

Every insect cut-out of ``openclipart-png`` (``animals/bugs``) and
``tuxpaint-stamps-default`` (``animals/insects``) is a body plan; each body plan gets
six colour morphs — three hues 24° apart, each with and without a class-specific pattern
of dark spots — so sibling classes share their shape and differ only in a hue shift or
a few spots. Each class has 3–6 images of 64×64 px in varied poses (rotation, scale,
mirror, brightness, small hue jitter, position) on low-contrast backgrounds.

Written as ``<out>/images/<class>/<class>_<i>.png`` (folder per class) plus
``classes.csv`` (class, body plan, hue shift, spots).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from insectml.data.detector_demo import DEBIAN_PACKAGES, OPENCLIPART, TUXPAINT
from insectml.errors import UserError

SIZE = 64
HUE_STEPS = (0, 24, 48)  # degrees
EXCLUDE = ("virus", "quattro_farfalle", "lumaca", "slug")  # not one insect, or not an arthropod


def body_plans() -> list[Path]:
    """Every single-insect cut-out, sorted for a stable class order."""
    paths = [p for d in (OPENCLIPART, TUXPAINT) for p in sorted(d.glob("*.png")) if not d.name == "cartoon"]
    paths = [p for p in paths if not any(x in p.name.lower() for x in EXCLUDE)]
    if len(paths) < 50:
        raise UserError(
            f"{OPENCLIPART}: only {len(paths)} insect pictures found; install the Debian packages "
            f"{' '.join(DEBIAN_PACKAGES)} (make setup does, as root)"
        )
    return paths


def _load(path: Path):
    from PIL import Image

    image = Image.open(path).convert("RGBA")
    image = image.crop(image.getchannel("A").point(lambda a: 255 if a > 32 else 0).getbbox())
    image.thumbnail((128, 128), Image.Resampling.LANCZOS)
    return image


def _hue_shift(image, degrees: float):
    from PIL import Image

    alpha = image.getchannel("A")
    hsv = np.asarray(image.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(round(degrees / 360 * 255))) % 256
    out = Image.fromarray(hsv, "HSV").convert("RGB").convert("RGBA")
    out.putalpha(alpha)
    return out


def _spots(image, rng: np.random.Generator):
    """3–5 dark spots at class-fixed positions inside the body (relative coordinates)."""
    from PIL import ImageDraw

    out = image.copy()
    alpha = np.asarray(image.getchannel("A")) > 128
    ys, xs = np.nonzero(alpha)
    draw = ImageDraw.Draw(out)
    radius = max(2, min(image.size) // 14)
    for _ in range(int(rng.integers(3, 6))):
        i = int(rng.integers(len(xs)))
        x, y = int(xs[i]), int(ys[i])
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(20, 15, 10, 255))
    out.putalpha(image.getchannel("A"))
    return out


def _background(rng: np.random.Generator):
    from PIL import Image

    base = rng.uniform(150, 235, size=3)
    tilt = rng.uniform(-25, 25, size=3)
    ramp = np.linspace(-1, 1, SIZE)[None, :, None] * tilt
    noise = rng.normal(0, 6, size=(SIZE, SIZE, 1))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(pixels, (SIZE, SIZE, 3)).copy(), "RGB")


def _render(morph, rng: np.random.Generator):
    from PIL import Image, ImageEnhance

    sprite = _hue_shift(morph, rng.uniform(-4, 4))
    if rng.random() < 0.5:
        sprite = sprite.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    sprite = sprite.rotate(rng.uniform(-35, 35), resample=Image.Resampling.BICUBIC, expand=True)
    scale = rng.uniform(0.70, 0.92) * SIZE / max(sprite.size)
    sprite = sprite.resize(
        (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))), Image.Resampling.LANCZOS
    )
    rgb = ImageEnhance.Brightness(sprite.convert("RGB")).enhance(rng.uniform(0.85, 1.15))
    rgb.putalpha(sprite.getchannel("A"))
    canvas = _background(rng)
    x = int((SIZE - rgb.width) / 2 + rng.integers(-4, 5))
    y = int((SIZE - rgb.height) / 2 + rng.integers(-4, 5))
    canvas.paste(rgb, (x, y), rgb)
    return canvas


def write_fewshot_demo(
    out_dir: Path, seed: int = 20240601, min_images: int = 3, max_images: int = 6, body_plan_limit: int = 0
) -> Path:
    """Write the few-shot demo into ``out_dir``; same seed, same bytes. ``body_plan_limit``
    keeps the first N body plans (6 classes each; 0 = all) for small test sets."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    images_dir = out_dir / "images"
    rows = []
    plans = body_plans()[: body_plan_limit or None]
    for p_idx, path in enumerate(tqdm(plans, desc="few-shot demo", unit="body plan", disable=None)):
        sprite = _load(path)
        plan = path.stem.lower().replace(".", "_").replace("-", "_")
        if path.parent == TUXPAINT:  # both packages have a bee.png and a fly.png
            plan = f"tux_{plan}"
        for h_idx, hue in enumerate(HUE_STEPS):
            for spotted in (False, True):
                name = f"{plan}_h{hue:02d}{'_spotted' if spotted else ''}"
                rng = np.random.default_rng([seed, p_idx, h_idx, int(spotted)])
                morph = _hue_shift(sprite, hue)
                if spotted:
                    morph = _spots(morph, rng)
                folder = images_dir / name
                folder.mkdir(parents=True, exist_ok=True)
                n = int(rng.integers(min_images, max_images + 1))
                for i in range(n):
                    _render(morph, rng).save(folder / f"{name}_{i}.png", optimize=False)
                rows.append(
                    {
                        "class": name,
                        "body_plan": f"{path.parent.name}/{path.name}",
                        "hue_shift": hue,
                        "spots": int(spotted),
                        "n": n,
                    }
                )
    with (out_dir / "classes.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out_dir
