"""The manager's shared secret: from ``CRAWLER_AUTHKEY`` or a 0600 key file, never a default.

The key is never printed or logged; error messages name where it came from, not what it is.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path

from crawler.errors import AuthKeyError

ENV_NAME = "CRAWLER_AUTHKEY"
MIN_LENGTH = 16


def load_authkey(key_file: str | None, environ: Mapping[str, str]) -> bytes:
    """The key from ``key_file`` when given, else from the environment."""
    if key_file:
        key = _read_key_file(Path(key_file))
        origin = f"key file {key_file}"
    elif environ.get(ENV_NAME):
        key = environ[ENV_NAME].strip().encode()
        origin = ENV_NAME
    else:
        raise AuthKeyError(
            f"no authkey: set {ENV_NAME} or pass --authkey-file "
            "(`crawler keygen FILE` writes a random one); every node needs the same key"
        )
    if len(key) < MIN_LENGTH:
        raise AuthKeyError(
            f"the authkey from {origin} is too short: use at least {MIN_LENGTH} bytes"
        )
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise AuthKeyError(f"key file not found: {path}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise AuthKeyError(
            f"refusing key file {path}: mode {stat.S_IMODE(mode):04o} lets others read it; "
            f"run `chmod 600 {path}`"
        )
    return path.read_bytes().strip()


def write_new_key(path: Path) -> None:
    """Create ``path`` with a random key, readable by its owner only; never overwrite.

    Raises AuthKeyError, naming the path and never the key, when the file exists or
    cannot be written; a file left half-written is removed.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AuthKeyError(f"{path} already exists; not overwriting a key") from None
    except OSError as exc:
        raise AuthKeyError(_cannot_write(path, exc)) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise AuthKeyError(_cannot_write(path, exc)) from None


def _cannot_write(path: Path, exc: OSError) -> str:
    reason = exc.strerror or type(exc).__name__
    if not path.parent.is_dir():
        reason = f"{path.parent} is not an existing folder"
    return f"cannot write a key to {path}: {reason}"
