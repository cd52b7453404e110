"""RAVDESS: 24 actors (odd = male), speech and song, audio-only / video-only / audio-visual files.

Native layout: ``Actor_XX/MM-VC-EE-II-SS-RR-AA.{wav,mp4}`` (modality 01 AV, 02 video-only, 03
audio-only; vocal channel 01 speech, 02 song; emotion 01..08 neutral calm happy sad angry fearful
disgust surprised; intensity; statement; repetition; actor), also inside the download zips'
folders (``Audio_Speech_Actors_01-24/Actor_01/...``, ``Video_Speech_Actor_01/Actor_01/...``).

One recorded utterance exists in up to three copies; they share ``clip_id`` (the name without
the modality field), so ``check_leakage`` stops any split that separates them. Each variant keeps
one copy per utterance: ``ravdess`` (voice) prefers the .wav and falls back to an AV mp4's audio
track; ``ravdess-video`` prefers the video-only mp4; ``ravdess-av`` uses the AV mp4 (its own audio).
Protocol: 6 folds of 4 actors; validation actors carved from the other 20.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import BASIC7, Sample, subject_kfold
from .fakes import write_clip, write_tone
from .media import MediaAdapter
from .registry import register_dataset

_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")  # codes 01..08
_NAME = re.compile(r"^(?P<modality>0[123])-(?P<channel>0[12])-(?P<emotion>0[1-8])-(?P<intensity>0[12])-"
                   r"(?P<statement>0[12])-(?P<repetition>0[12])-(?P<actor>\d{2})$")


@register_dataset
class Ravdess(MediaAdapter):
    name = "ravdess"
    modality = "voice"
    class_names = BASIC7 + ("calm",)
    num_folds = 6
    protocol = "6 folds of 4 actors (actor-independent; AV/audio twins of one utterance kept together)"
    expected_layout = ("Actor_XX/MM-VC-EE-II-SS-RR-AA.wav|mp4 (e.g. Actor_01/03-01-05-01-02-01-01.wav), "
                       "as unpacked from the Audio_Speech/Video_Speech zips")
    source = "https://zenodo.org/record/1188976"
    extensions = (".wav", ".mp4")
    # modality codes this variant reads, most preferred first
    modalities = ("03", "01")

    def parse(self, path: Path, root: Path) -> Sample | str | None:
        match = _NAME.match(path.stem)
        if not match:
            return f"name does not match MM-VC-EE-II-SS-RR-AA (7 two-digit fields): {path.name}"
        code = match["modality"]
        suffix = path.suffix.lower()
        wanted = (code == "03" and suffix == ".wav") or (code in ("01", "02") and suffix == ".mp4")
        if not wanted:
            return f"modality {code} does not fit the file type {path.suffix}: {path.name}"
        if code not in self.modalities:
            return None
        actor = int(match["actor"])
        label = self.class_names.index(_EMOTIONS[int(match["emotion"]) - 1])
        clip = path.stem[3:]  # the same for the AV, video-only and audio-only copies
        meta = {"modality": code, "vocal_channel": "speech" if match["channel"] == "01" else "song",
                "intensity": int(match["intensity"]), "gender": "male" if actor % 2 else "female"}
        return Sample(path.relative_to(root).as_posix(), str(path), label, f"Actor_{actor:02d}", clip_id=clip,
                      meta=meta)

    def deduplicate(self, samples: list[Sample]) -> list[Sample]:
        rank = {code: i for i, code in enumerate(self.modalities)}
        best: dict[str, Sample] = {}
        for s in samples:
            kept = best.get(s.clip_id)
            if kept is None or rank[s.meta["modality"]] < rank[kept.meta["modality"]]:
                best[s.clip_id] = s
        return sorted(best.values(), key=lambda s: s.sample_id)

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.2)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        """Actors 1-12, 4 emotions each: audio-only wavs in the Audio_Speech zip layout, AV and
        video-only mp4s (tiny) for actors 1-6 in the Video_Speech zip layout."""
        root = Path(directory) / "ravdess"
        for actor in range(1, 13):
            for emotion in (1, 2, 5, 8):
                clip = f"01-{emotion:02d}-01-01-01-{actor:02d}"
                write_tone(root / "Audio_Speech_Actors_01-24" / f"Actor_{actor:02d}" / f"03-{clip}.wav",
                           seed=actor * 10 + emotion, seconds=0.2)
                if actor <= 6:
                    folder = root / f"Video_Speech_Actor_{actor:02d}" / f"Actor_{actor:02d}"
                    write_clip(folder / f"01-{clip}.mp4", seed=actor * 10 + emotion, frames=4, with_audio=True)
                    write_clip(folder / f"02-{clip}.mp4", seed=actor * 10 + emotion, frames=4)
        return root


@register_dataset
class RavdessVideo(Ravdess):
    name = "ravdess-video"
    modality = "video"
    extensions = (".mp4",)
    modalities = ("02", "01")


@register_dataset
class RavdessAV(Ravdess):
    name = "ravdess-av"
    fusion_sources = {"visual": "ravdess-video", "voice": "ravdess"}
    modality = "av"
    extensions = (".mp4",)
    modalities = ("01",)

    def probe(self, path: Path) -> str | None:
        from .prep.audio import probe_audio
        from .prep.video import probe_video

        return probe_video(path) or probe_audio(path)
