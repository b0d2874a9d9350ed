"""Is it really an image? Sniff the first bytes, then let Pillow check the structure.

Type and file extension come from the content itself, never from the URL or the
server's Content-Type, which lie often (HTML error pages served as image/jpeg).
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image, features

SNIFF_BYTES = 4096

# The one Pillow plugin allowed to read each sniffed type: Pillow never guesses another
# format, so a file whose header and body disagree is refused.  A JPEG that carries
# several pictures comes back as Pillow's "MPO", which is still a JPEG.
PILLOW_FORMATS = {
    "jpg": "JPEG",
    "png": "PNG",
    "gif": "GIF",
    "webp": "WEBP",
    "bmp": "BMP",
    "tif": "TIFF",
    "ico": "ICO",
    "avif": "AVIF",
}
# Pillow reads AVIF only when built with libavif (11.2 and later); asked this way, an
# older Pillow answers no instead of warning "Unknown feature" at every start.
AVIF_READABLE = "avif" in features.get_supported()
# What Pillow raises on a damaged file; anything else is a bug and keeps its traceback.
# UnidentifiedImageError and "truncated" are OSError; broken PNG chunks are SyntaxError;
# libavif's failures ("Missing or empty image item") surface as RuntimeError.
PILLOW_FAILURES = (OSError, SyntaxError, ValueError, EOFError, struct.error, RuntimeError)


@dataclass(frozen=True, slots=True)
class ImageCheck:
    """What ``check_image`` found: ``error`` is None for a file worth keeping.

    ``width`` and ``height`` are known for a raster image that was read (including one
    refused as ``too_small``), None otherwise.
    """

    error: str | None = None
    width: int | None = None
    height: int | None = None


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
    """An ``<svg`` root, possibly after an XML prolog, and no ``<html`` before it."""
    text = head[:SNIFF_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg"):
        return True
    prolog = (b"<?xml", b"<!--", b"<!doctype svg")
    svg_at = text.find(b"<svg")
    return text.startswith(prolog) and svg_at != -1 and b"<html" not in text[:svg_at]


def check_image(
    source: Path | bytes,
    extension: str,
    min_width: int = 0,
    min_height: int = 0,
    max_pixels: int | None = None,
) -> ImageCheck:
    """Check a downloaded file (a path, or its bytes) whose first bytes sniffed as
    ``extension``.

    Errors: ``not_an_image`` (an "SVG" that is really HTML), ``decompression_bomb``
    (more pixels than ``max_pixels`` or Pillow's ``Image.MAX_IMAGE_PIXELS``, whichever
    is lower), ``corrupt_image`` (Pillow cannot read the header as the sniffed format,
    or ``verify()`` finds broken structure, e.g. a bad or missing PNG chunk), and
    ``too_small`` (below ``min_width`` or ``min_height``; dimensions still returned).

    Guarantee: pixel data is never decoded, so time and memory stay bounded by the file
    size.  The flip side: only formats whose Pillow plugin implements ``verify()`` (PNG)
    have their body checked; a truncated JPEG, GIF, BMP or TIFF still passes.  SVG is stored
    as data and never parsed: no dimensions, and the minimum sizes do not apply.
    """
    if extension == "svg":
        with _open(source) as handle:
            head = handle.read(SNIFF_BYTES)
        return ImageCheck() if _looks_like_svg(head) else ImageCheck("not_an_image")
    if extension == "avif" and not AVIF_READABLE:
        # The header sniffed as AVIF and this Pillow cannot look further: keep the file
        # without dimensions rather than refuse every AVIF on the web.
        return ImageCheck()
    pillow_format = PILLOW_FORMATS[extension]
    with _open(source) as handle, warnings.catch_warnings():
        # Pillow only warns between 1x and 2x its pixel limit; make that an error too.
        # Its other warnings (odd TIFF tags, malformed MPO) describe the file, which the
        # ImageCheck already does, so they are silenced rather than printed per file.
        # catch_warnings changes process-wide state, not per thread or greenlet: safe
        # because the downloader runs this on its one gevent thread and nothing below
        # yields to another greenlet (plain file reads and Pillow are not patched).
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # One open: verify() needs a freshly opened image, which reading the size
            # from the header leaves it; it makes the image unusable afterwards.
            with Image.open(handle, formats=[pillow_format]) as image:
                width, height = image.size
                if max_pixels is not None and width * height > max_pixels:
                    return ImageCheck("decompression_bomb")
                image.verify()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return ImageCheck("decompression_bomb")
        except PILLOW_FAILURES:
            return ImageCheck("corrupt_image")
    if width < min_width or height < min_height:
        return ImageCheck("too_small", width, height)
    return ImageCheck(None, width, height)


def _open(source: Path | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")
