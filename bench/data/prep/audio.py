"""Audio preprocessing: decode, resample, crop/pad, log-mel and MFCC.

Features use a NumPy STFT and librosa's mel filter bank only (no librosa feature functions),
so computing them costs no JIT warm-up. The log is absolute (log of mel power + 1e-6), not
relative to each clip's peak: loudness is an emotion cue and per-dataset normalisation
(see ``bench.data.tensors``) handles the scale.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft

from .media_cache import WORK, MediaError, cached_entry, file_info, params_tag

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
LOG_FLOOR = 1e-6
MAX_SECONDS = 8.0  # longer utterances are centre-cropped before caching (bounds memory)


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


@lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    import librosa  # imported here: its import alone takes ~2 s

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 64, n_fft: int = N_FFT,
            hop_length: int = HOP, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, frames) float32 log mel power; frames = 1 + len(wave) // hop_length (centred)."""
    wave = np.asarray(wave, dtype=np.float32)
    padded = np.pad(wave, n_fft // 2, mode="reflect" if len(wave) > n_fft // 2 else "constant")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop_length]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann, as librosa
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2
    mel = mel_filters(sample_rate, n_fft, n_mels, fmin, fmax or sample_rate / 2) @ power.T
    return np.log(mel + LOG_FLOOR).astype(np.float32)


def mfcc(wave: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, n_mels: int = 64,
         log_mel_spec: np.ndarray | None = None, **mel_kwargs) -> np.ndarray:
    """(n_mfcc, frames): orthonormal DCT-II of the log-mel (librosa's definition, natural log)."""
    spec = log_mel_spec if log_mel_spec is not None else log_mel(wave, sample_rate, n_mels, **mel_kwargs)
    return scipy.fft.dct(spec, type=2, axis=0, norm="ortho")[:n_mfcc].astype(np.float32)


def silence_column(kind: str, n_bins: int, n_mels: int = 64, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The feature column of digital silence: what zero-padding the audio would produce."""
    spec = np.full((n_mels, 1), np.log(LOG_FLOOR), dtype=np.float32)
    return spec[:, 0] if kind == "logmel" else mfcc(log_mel_spec=spec, n_mfcc=n_bins)[:, 0]


def feature_params(kind: str = "logmel", n_bins: int = 64, n_mels: int = 64,
                   sample_rate: int = SAMPLE_RATE) -> dict:
    if kind not in ("logmel", "mfcc"):
        raise ValueError(f"voice features must be 'logmel' or 'mfcc', got {kind!r}")
    return {"kind": kind, "n_bins": n_bins, "n_mels": n_mels if kind == "mfcc" else n_bins,
            "sample_rate": sample_rate, "n_fft": N_FFT, "hop": HOP, "max_seconds": MAX_SECONDS, "v": 1}


def compute_features(path: Path, params: dict) -> np.ndarray:
    wave = load_audio(path, params["sample_rate"])
    limit = int(params["max_seconds"] * params["sample_rate"])
    if len(wave) > limit:
        wave = fix_length(wave, limit)
    WORK["audio_features"] += 1
    spec = log_mel(wave, params["sample_rate"], params["n_mels"], params["n_fft"], params["hop"])
    return spec if params["kind"] == "logmel" else mfcc(log_mel_spec=spec, n_mfcc=params["n_bins"])


def cached_features(path: Path, cache_dir: Path, params: dict, sha256: str | None = None) -> np.ndarray:
    """(n_bins, frames) features of the whole (capped) utterance, from the cache when present.
    Raises MediaError for a file that cannot be decoded."""
    sha256 = sha256 or file_info(path, cache_dir, probe_audio)["sha256"]
    entry = cached_entry(cache_dir, params_tag("audio", params), sha256,
                         lambda: {"features": compute_features(path, params)})
    return entry["features"]
