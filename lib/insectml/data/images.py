"""Reading images that come from users: decoding request bodies and uploaded files
(:func:`open_image`), and checking image files before a family trains on them
(:func:`check_image`)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from insectml.errors import UserError

# The most pixels a posted image may declare. Its header is read before any pixel is
# decoded, so a small file that would decode to gigabytes (a decompression bomb) costs
# nothing; PIL's own guard only refuses above ~179 Mpx and lets ~89-179 Mpx through.
MAX_PIXELS = 40_000_000
# The smallest side of an image worth a prediction or a place in a dataset.
MIN_SIDE = 8


def open_image(body: bytes, name: str = "request body", min_side: int = MIN_SIDE, max_pixels: int = MAX_PIXELS):
    """Image bytes (JPEG, PNG, …) → an RGB PIL image; empty, unreadable, truncated, tiny,
    16/32-bit greyscale (:func:`too_deep`) or decompression-bomb images (more than
    ``max_pixels``) are a UserError naming ``name``."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    if not isinstance(body, (bytes, bytearray)) or not body:
        raise UserError(f"{name}: empty; send a JPEG or PNG image")
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(io.BytesIO(body)) as image:
            if image.width * image.height > max_pixels:
                raise UserError(
                    f"{name}: image is {image.width}x{image.height} px ({image.width * image.height / 1e6:.1f} Mpx); "
                    f"at most {max_pixels / 1e6:g} Mpx accepted"
                )
            if deep := too_deep(image):
                raise UserError(f"{name}: {deep}")
            image.load()
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise UserError(f"{name}: image too large to decode ({str(exc)[:80]})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        # PIL names the buffer ("<_io.BytesIO object at 0x…>"), which tells the sender nothing.
        text = re.sub(r"\s*<_io\.BytesIO object at 0x[0-9a-f]+>", "", str(exc))[:80]
        raise UserError(f"{name}: not a readable image ({type(exc).__name__}: {text})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    if rgb.width < min_side or rgb.height < min_side:
        raise UserError(f"{name}: image is {rgb.width}x{rgb.height} px; at least {min_side}x{min_side} expected")
    return rgb


def too_deep(image) -> str | None:
    """Why ``image`` cannot be read as RGB, or None: PIL converts 16- and 32-bit greyscale
    (modes I;16…, I, F) to 8 bits by clipping, not scaling, so it would arrive nearly white."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        depth = "16-bit" if image.mode.startswith("I;16") else "32-bit"
        return f"{depth} greyscale image (mode {image.mode}) would be clipped to white; save it with 8 bits per channel"
    return None


def dhash(image, size: int = 8) -> int:
    """Difference hash: 64 bits from horizontal gradients of a 9×8 grey thumbnail."""
    from PIL import Image

    grey = np.asarray(image.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def check_image(path: Path, name: str) -> tuple[tuple[int, int] | None, int | None, str | None]:
    """(width, height), dHash, problem: the image must open and decode completely, be
    8-bit (:func:`too_deep`) and at least ``MIN_SIDE`` px on each side, as serving requires."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    if path.stat().st_size == 0:
        return None, None, f"{name}: empty file (0 bytes)"
    # Some libraries (the supervisely SDK among them) switch on PIL's tolerance of
    # truncated files process-wide; validation must not inherit it.
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(path) as image:
            image.load()
            if deep := too_deep(image):
                return None, None, f"{name}: {deep}"
            if min(image.size) < MIN_SIDE:
                side = f"at least {MIN_SIDE}x{MIN_SIDE} expected"
                return None, None, f"{name}: image is {image.width}x{image.height} px; {side}"
            return image.size, dhash(image), None
    except Image.DecompressionBombError as exc:
        return None, None, f"{name}: image too large to decode ({str(exc)[:80]})"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        text = " ".join(str(exc).replace(str(path), "").replace("''", "").split())[:120]
        kind = "truncated image" if "truncated" in text else "not a readable image"
        return None, None, f"{name}: {kind} ({text})"
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
