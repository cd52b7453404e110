"""Video adapters on generated layouts, and compressed-domain streams from real codec output."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data import get_adapter, load_splits
from bench.data.prep import video as video_prep
from bench.data.synthetic import _identity
from bench.data.synthetic_video import encode_mp4, render_clip
from bench.errors import UserError


@pytest.fixture(scope="module")
def moving_clip(tmp_path_factory) -> Path:
    """A synthetic clip panned 2 pixels per frame: real motion for the encoder to find."""
    frames = render_clip(_identity(np.random.default_rng(0)), "surprise", 1.0, np.random.default_rng(3), size=96)
    panned = np.stack([frame[2 + i: 2 + i + 64, 30 - 2 * i: 94 - 2 * i] for i, frame in enumerate(frames[:, :, :])])
    path = tmp_path_factory.mktemp("clip") / "surprise.mp4"
    encode_mp4(np.ascontiguousarray(panned), path)
    return path


def test_afew_protocol(tmp_path):
    root = get_adapter("afew").make_fake(tmp_path / "data")
    adapter, indexed, splits = load_splits("afew", 0, root.parent, tmp_path / "cache")
    assert len(indexed.samples) == 28 and all(s.subject is None for s in indexed.samples)
    assert len(splits["test"]) == 7 and all(s.path.split("/")[-3] == "Val" for s in splits["test"])
    assert len(splits["val"]) == 7 and len(splits["train"]) == 14  # one per class carved from Train


def test_mmi_manifest_and_subject_folds(tmp_path):
    root = get_adapter("mmi").make_fake(tmp_path / "data")
    adapter, indexed, _ = load_splits("mmi", 0, root, tmp_path / "cache")
    assert len(indexed.samples) == 72
    assert [s.reason for s in indexed.skipped] == ["manifest.csv line 74: file not found"]
    assert {adapter.class_names[s.label] for s in indexed.samples} == set(adapter.class_names)
    for fold in range(adapter.num_folds):
        splits = adapter.splits(indexed.samples, fold)
        assert not {s.subject for s in splits["train"]} & {s.subject for s in splits["test"]}
    (root / "manifest.csv").write_text("file,emotion\n")
    with pytest.raises(UserError, match="lacks the column"):
        adapter.index(root, tmp_path / "cache")


def test_corrupt_videos_are_skipped_and_wrong_layout_raises(tmp_path):
    root = get_adapter("afew").make_fake(tmp_path / "data")
    good = next(root.rglob("*.avi")).read_bytes()
    (root / "Train" / "Happy" / "zero.avi").write_bytes(b"")
    (root / "Train" / "Happy" / "cut.avi").write_bytes(good[: len(good) // 3])
    (root / "Train" / "Bored").mkdir()
    (root / "Train" / "Bored" / "x.avi").write_bytes(good)
    indexed = get_adapter("afew").index(root, tmp_path / "cache")
    reasons = {Path(s.path).name: s.reason for s in indexed.skipped}
    assert "empty" in reasons["zero.avi"] and "Train|Val" in reasons["x.avi"]
    assert len(indexed.samples) == 28 + ("cut.avi" not in reasons)  # a cut avi may still hold frames
    with pytest.raises(UserError, match="Train/<Emotion>"):
        get_adapter("afew").index(tmp_path / "cache", tmp_path / "cache2")


def test_motion_vectors_and_residuals_come_from_the_codec(moving_clip, tmp_path):
    decoded = list(video_prep.decode_yuv(moving_clip))
    assert len(decoded) == 16
    assert decoded[0][1] and not any(key for _, key, _ in decoded[1:])  # one I-frame, then P-frames
    assert decoded[0][2] is None and all(mvs is not None and len(mvs) > 0 for _, _, mvs in decoded[1:])
    moving = sum(int((np.abs(mvs["motion_x"]) + np.abs(mvs["motion_y"]) > 0).sum()) for _, _, mvs in decoded[1:])
    assert moving > 0
    pairs = list(zip(decoded, decoded[1:]))
    # the codec's motion explains most of each frame change, in every plane
    for plane in range(3):
        residual = np.mean([np.abs(video_prep.residual_planes(cur, prev, mvs)[plane]).mean()
                            for (prev, _, _), (cur, _, mvs) in pairs])
        difference = np.mean([np.abs(cur[plane].astype(np.float32) - prev[plane]).mean()
                              for (prev, _, _), (cur, _, _) in pairs])
        assert residual < 0.5 * difference, (plane, residual, difference)
    streams = video_prep.cached_streams(moving_clip, tmp_path, video_prep.video_params(8, 64))
    assert streams["rgb"].shape == (8, 64, 64, 3) and streams["flow"].shape == (8, 64, 64, 2)
    assert streams["residual"].shape == (8, 64, 64, 3) and streams["iframe"].shape == (64, 64, 3)
    assert np.abs(streams["flow"][1:].astype(np.float32)).mean() > 0.01
    apex = video_prep.cached_streams(moving_clip, tmp_path, video_prep.video_params(4, 64, "apex"))
    assert apex["indices"].max() >= 8  # apex-centred window sits late in a neutral -> apex clip


@pytest.mark.parametrize("name", ["single_face.mp4", "no_face.mp4", "face_noface.mov"])
def test_real_videos_decode(shared_data, name, tmp_path):
    path = shared_data / "media" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    assert video_prep.probe_video(path) is None
    frames = []
    for rgb, is_key, mvs in video_prep.decode_frames(path):
        frames.append((rgb, is_key, mvs))
        if len(frames) == 6:
            break
    assert len(frames) == 6 and frames[0][0].ndim == 3
    if name.endswith(".mp4"):  # H.264 exports motion vectors; FFmpeg's HEVC decoder does not
        assert any(mvs is not None and len(mvs) for _, _, mvs in frames[1:])


def test_streaming_pipelines_match_the_cached_streams(moving_clip, tmp_path):
    """The inference-time pipelines (one streaming decode, only sampled frames touched) give what
    the training cache holds; decoding at half size (MPEG-4 ``lowres``) keeps the residual's shape."""
    streams = video_prep.clip_streams(moving_clip, video_prep.video_params(8, 32))
    rgb = video_prep.sampled_rgb(moving_clip, 8, 32)  # swscale's area filter vs cv2's: a level or two apart
    assert rgb.shape == streams["rgb"].shape and np.abs(rgb.astype(int) - streams["rgb"]).mean() < 3
    full = video_prep.sampled_residuals(moving_clip, 8, 32, lowres=False)  # skips frames outside the pairs
    cached = streams["residual"].astype(np.float32)
    assert np.corrcoef(full[1:].ravel(), cached[1:].ravel())[0, 1] > 0.9
    half = video_prep.sampled_residuals(moving_clip, 8, 32, lowres=True)  # 64 px clip -> decoded at 32
    assert half.shape == full.shape and np.abs(half[0]).max() == 0  # the first frame has no predecessor
    luma = np.corrcoef(half[1:, ..., 0].ravel(), full[1:, ..., 0].ravel())[0, 1]
    assert luma > 0.9, luma  # measured 0.97


