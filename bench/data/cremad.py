"""CREMA-D: 91 actors, 12 sentences, 6 emotions at up to 4 intensity levels, audio and video.

Native layout: ``AudioWAV/1001_DFA_ANG_XX.wav`` and ``VideoFlash/1001_DFA_ANG_XX.flv`` (actor,
sentence, emotion ANG DIS FEA HAP NEU SAD, level LO MD HI XX). ``cremad`` reads the wavs;
``cremad-av`` reads the flv videos paired with the wav of the same name (else the flv's own
audio track). Protocol: 5 speaker-disjoint folds; validation speakers carved from the rest.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Sample, subject_kfold
from .fakes import write_clip, write_tone
from .media import MediaAdapter
from .registry import register_dataset

_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "SAD": "sad", "NEU": "neutral"}
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>ANG|DIS|FEA|HAP|NEU|SAD)_"
                   r"(?P<level>LO|MD|HI|XX|X)$")


@register_dataset
class CremaD(MediaAdapter):
    name = "cremad"
    modality = "voice"
    class_names = ("angry", "disgust", "fear", "happy", "sad", "neutral")
    num_folds = 5
    protocol = "5 speaker-disjoint folds (about 18 of 91 actors test per fold; validation actors from the rest)"
    expected_layout = "AudioWAV/1001_DFA_ANG_XX.wav (and VideoFlash/1001_DFA_ANG_XX.flv for cremad-av)"
    source = "https://github.com/CheyneyComputerScience/CREMA-D (git lfs)"
    extensions = (".wav",)

    def parse(self, path: Path, root: Path) -> Sample | str:
        match = _NAME.match(path.stem)
        if not match:
            return f"name does not match <actor>_<sentence>_<ANG|DIS|FEA|HAP|NEU|SAD>_<level>: {path.name}"
        label = self.class_names.index(_EMOTIONS[match["emotion"]])
        return Sample(path.relative_to(root).as_posix(), str(path), label, match["actor"], clip_id=path.stem,
                      meta={"sentence": match["sentence"], "level": match["level"]})

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.2)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        root = Path(directory) / "CREMA-D"
        for actor in range(1001, 1011):
            for e, emotion in enumerate(_EMOTIONS):
                stem = f"{actor}_{'DFA' if e % 2 else 'IEO'}_{emotion}_{'XX' if e % 3 else 'HI'}"
                write_tone(root / "AudioWAV" / f"{stem}.wav", seed=actor + e, seconds=0.2)
                if actor <= 1005:
                    write_clip(root / "VideoFlash" / f"{stem}.flv", seed=actor + e, frames=4, codec="flv")
        return root


@register_dataset
class CremaDAV(CremaD):
    name = "cremad-av"
    fusion_sources = {"voice": "cremad"}
    modality = "av"
    extensions = (".flv", ".wav")

    def parse(self, path: Path, root: Path) -> Sample | str:
        sample = super().parse(path, root)
        if isinstance(sample, Sample):
            sample.meta["kind"] = "video" if path.suffix.lower() == ".flv" else "audio"
        return sample

    def deduplicate(self, samples: list[Sample]) -> list[Sample]:
        audio = {s.clip_id: s.path for s in samples if s.meta["kind"] == "audio"}
        videos = [s for s in samples if s.meta["kind"] == "video"]
        for s in videos:
            if s.clip_id in audio:
                s.meta["audio"] = audio[s.clip_id]
        return videos

    def probe(self, path: Path) -> str | None:
        from .prep.video import probe_video

        return probe_video(path)
