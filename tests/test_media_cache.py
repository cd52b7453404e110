"""The media cache's entry file: every array comes back bit-exact with its dtype and shape, and a
damaged entry is recomputed rather than crashing a trial."""
from __future__ import annotations

import numpy as np

from bench.data.prep.media_cache import cached_entry, encode_arrays, entry_path, load_arrays


def _arrays():
    rng = np.random.default_rng(0)
    return {"features": rng.normal(size=(64, 157)).astype(np.float32),
            "residual": rng.normal(size=(8, 48, 48, 3)).astype(np.float16),
            "indices": np.arange(8, dtype=np.int64), "key_frames": np.array([True, False, False]),
            "num_frames": np.array(16), "iframe": rng.integers(0, 255, (48, 48, 3), dtype=np.uint8),
            "empty": np.zeros((0, 2), np.float32), "strided": np.arange(20.0).reshape(4, 5)[:, ::2]}


def test_entry_roundtrip_keeps_values_dtypes_and_shapes(tmp_path):
    arrays = _arrays()
    path = tmp_path / "entry.arrays"
    path.write_bytes(encode_arrays(arrays))
    loaded = load_arrays(path)
    assert list(loaded) == list(arrays)
    for name, value in arrays.items():
        assert loaded[name].dtype == value.dtype and loaded[name].shape == value.shape, name
        np.testing.assert_array_equal(loaded[name], value)
    loaded["features"][0, 0] = 1.0  # consumers may normalise in place


def test_damaged_entry_is_recomputed(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"features": np.ones((4, 3), np.float32)}

    first = cached_entry(tmp_path, "audio-test", "ab" * 32, compute)
    path = entry_path(tmp_path, "audio-test", "ab" * 32)
    assert cached_entry(tmp_path, "audio-test", "ab" * 32, compute)["features"].sum() == first["features"].sum()
    assert len(calls) == 1
    path.write_bytes(path.read_bytes()[:-5])  # truncated, as by a full disk
    again = cached_entry(tmp_path, "audio-test", "ab" * 32, compute)
    assert len(calls) == 2
    np.testing.assert_array_equal(again["features"], first["features"])
    assert load_arrays(path)["features"].shape == (4, 3)
