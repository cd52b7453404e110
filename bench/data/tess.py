"""TESS (Toronto Emotional Speech Set): 2 female speakers x 200 words x 7 emotions.

Native layout: ``<SPK>_<emotion>/<SPK>_<word>_<emotion>.wav``; folder case varies between copies
(``OAF_Fear``, ``YAF_pleasant_surprised``), so labels come from the file name only.

Protocol (2 speakers only): leave-one-speaker-out, 2 folds (fold 0 tests OAF, fold 1 YAF). The
validation set is carved from the training speaker: a seeded, class-stratified 20% of her words
(all emotions of those words), so validation is word-disjoint from training but NOT
speaker-independent; it overestimates test accuracy and serves only to rank trials. Test is speaker-independent.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import BASIC7, Sample, _check_fold, check_leakage, stratified_group_carve
from .fakes import write_tone
from .media import MediaAdapter
from .registry import register_dataset

# file-name emotion suffixes, longest first so "pleasant_surprised" wins over "surprised"
_EMOTIONS = {
    "pleasant_surprised": "surprise", "pleasant_surprise": "surprise", "surprised": "surprise",
    "surprise": "surprise", "ps": "surprise", "angry": "angry", "anger": "angry", "disgust": "disgust",
    "fear": "fear", "happy": "happy", "neutral": "neutral", "sad": "sad",
}
_EMOTION_PATTERN = "|".join(sorted(_EMOTIONS, key=len, reverse=True))
_NAME = re.compile(rf"^(?P<speaker>[a-z]{{2,3}})_(?P<word>[a-z]+)_(?P<emotion>{_EMOTION_PATTERN})$", re.IGNORECASE)


@register_dataset
class Tess(MediaAdapter):
    name = "tess"
    modality = "voice"
    class_names = BASIC7
    num_folds = 2
    protocol = ("leave-one-speaker-out, 2 folds (test = one speaker); val = 20% of the training "
                "speaker's words (speaker-dependent)")
    expected_layout = "OAF_fear/OAF_back_fear.wav (folders <OAF|YAF>_<emotion> of <speaker>_<word>_<emotion>.wav)"
    source = "https://doi.org/10.5683/SP2/E8H2MF (Borealis) or Kaggle's 'TESS Toronto emotional speech set'"
    extensions = (".wav",)
    val_fraction = 0.2

    def parse(self, path: Path, root: Path) -> Sample | str:
        match = _NAME.match(path.stem)
        if not match:
            return f"name does not match <OAF|YAF>_<word>_<emotion>.wav: {path.name}"
        speaker, word = match["speaker"].upper(), match["word"].lower()
        if speaker not in ("OAF", "YAF"):  # the corpus has typos such as OA_bite_neutral.wav
            speaker = path.parent.name[:3].upper()
            if speaker not in ("OAF", "YAF"):
                return f"speaker is neither OAF nor YAF in the file or folder name: {path.name}"
        label = self.class_names.index(_EMOTIONS[match["emotion"].lower()])
        rel = path.relative_to(root).as_posix()
        return Sample(rel, str(path), label, speaker, clip_id=f"{speaker}_{word}_{match['emotion'].lower()}",
                      meta={"word": word})

    def splits(self, samples, fold, seed=0):
        _check_fold(fold, self.num_folds)
        speakers = sorted({s.subject for s in samples})
        if len(speakers) < 2:
            from ..errors import UserError

            raise UserError(f"tess needs both speakers (OAF and YAF) for its protocol; found {speakers}")
        test_speaker = speakers[fold % len(speakers)]
        train_pool = [s for s in samples if s.subject != test_speaker]
        # whole words, stratified by class: every emotion two words carry reaches validation
        train, val = stratified_group_carve(train_pool, self.val_fraction, seed + 1000 + fold,
                                            group_of=lambda s: s.meta["word"])
        out = {"train": train, "val": val, "test": [s for s in samples if s.subject == test_speaker]}
        # train and val share the speaker by design; both must be speaker-disjoint from test
        check_leakage({"train": out["train"] + out["val"], "test": out["test"]})
        return out

    def validation_group(self, sample):
        return sample.meta["word"]  # the training pool is one speaker: validation takes whole words

    @staticmethod
    def make_fake(directory: Path) -> Path:
        root = Path(directory) / "TESS Toronto emotional speech set data"
        folders = {"angry": "angry", "disgust": "Disgust", "fear": "fear", "happy": "happy",
                   "neutral": "neutral", "ps": "Pleasant_surprise", "sad": "sad"}
        for n, (suffix, folder) in enumerate(folders.items()):
            for speaker in ("OAF", "YAF"):
                for k, word in enumerate(("back", "bar", "base", "bath", "bean")):
                    name = "pleasant_surprised" if (speaker == "YAF" and suffix == "ps" and k == 0) else suffix
                    write_tone(root / f"{speaker}_{folder}" / f"{speaker}_{word}_{name}.wav", seed=n * 100 + k)
        return Path(directory)
