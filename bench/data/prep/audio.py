"""Audio preprocessing: decode, resample, crop/pad, and the per-file cache of every voice
representation. What each representation is, and its code, is its kind's
(``fer_models.voice_features.VoiceFeatureKind``); the built-in ones:

- log-mel / MFCC through ``torchaudio.transforms.MelSpectrogram`` (Slaney mel scale, as librosa)
  and a DCT-II of the log-mel. The log is absolute (log of mel power + 1e-6), not relative to
  each clip's peak: loudness is an emotion cue and per-dataset normalisation (see
  ``bench.data.tensors``) handles the scale.
- openSMILE functionals and low-level descriptors through the ``opensmile`` package. openSMILE
  reads the decoded, 16 kHz mono signal (``process_signal``), not the file: the same decoder
  (soundfile, or PyAV for the sound track of a video) and resampler serve every representation,
  and the same length cap applies.
- frozen pretrained speech encoders (``fer_models.voice_features.SSL_ENCODERS``): every hidden
  layer's time-averaged output (L x D). Long utterances are read in chunks of
  ``SSL_CHUNK_SECONDS`` (attention memory grows with the square of the length) whose layer means
  are averaged weighted by their frame counts, up to ``SSL_MAX_SECONDS`` (centre crop beyond).

Everything is cached per file, keyed by the representation and all of its parameters
(``feature_params``): a second sweep computes nothing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fer_models.voice_features import (  # noqa: F401  (the representations' code, also this module's names)
    HOP,
    LOG_FLOOR,
    MAX_SECONDS,
    N_FFT,
    OPENSMILE_MAX_SECONDS,
    SSL_CHUNK_SECONDS,
    SSL_MAX_SECONDS,
    FeatureError,
    log_mel,
    mfcc,
    opensmile_features,
    silence_column,
    ssl_layer_means,
    voice_kind,
)

from ...errors import UserError
from ..base import file_hash
from .media_cache import WORK, MediaError, cached_entry, file_info, params_tag, wait_for_entry

SAMPLE_RATE = 16000


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at ``sample_rate``. WAV/FLAC via soundfile; containers soundfile
    cannot read (mp4, flv) via PyAV's audio decoder."""
    WORK["audio_decode"] += 1
    try:
        import soundfile as sf

        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wave = wave.mean(axis=1)
    except Exception as sf_error:  # not a soundfile format, or damaged
        try:
            wave, sr = _decode_with_pyav(Path(path))
        except Exception as av_error:
            raise MediaError(f"cannot decode audio in {path}: {sf_error}; {av_error}") from None
    if wave.size == 0:
        raise MediaError(f"no audio samples in {path}")
    if sr != sample_rate:
        import soxr

        wave = soxr.resample(wave, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(wave, dtype=np.float32)


def _decode_with_pyav(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise MediaError(f"{path} has no audio stream")
        stream = container.streams.audio[0]
        chunks = [frame.to_ndarray() for frame in container.decode(stream)]
        sr = stream.codec_context.sample_rate
    if not chunks:
        raise MediaError(f"{path} has an audio stream but no decodable audio")
    planar = [c if c.ndim == 2 else c[None] for c in chunks]
    # planar formats give channels x samples; packed ones 1 x (samples*channels)
    wave = np.concatenate([c.mean(axis=0) for c in planar]).astype(np.float32)
    if np.issubdtype(chunks[0].dtype, np.integer):
        wave /= np.iinfo(chunks[0].dtype).max
    return wave, sr


def probe_audio(path: Path) -> str | None:
    """Why ``path`` is not usable audio, or None. Reads only the header."""
    try:
        import soundfile as sf

        info = sf.info(str(path))
        return None if info.frames > 0 else "no audio frames"
    except Exception:
        pass
    try:
        import av

        with av.open(str(path)) as container:
            return None if container.streams.audio else "no audio stream"
    except Exception as e:
        return f"unreadable audio ({type(e).__name__}: {e})"


def fix_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Centre-crop or zero-pad (both sides equally) to ``length`` samples."""
    n = len(wave)
    if n >= length:
        start = (n - length) // 2
        return wave[start:start + length]
    left = (length - n) // 2
    return np.pad(wave, (left, length - n - left))


def feature_params(kind: str = "logmel", n_bins: int = 64, n_mels: int = 64, sample_rate: int = SAMPLE_RATE, *,
                   feature_set: str | None = None, level: str = "functionals", encoder: str | None = None,
                   weights: str | Path | None = None, cache_dir: Path | None = None) -> dict:
    """Everything that determines one representation's arrays (its kind's ``params``); the cache
    key hashes all of it except ``weights`` (the path: the file's SHA-256 is in the key instead)."""
    try:
        return voice_kind(kind).params(n_bins=n_bins, n_mels=n_mels, sample_rate=sample_rate,
                                       feature_set=feature_set, level=level, encoder=encoder, weights=weights,
                                       digest=file_digest(cache_dir))
    except FeatureError:
        raise
    except ValueError as exc:
        raise UserError(f"voice features: {exc}" if kind == "opensmile" else str(exc)) from None


def file_digest(cache_dir: Path | None):
    """A file's SHA-256, through the cache's record of it when there is a cache."""
    return (lambda path: file_info(path, cache_dir)["sha256"]) if cache_dir else file_hash


def cache_tag(params: dict) -> str:
    return params_tag("audio", {k: v for k, v in params.items() if k != "weights"})


def features_from_wave(wave: np.ndarray, params: dict) -> np.ndarray:
    """The representation ``params`` describes, of a decoded 16 kHz wave (its kind computes it)."""
    try:
        return voice_kind(params["kind"]).compute(wave, params)
    except FeatureError as exc:  # this file cannot be described: skipped and counted like an undecodable one
        raise MediaError(str(exc)) from None
    except ValueError as exc:  # unusable weights and the like: the configuration's fault
        raise UserError(str(exc)) from None


def compute_features(path: Path, params: dict) -> np.ndarray:
    wave = load_audio(path, params["sample_rate"])
    limit = int(params["max_seconds"] * params["sample_rate"])
    if len(wave) > limit:
        wave = fix_length(wave, limit)
    WORK["audio_features"] += 1
    return features_from_wave(wave, params)


def cached_features(path: Path, cache_dir: Path, params: dict, sha256: str | None = None,
                    claim: bool = False) -> np.ndarray:
    """The features of the whole (capped) utterance, from the cache when present: (bins, frames)
    log-mel/MFCC/LLDs, (D,) functionals or (L, D) encoder layers. Raises MediaError for a file
    that cannot be decoded, and with ``claim`` ``Busy`` for one another process is computing."""
    sha256 = sha256 or file_info(path, cache_dir, probe_audio)["sha256"]
    entry = cached_entry(cache_dir, cache_tag(params), sha256,
                         lambda: {"features": compute_features(path, params)}, claim=claim)
    return entry["features"]


def wait_for_features(path: Path, cache_dir: Path, params: dict, sha256: str | None = None) -> np.ndarray:
    """``cached_features`` of an entry another process claimed, once it has published it."""
    sha256 = sha256 or file_info(path, cache_dir, probe_audio)["sha256"]
    return wait_for_entry(cache_dir, cache_tag(params), sha256,
                          lambda: {"features": compute_features(path, params)})["features"]
