"""Walking a dataset folder, and each file's content hash and readability, cached by path + size + mtime.

Every index of a file-based dataset needs each file's content hash (for the leakage check) and
whether it decodes (a corrupt file is skipped, not fatal). Both cost a full read, so they are
computed once and re-used while the file's size and mtime are unchanged: re-indexing in every
trial is then a ``stat`` per file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .base import Skipped

CACHE_VERSION = 1


@dataclass(frozen=True)
class MediaInfo:
    sha256: str | None
    error: str | None  # why the file cannot be used; None when it is fine


def check_image(data: bytes) -> None:
    """Raise when ``data`` is not a fully decodable image (zero-byte, truncated, not an image)."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()  # decodes every pixel: a truncated JPEG/PNG/TIFF fails here


def walk_files(top: Path, suffixes: Iterable[str]) -> tuple[list[Path], list[Skipped]]:
    """Files under ``top`` with one of ``suffixes`` (lower-case, with dot), sorted; an unreadable
    folder is reported as skipped instead of stopping the walk."""
    wanted = {s.lower() for s in suffixes}
    found: list[Path] = []
    skipped: list[Skipped] = []

    def on_error(exc: OSError) -> None:
        rel = os.path.relpath(exc.filename, top) if exc.filename else str(top)
        skipped.append(Skipped(rel, f"folder unreadable ({exc.strerror or exc})"))

    # datasets are often symlinked into place, so links are followed
    for folder, dirs, files in os.walk(top, onerror=on_error, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in wanted:
                found.append(Path(folder) / name)
    return sorted(found), skipped


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def inspect_media(files: dict[str, Path], cache_file: Path,
                  check: Callable[[bytes], None] = check_image) -> dict[str, MediaInfo]:
    """``files`` maps a stable key (the sample's relative path) to its file. Returns each key's hash
    and error, re-reading only files whose size or mtime changed since the cached entry."""
    cached = _load(cache_file)
    entries: dict[str, list] = {}
    out: dict[str, MediaInfo] = {}
    changed = False
    for key, path in files.items():
        try:
            st = path.stat()
        except OSError as exc:
            out[key] = MediaInfo(None, f"unreadable ({exc.strerror or exc})")
            continue
        old = cached.get(key)
        if old and old[0] == st.st_size and old[1] == st.st_mtime_ns:
            entries[key] = old
            out[key] = MediaInfo(old[2], old[3])
            continue
        info = _inspect(path, st.st_size, check)
        entries[key] = [st.st_size, st.st_mtime_ns, info.sha256, info.error]
        out[key] = info
        changed = True
    if changed or set(entries) != set(cached):
        _save(cache_file, entries)
    return out


def _inspect(path: Path, size: int, check: Callable[[bytes], None]) -> MediaInfo:
    if size == 0:
        return MediaInfo(None, "empty file (0 bytes)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return MediaInfo(None, f"unreadable ({exc.strerror or exc})")
    digest = hashlib.sha256(data).hexdigest()
    try:
        check(data)
    except Exception as exc:  # any decoder failure means "corrupt", whatever the library raises
        return MediaInfo(digest, f"cannot decode ({_describe(exc)})")
    return MediaInfo(digest, None)


def _load(cache_file: Path) -> dict[str, list]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("entries", {}) if data.get("version") == CACHE_VERSION else {}


def _save(cache_file: Path, entries: dict[str, list]) -> None:
    # Atomic: concurrent trials index the same dataset and may write this file at the same time.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_file.parent, suffix=".json.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"version": CACHE_VERSION, "entries": entries}, f)
    os.replace(tmp, cache_file)
