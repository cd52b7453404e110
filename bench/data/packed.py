"""Packed face arrays: a split's decoded uint8 images (N x H x W x C) as one ``.npy`` in the cache,
read memory-mapped.

A face-file dataset otherwise decodes every image file (or opens every aligned-crop ``.npz``) at
the start of every trial: 28k files for FER2013's training split. The pack is keyed by the
dataset, each sample's path and content hash, and what else decides the pixels (the alignment
settings), so changed files or settings make a new pack and never read a stale one. Written
atomically: concurrent trials may race to write the same pack.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import Sample

PACK_VERSION = 1


def pack_path(cache_dir: Path, dataset: str, samples: list[Sample], settings: str = "") -> Path:
    text = json.dumps({"v": PACK_VERSION, "dataset": dataset, "settings": settings,
                       "samples": [[s.path, s.meta.get("sha256")] for s in samples]})
    key = hashlib.sha1(text.encode()).hexdigest()[:16]
    return Path(cache_dir) / "packed" / f"{dataset}-{len(samples)}-{key}.npy"


def packed_arrays(cache_dir: Path, dataset: str, samples: list[Sample], build: Callable[[], np.ndarray],
                  settings: str = "") -> np.ndarray:
    """The samples' uint8 arrays from their pack (memory-mapped, read-only), building and writing
    the pack with ``build()`` the first time. Samples without a content hash are not packed."""
    if not samples or any(not s.meta.get("sha256") for s in samples):
        return build()
    path = pack_path(cache_dir, dataset, samples, settings)
    if path.is_file():
        try:
            arrays = np.load(path, mmap_mode="r")
            if arrays.dtype == np.uint8 and len(arrays) == len(samples):
                return arrays
        except (OSError, ValueError):  # a damaged pack is rebuilt below
            pass
    arrays = np.ascontiguousarray(build(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return np.load(path, mmap_mode="r")
