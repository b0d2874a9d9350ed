"""Is it really an image? Sniff the first bytes; read dimensions with Pillow.

Type and file extension come from the content itself, never from the URL or the
server's Content-Type, which lie often (HTML error pages served as image/jpeg).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

SNIFF_BYTES = 4096


def sniff_image_type(head: bytes) -> tuple[str, str] | None:
    """``(mime type, extension)`` of an image from its first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg", "jpg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png", "png"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif", "gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", "webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"):
        return "image/avif", "avif"
    if head.startswith(b"BM") and len(head) >= 26:
        return "image/bmp", "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "image/tiff", "tif"
    if head.startswith(b"\x00\x00\x01\x00") and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "image/x-icon", "ico"
    if _looks_like_svg(head):
        return "image/svg+xml", "svg"
    return None


def _looks_like_svg(head: bytes) -> bool:
    text = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg"):
        return True
    prolog = (b"<?xml", b"<!--", b"<!doctype svg")
    return text.startswith(prolog) and b"<svg" in text and b"<html" not in text


def image_dimensions(path: Path) -> tuple[int, int] | None:
    """Width and height from the image header (Pillow opens lazily, nothing is decoded)."""
    try:
        with Image.open(path) as image:
            return image.size
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
        return None
