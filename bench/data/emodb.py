"""EMO-DB (Berlin Database of Emotional Speech): 10 actors, 10 German sentences, 7 emotions.

Native layout: ``wav/03a01Fa.wav`` = speaker 03, text a01, emotion F (happiness), version a.
Protocol: 5 speaker-independent folds of 2 speakers; validation speakers carved from the rest.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import Sample, subject_kfold
from .fakes import write_tone
from .media import MediaAdapter
from .registry import register_dataset

_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
_NAME = re.compile(r"^(?P<speaker>\d{2})(?P<text>[a-z]\d{2})(?P<emotion>[WLEAFTN])(?P<version>[a-z])$")


@register_dataset
class EmoDB(MediaAdapter):
    name = "emodb"
    modality = "voice"
    class_names = ("angry", "disgust", "fear", "happy", "sad", "neutral", "boredom")
    num_folds = 5
    protocol = "5-fold speaker-independent (2 of 10 speakers test per fold; 2 more validation)"
    expected_layout = "wav/03a01Fa.wav (speaker, text code, emotion letter W L E A F T N, version)"
    source = "http://emodb.bilderbar.info/download/ (download.zip)"
    extensions = (".wav",)

    def parse(self, path: Path, root: Path) -> Sample | str:
        match = _NAME.match(path.stem)
        if not match:
            return f"name does not match <speaker 2 digits><text a01><emotion letter><version>.wav: {path.name}"
        label = self.class_names.index(_EMOTIONS[match["emotion"]])
        return Sample(path.relative_to(root).as_posix(), str(path), label, match["speaker"], clip_id=path.stem,
                      meta={"text": match["text"]})

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.25)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        root = Path(directory) / "emodb"
        for s, speaker in enumerate(("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")):
            for e, letter in enumerate("WLEAFTN"):
                write_tone(root / "wav" / f"{speaker}a0{e % 5 + 1}{letter}a.wav", seed=s * 10 + e, seconds=0.2)
        return root
