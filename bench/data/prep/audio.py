"""Audio preprocessing: decode, resample, crop/pad, and every voice representation.

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

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ...errors import UserError
from ..base import file_hash
from .media_cache import WORK, MediaError, cached_entry, file_info, params_tag, wait_for_entry

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
def _mel_transform(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, fmin: float, fmax: float):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=hop_length, f_min=fmin, f_max=fmax, n_mels=n_mels, power=2.0,
        norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 64, n_fft: int = N_FFT,
            hop_length: int = HOP, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, frames) float32 log mel power; frames = 1 + len(wave) // hop_length (centred)."""
    wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if len(wave) <= n_fft // 2:  # reflect padding needs more samples than half a window
        wave = torch.nn.functional.pad(wave, (0, n_fft // 2 + 1 - len(wave)))
    with torch.inference_mode():
        mel = _mel_transform(sample_rate, n_fft, hop_length, n_mels, fmin, fmax or sample_rate / 2)(wave)
    return torch.log(mel + LOG_FLOOR).numpy().astype(np.float32)


def mfcc(wave: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, n_mels: int = 64,
         log_mel_spec: np.ndarray | None = None, **mel_kwargs) -> np.ndarray:
    """(n_mfcc, frames): orthonormal DCT-II of the log-mel (torchaudio's MFCC with ``log_mels``)."""
    import torchaudio

    spec = log_mel_spec if log_mel_spec is not None else log_mel(wave, sample_rate, n_mels, **mel_kwargs)
    dct = torchaudio.functional.create_dct(n_mfcc, spec.shape[0], norm="ortho")  # n_mels x n_mfcc
    return (torch.from_numpy(np.ascontiguousarray(spec)).T @ dct).T.numpy().astype(np.float32)


def silence_column(kind: str, n_bins: int, n_mels: int = 64, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The feature column of digital silence: what zero-padding the audio would produce."""
    spec = np.full((n_mels, 1), np.log(LOG_FLOOR), dtype=np.float32)
    return spec[:, 0] if kind == "logmel" else mfcc(log_mel_spec=spec, n_mfcc=n_bins)[:, 0]


OPENSMILE_MAX_SECONDS = 60.0  # functionals summarise the whole utterance, up to this
SSL_CHUNK_SECONDS = 10.0
SSL_MAX_SECONDS = 60.0


def feature_params(kind: str = "logmel", n_bins: int = 64, n_mels: int = 64, sample_rate: int = SAMPLE_RATE, *,
                   feature_set: str | None = None, level: str = "functionals", encoder: str | None = None,
                   weights: str | Path | None = None, cache_dir: Path | None = None) -> dict:
    """Everything that determines one representation's arrays; the cache key hashes all of it
    except ``weights`` (the path: the file's SHA-256 is in the key instead)."""
    common = {"kind": kind, "sample_rate": sample_rate}
    if kind in ("logmel", "mfcc"):
        return {**common, "n_bins": n_bins, "n_mels": n_mels if kind == "mfcc" else n_bins,
                "n_fft": N_FFT, "hop": HOP, "max_seconds": MAX_SECONDS, "v": 2}
    if kind == "opensmile":
        import opensmile

        from fer_models.voice_features import check_feature_set

        try:
            check_feature_set(feature_set)
        except ValueError as exc:
            raise UserError(f"voice features: {exc}") from None
        return {**common, "feature_set": feature_set, "level": level, "opensmile": opensmile.__version__,
                "max_seconds": OPENSMILE_MAX_SECONDS if level == "functionals" else MAX_SECONDS,
                "n_fft": N_FFT, "hop": HOP, "v": 1}
    if kind == "ssl":
        from fer_models.voice_features import find_weights, missing_weights_message

        try:
            path = find_weights(encoder, weights)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if path is None:
            raise UserError(missing_weights_message(encoder))
        sha = file_info(path, cache_dir)["sha256"] if cache_dir else file_hash(path)
        return {**common, "encoder": encoder, "weights_sha256": sha, "weights": str(path),
                "chunk_seconds": SSL_CHUNK_SECONDS, "max_seconds": SSL_MAX_SECONDS, "v": 1}
    raise ValueError(f"voice features must be 'logmel', 'mfcc', 'opensmile' or 'ssl', got {kind!r}")


def cache_tag(params: dict) -> str:
    return params_tag("audio", {k: v for k, v in params.items() if k != "weights"})


@lru_cache(maxsize=8)
def _smile(feature_set: str, level: str):
    import opensmile

    return opensmile.Smile(feature_set=feature_set,
                           feature_level="Functionals" if level == "functionals" else "LowLevelDescriptors")


def opensmile_features(wave: np.ndarray, sample_rate: int, feature_set: str, level: str) -> np.ndarray:
    """(D,) functionals or (D, frames) low-level descriptors of the signal."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Segment too short, filling with NaN": caught below
        values = _smile(feature_set, level).process_signal(wave, sample_rate).to_numpy(np.float32)
    if values.size == 0 or not np.isfinite(values).all():
        raise MediaError(f"openSMILE {feature_set} {level}: the audio is too short "
                         f"({len(wave) / sample_rate:.2f} s) to describe")
    return values[0] if level == "functionals" else np.ascontiguousarray(values.T)


@lru_cache(maxsize=2)
def _encoder(encoder: str, path: str, mtime_ns: int):
    """The frozen torchaudio model for these weights, in eval mode, and whether the bundle
    layer-normalises the waveform first."""
    import torchaudio

    from fer_models.voice_features import SSL_ENCODERS, read_weights

    try:
        state, arch, model_type = read_weights(Path(path))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    bundle = getattr(torchaudio.pipelines, SSL_ENCODERS[encoder]["bundle"])
    arch, model_type = arch or bundle._params, model_type or bundle._model_type
    factory = torchaudio.models.wavlm_model if model_type == "WavLM" else torchaudio.models.wav2vec2_model
    model = factory(**arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"encoder weights {path!r} do not fit torchaudio's {bundle._path} architecture "
                        f"({str(exc).splitlines()[0][:100]}...); use the file torchaudio's "
                        f"{SSL_ENCODERS[encoder]['bundle']} bundle downloads") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), bool(bundle._normalize_waveform)


def ssl_layer_means(wave: np.ndarray, params: dict) -> np.ndarray:
    """(L, D): each hidden layer's output averaged over time (layer 0: the transformer's input)."""
    path = Path(params["weights"])
    model, normalize = _encoder(params["encoder"], str(path), path.stat().st_mtime_ns)
    chunk = int(params["chunk_seconds"] * params["sample_rate"])
    pieces = np.array_split(wave, max(1, -(-len(wave) // chunk)))
    total, count = None, 0
    with torch.inference_mode():
        for piece in pieces:
            x = torch.from_numpy(np.ascontiguousarray(piece, dtype=np.float32))[None]
            if x.shape[1] < 400:  # the conv front end's receptive field (25 ms)
                x = torch.nn.functional.pad(x, (0, 400 - x.shape[1]))
            if normalize:
                x = torch.nn.functional.layer_norm(x, x.shape)
            feats, _ = model.feature_extractor(x, None)
            h, _ = model.encoder._preprocess(feats, None)
            transformer = model.encoder.transformer
            hidden = [transformer._preprocess(h), *transformer.get_intermediate_outputs(h)]
            means = torch.stack([t[0].mean(0) for t in hidden]) * feats.shape[1]
            total = means if total is None else total + means
            count += feats.shape[1]
    return (total / count).numpy().astype(np.float32)


def features_from_wave(wave: np.ndarray, params: dict) -> np.ndarray:
    """The representation ``params`` describes, of a decoded 16 kHz wave."""
    kind, sr = params["kind"], params["sample_rate"]
    if kind in ("logmel", "mfcc"):
        spec = log_mel(wave, sr, params["n_mels"], params["n_fft"], params["hop"])
        return spec if kind == "logmel" else mfcc(log_mel_spec=spec, n_mfcc=params["n_bins"])
    if kind == "opensmile":
        return opensmile_features(wave, sr, params["feature_set"], params["level"])
    return ssl_layer_means(wave, params)


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
