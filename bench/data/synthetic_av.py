"""Built-in synthetic audio-visual data: each ``synthetic-video`` clip paired with the
``synthetic-voice`` clip of the same subject, emotion and take (both generators draw the
intensity of a take from the same seed, so an intense face comes with an intense voice).
Subjects are the same ``idXX`` identities in both; folds are subject-independent."""
from __future__ import annotations

from .base import BASIC7, IndexResult, subject_kfold
from .media import MediaAdapter
from .registry import register_dataset
from .synthetic_video import SIZE, video_folder
from .synthetic_voice import manifest_samples, voice_folder


@register_dataset
class SyntheticAV(MediaAdapter):
    name = "synthetic-av"
    fusion_sources = {"visual": "synthetic-video", "voice": "synthetic-voice"}
    modality = "av"
    class_names = BASIC7
    num_folds = 5
    protocol = "5-fold subject-independent (about 3 of 16 identities test per fold; 25% of the rest validation)"
    expected_layout = "nothing: generated into the cache on first use"
    prep_size = SIZE

    def index(self, root, cache_dir) -> IndexResult:
        voices = {(s.subject, s.label, s.meta["k"]): s
                  for s in manifest_samples(voice_folder(cache_dir), cache_dir, "synthetic-voice")}
        samples = []
        for video in manifest_samples(video_folder(cache_dir), cache_dir, "synthetic-av"):
            voice = voices.get((video.subject, video.label, video.meta["k"]))
            if voice is not None:
                video.meta.update(audio=voice.path, audio_sha256=voice.meta["sha256"])
                samples.append(video)
        return IndexResult(samples)

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.25)

    @staticmethod
    def make_fake(directory):
        return directory
