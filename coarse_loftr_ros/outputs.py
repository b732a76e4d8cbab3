"""Output files: checked before any work, written whole.

``check_output_file`` tells before any work whether a path can be written (not a folder,
not under a file, a writable folder, the right suffix; missing folders are fine);
``write_atomically`` creates the missing folders, writes through a temporary file in the same
folder, flushes it to disk and renames it, so a reader sees the old file or the whole new one
and an error leaves nothing behind. Shared by every layer (commands, tools, the TensorRT
engine cache).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from .errors import OutputPathError

IMAGE_OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def check_output_file(path: Path | None, option: str, suffixes: Sequence[str] | None = None) -> Path | None:
    """Refuse, before any work, an output file that cannot be written.

    Missing parent folders are fine: the writers create them (``make_parent``), as
    ``mkdir -p`` does. Nothing is created here, so a run that fails later leaves nothing behind.

    Args:
        path: the file to write, or None (nothing to check).
        option: the option that named it, for the message (``--overlay``).
        suffixes: the file types the writer supports (lower case, with the dot), or None.

    Raises OutputPathError (one line) for a folder, a wrong suffix, or a nearest existing
    ancestor that is not a folder or not writable.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; pass a file name inside it, e.g. {path / ('out' + (suffixes[0] if suffixes else '.json'))}")
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise OutputPathError(f"{option} {path}: cannot write a {path.suffix or 'suffix-less'} file; use one of {', '.join(suffixes)}")
    existing = path.parent.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(f"{option} {path}: {existing} is not a folder; pass a path inside a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputPathError(f"{option} {path}: the folder {existing} is not writable")
    return path


def make_parent(path: Path) -> Path:
    """Create the missing folders above ``path`` (``mkdir -p``); returns ``path``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file in the same folder, then rename."""
    path = make_parent(Path(path))
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_image_atomically(path: Path, image, option: str = "--overlay") -> None:
    """Encode ``image`` (BGR uint8) by ``path``'s suffix with OpenCV and write it atomically."""
    import cv2

    ok, encoded = cv2.imencode(Path(path).suffix.lower(), image)
    if not ok:
        raise OutputPathError(f"{option} {path}: OpenCV cannot encode a {Path(path).suffix} picture; use .png or .jpg")
    write_atomically(path, encoded.tobytes())