def test_residuals_need_only_the_frame_pairs_they_span(tmp_path):
    """decode(i) = MC(decode(i-1)) + residual_i whatever the reference holds, so skipping every
    frame outside the sampled pairs leaves the residuals as a full decode gives them."""
    frames = render_clip(_identity(np.random.default_rng(1)), "happy", 1.0, np.random.default_rng(5),
                         frames=48, size=96)
    path = tmp_path / "long.mp4"
    encode_mp4(frames, path)
    skipped = video_prep.sampled_residuals(path, 6, 48, lowres=False)
    # the training cache decodes every frame, at the same uniformly sampled indices
    reference = video_prep.clip_streams(path, video_prep.video_params(6, 48))["residual"].astype(np.float32)
    idx = video_prep.sample_indices(48, 6)
    assert np.abs(reference[1:]).mean() > 0.1  # the clip moves: residuals are not all zero
    corr = np.corrcoef(skipped[1:, ..., 0].ravel(), reference[1:, ..., 0].ravel())[0, 1]
    assert corr > 0.9, corr
    decoded = []
    container, stream = video_prep._open(path)
    with container:
        keep = {i for j in idx for i in (j - 1, j) if i >= 0}
        decoded = [i for i, _, _ in video_prep._decoded_subset(container, stream, keep, 0)]
    assert decoded == sorted(keep)  # the decoder output only the frames asked for


def test_b_frames_fall_back_to_a_full_decode(tmp_path):
    """With B-frames, decode order is not display order: skipping by packet index could drop the
    frames wanted, so the residual pipeline decodes everything instead."""
    import av

    frames = render_clip(_identity(np.random.default_rng(0)), "surprise", 1.0, np.random.default_rng(3), size=140)
    panned = np.stack([f[2 + i: 2 + i + 75, 40 - 2 * i: 40 - 2 * i + 97] for i, f in enumerate(frames)])
    path = tmp_path / "bframes.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt, stream.max_b_frames = 97, 75, "yuv420p", 2
        for image in panned:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    container, stream = video_prep._open(path)
    with container, pytest.raises(video_prep._Reordered):
        list(video_prep._decoded_subset(container, stream, {0, 5, 6}, 0))
    residuals = video_prep.sampled_residuals(path, 8, 32, lowres=False)
    cached = video_prep.clip_streams(path, video_prep.video_params(8, 32))["residual"].astype(np.float32)
    assert residuals.shape == (8, 32, 32, 3)
    np.testing.assert_allclose(residuals, cached, atol=0.1)  # the same full decode (float16 in the cache)


def test_afew_train_copy_of_a_test_clip_is_dropped_and_the_test_split_stays_whole(tmp_path):
    root = get_adapter("afew").make_fake(tmp_path / "data")
    adapter = get_adapter("afew")
    before = adapter.splits(adapter.index(root, tmp_path / "cache0").samples, 0)
    test_clip = sorted((root / "Val" / "Happy").glob("*.avi"))[0]
    shutil.copyfile(test_clip, root / "Train" / "Happy" / "copy.avi")
    shutil.copyfile(test_clip, root / "Train" / "Sad" / "copy2.avi")  # a mislabelled copy too
    indexed = adapter.index(root, tmp_path / "cache")
    assert sorted(Path(c.path).name for c in indexed.copies) == ["copy.avi", "copy2.avi"]
    splits = adapter.splits(indexed.samples, 0)  # no LeakageError
    assert [s.sample_id for s in splits["test"]] == [s.sample_id for s in before["test"]]
    assert not any("copy" in s.sample_id for part in splits.values() for s in part)
