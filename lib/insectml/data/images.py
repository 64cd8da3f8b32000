"""Decoding image bytes that come from users (request bodies, uploaded files)."""

from __future__ import annotations

import io

from insectml.errors import UserError


def open_image(body: bytes, name: str = "request body", min_side: int = 8):
    """Image bytes (JPEG, PNG, …) → an RGB PIL image; empty, unreadable, truncated or
    tiny images are a UserError naming ``name``."""
    from PIL import Image, ImageFile, UnidentifiedImageError

    if not isinstance(body, (bytes, bytearray)) or not body:
        raise UserError(f"{name}: empty; send a JPEG or PNG image")
    tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
    try:
        with Image.open(io.BytesIO(body)) as image:
            image.load()
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise UserError(f"{name}: not a readable image ({type(exc).__name__}: {str(exc)[:80]})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    if rgb.width < min_side or rgb.height < min_side:
        raise UserError(f"{name}: image is {rgb.width}x{rgb.height} px; at least {min_side}x{min_side} expected")
    return rgb
