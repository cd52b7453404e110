"""Built-in synthetic speech: a source-filter model whose speaker and emotion are separate factors.

Source: a glottal sawtooth at f0 with per-period jitter and shimmer plus breath noise, spectral
tilt from a one-pole low-pass. Filter: three formant resonators (2nd-order, ``lfilter``) whose
frequencies follow a random vowel per syllable; syllables come from an amplitude envelope.
Speaker (per subject): base f0, vocal-tract length (scales formants), breathiness, rate.
Emotion (per clip, scaled by a random intensity): f0 level, range and slope, loudness, tempo,
jitter/shimmer and tilt. Speakers differ more in f0 than emotions do, and loudness also varies
by recording, so a model must learn emotion under speaker changes.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.signal

from .base import BASIC7, IndexResult, Sample, subject_kfold
from .media import MediaAdapter
from .prep.media_cache import file_info, generate_once
from .registry import register_dataset

GENERATOR_VERSION = 1
SAMPLE_RATE = 16000
SECONDS = 2.5
NUM_SUBJECTS = 16
PER_CLASS = 5

# per emotion: f0 ratio, f0 range (semitones), f0 slope (semitones over the clip), loudness (dB),
# syllables per second, jitter, shimmer, tilt (low-pass pole: higher = darker voice)
_VOICE = {
    "angry":    (1.25, 4.0, -1.0, 7.0, 5.0, 0.015, 0.10, 0.55),
    "disgust":  (0.92, 2.5, -2.0, 1.0, 3.0, 0.025, 0.12, 0.80),
    "fear":     (1.40, 3.0, 1.0, 0.0, 5.5, 0.035, 0.14, 0.70),
    "happy":    (1.30, 5.0, 1.0, 4.0, 4.5, 0.010, 0.06, 0.62),
    "sad":      (0.85, 1.0, -3.0, -6.0, 2.6, 0.020, 0.08, 0.88),
    "surprise": (1.35, 4.0, 6.0, 3.0, 4.0, 0.010, 0.06, 0.65),
    "neutral":  (1.00, 1.5, -1.0, 0.0, 3.8, 0.008, 0.04, 0.75),
}
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480],
                    [570, 840, 2410], [660, 1720, 2410]], dtype=np.float64)  # a i u e o ae (adult male)


def clip_intensity(seed: int, subject: int, label: int, k: int) -> float:
    """Shared by the voice and video generators so a synthetic-av pair is equally intense."""
    if BASIC7[label] == "neutral":
        return 0.0
    return float(np.random.default_rng([seed, subject, label, k, 7]).uniform(0.35, 1.0))


def _speaker(rng: np.random.Generator) -> dict:
    female = rng.random() < 0.5
    return {"f0": rng.uniform(170, 250) if female else rng.uniform(90, 140),
            "tract": rng.uniform(1.08, 1.22) if female else rng.uniform(0.9, 1.05),
            "breath": rng.uniform(0.02, 0.12), "rate": rng.uniform(0.85, 1.15), "tilt": rng.uniform(-0.08, 0.08)}


def _resonator(freq: float, bandwidth: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    r = np.exp(-np.pi * bandwidth / sr)
    a = np.array([1.0, -2 * r * np.cos(2 * np.pi * freq / sr), r * r])
    return np.array([a.sum()]), a  # unit gain at DC


def synthesize(speaker: dict, emotion: str, intensity: float, rng: np.random.Generator,
               seconds: float = SECONDS, sr: int = SAMPLE_RATE) -> np.ndarray:
    neutral = np.array(_VOICE["neutral"])
    p = neutral + intensity * (np.array(_VOICE[emotion]) - neutral) + rng.normal(0, 0.04, 8) * np.abs(neutral)
    f0_ratio, f0_range, f0_slope, loud_db, rate, jitter, shimmer, tilt = p
    n = int(seconds * sr)
    t = np.arange(n) / sr
    # syllable envelope: voiced stretch between random onsets/offsets of silence
    start, stop = rng.uniform(0.1, 0.35), seconds - rng.uniform(0.1, 0.35)
    syl_rate = max(rate * speaker["rate"] * rng.uniform(0.9, 1.1), 1.5)
    n_syl = max(2, int((stop - start) * syl_rate))
    edges = np.linspace(start, stop, n_syl + 1) + rng.normal(0, 0.015, n_syl + 1)
    env = np.zeros(n)
    vowel_of = np.zeros(n, dtype=np.int64)
    for i in range(n_syl):
        a, b = int(edges[i] * sr), int(edges[i + 1] * sr)
        if b - a < 8:
            continue
        env[a:b] = np.sin(np.linspace(0, np.pi, b - a)) ** 0.7 * rng.uniform(0.7, 1.0)
        vowel_of[a:b] = rng.integers(len(_VOWELS))
    # f0 contour: speaker base x emotion ratio, a slope, and a random smooth excursion
    semis = f0_slope * (t - start) / (stop - start) + f0_range * np.interp(
        t, np.linspace(0, seconds, 8), rng.normal(0, 0.5, 8))
    f0 = speaker["f0"] * f0_ratio * 2 ** (semis / 12)
    periods = np.cumsum(f0 / sr)
    period_idx = periods.astype(np.int64)
    n_periods = period_idx[-1] + 2
    f0_jittered = f0 * (1 + jitter * rng.standard_normal(n_periods)[period_idx])
    phase = np.cumsum(f0_jittered / sr) % 1.0
    source = (2 * phase - 1) * (1 + shimmer * rng.standard_normal(n_periods)[period_idx])
    pole = np.clip(tilt + speaker["tilt"], 0.3, 0.95)
    source = scipy.signal.lfilter([1 - pole], [1, -pole], source)
    source = source + speaker["breath"] * rng.standard_normal(n)
    # formant filter, one set of coefficients per syllable; state carried across syllables
    out = np.zeros(n)
    bounds = np.flatnonzero(np.diff(vowel_of)) + 1
    zi = None
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, n]):
        formants = _VOWELS[vowel_of[a]] * speaker["tract"]
        num, den = np.array([1.0]), np.array([1.0])
        for freq, bw in zip(formants, (80, 100, 140)):
            bn, an = _resonator(min(freq, sr / 2 - 200), bw, sr)
            num, den = np.convolve(num, bn), np.convolve(den, an)
        if zi is None:
            zi = np.zeros(len(den) - 1)
        out[a:b], zi = scipy.signal.lfilter(num, den, source[a:b], zi=zi)
    out = out * env
    out = out / (np.abs(out).max() + 1e-9) * 0.25 * 10 ** ((loud_db + rng.normal(0, 2.5)) / 20)
    out = out + rng.normal(0, 10 ** (rng.uniform(-60, -45) / 20), n)  # room noise
    return np.clip(out, -1, 1).astype(np.float32)


def generate_voice(folder: Path, seed: int = 0, num_subjects: int = NUM_SUBJECTS, per_class: int = PER_CLASS) -> None:
    import soundfile as sf

    rows = []
    for subject in range(num_subjects):
        speaker = _speaker(np.random.default_rng([seed, subject, 1]))
        for label, emotion in enumerate(BASIC7):
            for k in range(per_class):
                rng = np.random.default_rng([seed, subject, label, k, 1])
                wave = synthesize(speaker, emotion, clip_intensity(seed, subject, label, k), rng)
                rel = f"id{subject:02d}/{emotion}_{k}.wav"
                (folder / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(folder / rel), wave, SAMPLE_RATE, subtype="PCM_16")
                rows.append({"path": rel, "label": label, "subject": f"id{subject:02d}", "k": k})
    (folder / "manifest.json").write_text(json.dumps(rows))


def voice_folder(cache_dir: Path, seed: int = 0) -> Path:
    # sizes read at call time (tests shrink them) and named in the folder, so sizes never mix
    size = f"{NUM_SUBJECTS}x{PER_CLASS}"
    target = Path(cache_dir) / "synthetic" / f"voice-v{GENERATOR_VERSION}-seed{seed}-{size}"
    return generate_once(target, lambda tmp: generate_voice(tmp, seed, NUM_SUBJECTS, PER_CLASS))


def manifest_samples(folder: Path, cache_dir: Path, prefix: str) -> list[Sample]:
    rows = json.loads((folder / "manifest.json").read_text())
    samples = []
    for row in rows:
        path = folder / row["path"]
        samples.append(Sample(f"{prefix}/{row['path']}", str(path), row["label"], row["subject"],
                              clip_id=f"{prefix}/{row['path']}",
                              meta={"sha256": file_info(path, cache_dir)["sha256"], "k": row["k"]}))
    return samples


@register_dataset
class SyntheticVoice(MediaAdapter):
    name = "synthetic-voice"
    modality = "voice"
    class_names = BASIC7
    num_folds = 5
    protocol = "5-fold speaker-independent (about 3 of 16 synthetic speakers test per fold; 25% of the rest validation)"
    expected_layout = "nothing: generated into the cache on first use"

    def index(self, root, cache_dir) -> IndexResult:
        return IndexResult(manifest_samples(voice_folder(cache_dir), cache_dir, self.name))

    def splits(self, samples, fold, seed=0):
        return subject_kfold(samples, self.num_folds, fold, seed, val_fraction=0.25)

    @staticmethod
    def make_fake(directory: Path) -> Path:
        return Path(directory)


LARGE_SUBJECTS, LARGE_PER_CLASS, LARGE_SEED = 120, 4, 1


@register_dataset
class SyntheticVoiceLarge(SyntheticVoice):
    """A large synthetic speech set (120 speakers, 3,360 clips) from another seed, so none of its
    speakers is one of ``synthetic-voice``'s: the stand-in for CREMA-D when measuring
    ``model.init`` (pretrain here, fine-tune on a small corpus)."""

    name = "synthetic-voice-large"
    protocol = "5-fold speaker-independent (24 of 120 synthetic speakers test per fold; 25% of the rest validation)"

    def index(self, root, cache_dir) -> IndexResult:
        size = f"{LARGE_SUBJECTS}x{LARGE_PER_CLASS}"
        target = Path(cache_dir) / "synthetic" / f"voice-v{GENERATOR_VERSION}-seed{LARGE_SEED}-{size}"
        folder = generate_once(target, lambda tmp: generate_voice(tmp, LARGE_SEED, LARGE_SUBJECTS, LARGE_PER_CLASS))
        return IndexResult(manifest_samples(folder, cache_dir, self.name))
