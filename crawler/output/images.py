"""Where a crawl's stored images are, for ``report`` and ``export``: the harvester's
OUT (the default), another folder (the nodes' files gathered there), or the object
store the nodes put them in (``--images s3://BUCKET/PREFIX``, ``objectstore.py``).

``locate(relative)`` gives the image's location (an absolute path, or the store URL of
the object) when it is there; ``open(location)`` reads it. A store is listed once (one
request per 1,000 objects), not asked once per image.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import IO, Any

from crawler.objectstore import ObjectStore, is_store_url, open_store


def safe_relative(relative: Any) -> str | None:
    """A manifest's relative path as storage writes them, or None: no absolute path and
    no ``..`` (a hand-edited manifest cannot point anywhere else)."""
    if not isinstance(relative, str) or not relative or relative.startswith("/"):
        return None
    if ".." in relative.split("/"):
        return None
    return relative


class ImageFiles:
    """The stored images of a crawl, in a folder or an object store."""

    def __init__(self, out: Path, images: str | None = None) -> None:
        self.store: ObjectStore | None = None
        self.folder = os.path.abspath(images or out)
        self._keys: set[str] | None = None
        if images and is_store_url(images):
            self.store = open_store(images)
        self.where = self.store.where if self.store else self.folder

    def locate(self, relative: Any) -> str | None:
        """Where the stored file a record's ``path`` names is, if it is there."""
        relative = safe_relative(relative)
        if relative is None:
            return None
        if self.store is None:
            candidate = os.path.join(self.folder, relative)
            return candidate if os.path.isfile(candidate) else None
        if self._keys is None:
            self._keys = set(self.store.keys())
        return f"{self.store.where.rstrip('/')}/{relative}" if relative in self._keys else None

    def open(self, location: str) -> IO[bytes]:
        """The bytes at a location ``locate`` gave; ``OSError`` if they cannot be read."""
        if self.store is None:
            return open(location, "rb")
        key = location[len(self.store.where.rstrip("/")) + 1 :]
        data = self.store.get(key)
        if data is None:
            raise FileNotFoundError(location)
        return io.BytesIO(data)
