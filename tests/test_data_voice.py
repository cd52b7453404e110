"""Voice adapters on generated copies of their native layouts, the audio prep cache, and TESS."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bench.data import get_adapter, load_splits
from bench.data.base import LeakageError, check_leakage
from bench.data.prep import audio as audio_prep
from bench.data.prep.media_cache import WORK
from bench.errors import UserError


@pytest.fixture(scope="module")
def fakes(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("voice-fakes")
    return {name: get_adapter(name).make_fake(base / name) for name in ("tess", "emodb", "ravdess", "cremad")}


def _disjoint(splits) -> None:
    subjects = {k: {s.subject for s in v} for k, v in splits.items()}
    assert not subjects["train"] & subjects["test"] and not subjects["val"] & subjects["test"]


def test_tess_index_labels_and_leave_one_speaker_out(fakes, tmp_path):
    adapter, indexed, _ = load_splits("tess", 0, fakes["tess"], tmp_path)
    samples = indexed.samples
    assert len(samples) == 70 and not indexed.skipped
    assert {s.subject for s in samples} == {"OAF", "YAF"}
    names = {adapter.class_names[s.label] for s in samples}
    assert names == set(adapter.class_names)  # ps, pleasant_surprised (mixed-case folders) -> surprise
    surprise = [s for s in samples if adapter.class_names[s.label] == "surprise"]
    assert any("pleasant_surprised" in s.path for s in surprise) and any(s.path.endswith("_ps.wav") for s in surprise)
    for fold in (0, 1):
        splits = adapter.splits(samples, fold)
        assert {s.subject for s in splits["test"]} == {("OAF", "YAF")[fold]}
        assert {s.subject for s in splits["train"]} == {s.subject for s in splits["val"]} != {("OAF", "YAF")[fold]}
        assert not {s.meta["word"] for s in splits["train"]} & {s.meta["word"] for s in splits["val"]}


def test_emodb_labels_and_speaker_folds(fakes, tmp_path):
    adapter, indexed, _ = load_splits("emodb", 0, fakes["emodb"].parent, tmp_path)  # the folder containing it
    assert len(indexed.samples) == 70
    by_letter = {Path(s.path).stem[5]: adapter.class_names[s.label] for s in indexed.samples}
    assert by_letter == {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy",
                         "T": "sad", "N": "neutral"}
    tested = []
    for fold in range(adapter.num_folds):
        splits = adapter.splits(indexed.samples, fold)
        _disjoint(splits)
        tested += sorted({s.subject for s in splits["test"]})
    assert len(tested) == 10 and len(set(tested)) == 10  # each speaker tested exactly once


def test_ravdess_variants_keep_one_copy_and_twins_cannot_cross(fakes, tmp_path):
    voice = load_splits("ravdess", 0, fakes["ravdess"], tmp_path)[1].samples
    assert len(voice) == 48 and all(s.path.endswith(".wav") for s in voice)
    assert get_adapter("ravdess").class_names[voice[0].label] in ("neutral", "calm", "angry", "surprise")
    assert {s.meta["gender"] for s in voice if s.subject == "Actor_01"} == {"male"}
    video = load_splits("ravdess-video", 0, fakes["ravdess"], tmp_path)[1].samples
    assert len(video) == 24 and all(s.meta["modality"] == "02" for s in video)
    av = load_splits("ravdess-av", 0, fakes["ravdess"], tmp_path)[1].samples
    assert len(av) == 24 and all(s.meta["modality"] == "01" for s in av)
    # the audio-only and AV copies of one utterance share clip_id: planting them apart is stopped
    wav = next(s for s in voice if s.clip_id == av[0].clip_id)
    with pytest.raises(LeakageError):
        check_leakage({"train": [wav], "test": [av[0]]})
    # even if the actor ids were lost, the shared clip id alone stops it
    with pytest.raises(LeakageError, match="recording"):
        check_leakage({"train": [replace(wav, subject=None)], "test": [replace(av[0], subject=None)]})
    splits = get_adapter("ravdess").splits(voice, 0)
    _disjoint(splits)


def test_cremad_speaker_folds_and_av_pairs(fakes, tmp_path):
    adapter, indexed, _ = load_splits("cremad", 0, fakes["cremad"], tmp_path)
    assert len(indexed.samples) == 60 and len(adapter.class_names) == 6
    for fold in range(adapter.num_folds):
        _disjoint(adapter.splits(indexed.samples, fold))
    av = load_splits("cremad-av", 0, fakes["cremad"], tmp_path)[1].samples
    assert len(av) == 30 and all(s.meta["audio"].endswith(".wav") and s.path.endswith(".flv") for s in av)


def test_bad_files_are_skipped_with_reasons(fakes, tmp_path):
    root = tmp_path / "tess"
    import shutil

    shutil.copytree(fakes["tess"], root)
    folder = next(root.rglob("OAF_fear")) if list(root.rglob("OAF_fear")) else next(root.rglob("OAF_*"))
    (folder / "OAF_zero_fear.wav").write_bytes(b"")
    good = next(folder.glob("*.wav")).read_bytes()
    (folder / "OAF_trunc_fear.wav").write_bytes(good[:30])  # header cut in half
    (folder / "notes_about_this.wav").write_bytes(good)
    indexed = get_adapter("tess").index(root, tmp_path / "cache")
    reasons = {Path(s.path).name: s.reason for s in indexed.skipped}
    assert "empty" in reasons["OAF_zero_fear.wav"]
    assert "unreadable" in reasons["OAF_trunc_fear.wav"] or "no audio" in reasons["OAF_trunc_fear.wav"]
    assert "does not match" in reasons["notes_about_this.wav"]
    assert len(indexed.samples) == 70


def test_wrong_layout_is_one_user_error(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"x")
    for name in ("tess", "emodb", "ravdess", "cremad"):
        with pytest.raises(UserError, match="expected .* get it from"):
            get_adapter(name).index(tmp_path, tmp_path / "cache")
    with pytest.raises(UserError, match="not a folder"):
        get_adapter("tess").index(tmp_path / "missing", tmp_path / "cache")


def test_prepare_twice_does_no_work_the_second_time(fakes, tmp_path):
    adapter, indexed, _ = load_splits("emodb", 0, fakes["emodb"], tmp_path)
    first = adapter.prepare(indexed.samples, fakes["emodb"], tmp_path, progress=False)
    assert first.computed == 2 * 70 and first.cached == 0
    before = dict(WORK)
    second = adapter.prepare(indexed.samples, fakes["emodb"], tmp_path, progress=False)
    assert second.computed == 0 and second.cached == 2 * 70
    assert WORK["audio_decode"] == before.get("audio_decode") and WORK["audio_features"] == before["audio_features"]
    # a changed parameter is a different entry, never a stale hit
    params = audio_prep.feature_params("logmel", 32)
    audio_prep.cached_features(Path(indexed.samples[0].path), tmp_path, params)
    assert WORK["audio_features"] == before["audio_features"] + 1


def test_feature_shapes_and_resampling(tmp_path):
    import soundfile as sf

    t = np.arange(int(3 * 44100)) / 44100
    sf.write(str(tmp_path / "a.wav"), np.sin(2 * np.pi * 440 * t).astype(np.float32), 44100, subtype="FLOAT")
    wave = audio_prep.load_audio(tmp_path / "a.wav", 16000)
    assert len(wave) == 48000
    spec = audio_prep.log_mel(wave, 16000, n_mels=64)
    assert spec.shape == (64, 301)
    assert spec[:, 150].argmax() == spec[:, 150:160].mean(axis=1).argmax()  # the tone's band dominates
    assert audio_prep.mfcc(wave, 16000, n_mfcc=40).shape == (40, 301)
    assert len(audio_prep.fix_length(wave[:100], 48000)) == 48000


def test_real_tess_summary(shared_data, tmp_path):
    root = shared_data / "tess"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    adapter, indexed, splits = load_splits("tess", 0, root, tmp_path)
    assert len(indexed.samples) == 280 and not indexed.skipped
    assert {s.subject for s in indexed.samples} == {"OAF", "YAF"}
    assert len({s.label for s in indexed.samples}) == 7
    counts = np.bincount([s.label for s in indexed.samples])
    assert counts.tolist() == [40] * 7
    _disjoint(splits)
