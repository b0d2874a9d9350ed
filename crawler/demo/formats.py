"""The demo site's file types: the image formats it draws (Pillow's name, folder,
extension, MIME type, encoder settings) and the content type served for each file."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ImageFormat:
    pil: str  # Pillow format name, as Image.open(...).format reports it
    directory: str
    ext: str
    mime: str
    options: dict[str, Any]


# Fixed encoder settings (and no metadata) keep the output byte-identical between runs.
FORMATS = (
    ImageFormat("JPEG", "jpeg", ".jpg", "image/jpeg", {"quality": 85}),
    ImageFormat("PNG", "png", ".png", "image/png", {}),
    ImageFormat("GIF", "gif", ".gif", "image/gif", {}),
    ImageFormat("WEBP", "webp", ".webp", "image/webp", {"quality": 80, "method": 4}),
)


def content_type(path: str) -> str:
    return CONTENT_TYPES.get(posixpath.splitext(path)[1].lower(), "application/octet-stream")


CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    **{f.ext: f.mime for f in FORMATS},
}
