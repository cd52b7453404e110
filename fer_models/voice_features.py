"""Voice input representations by name: what one sample looks like for each of them.

``feature_spec(name, **options)`` is the InputSpec a voice model declares when it reads that
representation; ``bench.data.prep.audio`` computes (and caches, per file) exactly those arrays.

- ``logmel`` / ``mfcc``: ``1 x n_mels x frames`` / ``n_mfcc x frames`` spectral frames (torchaudio).
- ``egemaps`` / ``compare``: openSMILE eGeMAPSv02 / ComParE_2016 functionals, one ``(D,)`` vector
  per utterance; ``egemaps_lld`` / ``compare_lld``: their low-level descriptors, ``D x frames``.
- ``wavlm_base`` / ``hubert_base`` / ``wav2vec2_base``: a frozen pretrained speech encoder; every
  hidden layer's time-averaged output, ``L x D`` (L = transformer layers + 1, the first being the
  transformer's input). Weights are never downloaded: ``weights=`` (a model kwarg), the
  environment variable ``FER_BENCH_<NAME>_WEIGHTS`` or torchaudio's own cache file in the torch hub
  folder (``<torch.hub.get_dir()>/checkpoints/<file>``), in that order.

Each kind of representation is one registered ``VoiceFeatureKind`` class (``@register_voice_kind``):
its spec, the parameters that key its cache entry, how it is computed from a decoded wave, what
short inputs are padded with, and whether it can run here. The data layer
(``bench.data.prep.audio``, ``bench.data.transforms``), the classic heads' pooling and the sweep's
feasibility check ask the kind and never name one. A new kind is one module that registers its
class (a plugin module named in ``$FER_BENCH_PLUGINS`` is imported on the first unknown name) and
a search space that names it in ``model.features``.

A leaf module: imports torch, the spec and ``plugins`` only (never ``bench``; torchaudio,
openSMILE inside the kinds' methods).
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from .plugins import env_plugin_modules
from .spec import InputSpec

SAMPLE_RATE = 16000
DEFAULT_FRAMES = 128  # spectral/LLD frames per sample (10 ms hop): ~1.3 s, as the CNNs always had
N_FFT = 400  # 25 ms at 16 kHz
HOP = 160  # 10 ms
LOG_FLOOR = 1e-6
MAX_SECONDS = 8.0  # longer utterances are centre-cropped before caching (bounds memory)
OPENSMILE_MAX_SECONDS = 60.0  # functionals summarise the whole utterance, up to this
SSL_CHUNK_SECONDS = 10.0
SSL_MAX_SECONDS = 60.0


class FeatureError(ValueError):
    """This representation cannot describe this audio (e.g. too short for openSMILE)."""

# name -> (openSMILE feature set, level)
OPENSMILE = {
    "egemaps": ("eGeMAPSv02", "functionals"),
    "compare": ("ComParE_2016", "functionals"),
    "egemaps_lld": ("eGeMAPSv02", "lld"),
    "compare_lld": ("ComParE_2016", "lld"),
}
# (feature set, level) -> number of features, measured with opensmile 2.6 (sizing a set costs
# one openSMILE run, so the common ones are written down)
OPENSMILE_DIMS = {
    ("eGeMAPSv02", "functionals"): 88, ("eGeMAPSv02", "lld"): 25,
    ("ComParE_2016", "functionals"): 6373, ("ComParE_2016", "lld"): 65,
}

# name -> torchaudio bundle, its weights file name, transformer layers, width, model type
SSL_ENCODERS = {
    "wavlm_base": {"bundle": "WAVLM_BASE", "file": "wavlm_base.pth", "layers": 12, "dim": 768},
    "hubert_base": {"bundle": "HUBERT_BASE", "file": "hubert_fairseq_base_ls960.pth", "layers": 12, "dim": 768},
    "wav2vec2_base": {"bundle": "WAV2VEC2_BASE", "file": "wav2vec2_fairseq_base_ls960.pth", "layers": 12,
                      "dim": 768},
}



def opensmile_sets() -> tuple[str, ...]:
    import opensmile

    return tuple(opensmile.FeatureSet.__members__)


def check_feature_set(feature_set: str) -> None:
    if (feature_set, "functionals") in OPENSMILE_DIMS:
        return
    known = opensmile_sets()
    if feature_set not in known:
        raise ValueError(f"unknown openSMILE feature set {feature_set!r}; known: {', '.join(known)}")


@lru_cache(maxsize=32)
def opensmile_dim(feature_set: str, level: str) -> int:
    if (feature_set, level) in OPENSMILE_DIMS:
        return OPENSMILE_DIMS[(feature_set, level)]
    check_feature_set(feature_set)
    import opensmile

    smile = opensmile.Smile(feature_set=feature_set,
                            feature_level="Functionals" if level == "functionals" else "LowLevelDescriptors")
    return len(smile.feature_names)


def weights_env(encoder: str) -> str:
    return f"FER_BENCH_{encoder.upper()}_WEIGHTS"


def find_weights(encoder: str, weights: str | os.PathLike | None = None) -> Path | None:
    """The local weights file of an SSL encoder, or None when none is set up. An explicit path
    (or the environment variable) that does not exist is an error, not a silent fallback."""
    if encoder not in SSL_ENCODERS:
        raise ValueError(f"unknown speech encoder {encoder!r}; known: {', '.join(SSL_ENCODERS)}")
    for given, what in ((weights, "weights"), (os.environ.get(weights_env(encoder)), weights_env(encoder))):
        if given:
            path = Path(given).expanduser()
            if not path.is_file():
                raise ValueError(f"{what}={str(given)!r}: no such file; point it at the {encoder} weights "
                                 f"(torchaudio's {SSL_ENCODERS[encoder]['file']})")
            return path
    import torch

    cached = Path(torch.hub.get_dir()) / "checkpoints" / SSL_ENCODERS[encoder]["file"]
    return cached if cached.is_file() else None


def missing_weights_message(encoder: str) -> str:
    import torch

    file = SSL_ENCODERS[encoder]["file"]
    return (f"no local weights for speech encoder {encoder!r}: put torchaudio's {file} in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}, or set {weights_env(encoder)} or model.weights "
            f"to its path (nothing is downloaded)")


def read_weights(path: Path) -> tuple[dict, dict | None, str | None]:
    """(state dict, architecture params or None for the bundle's, model type or None). A file is
    either the plain state dict torchaudio's bundle downloads, or ``{"params": ..., "model_type":
    ..., "state_dict": ...}`` for another configuration of the same architecture."""
    import torch

    try:
        blob = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many kinds for a damaged or foreign file
        raise ValueError(f"cannot read encoder weights {str(path)!r} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:120]}); replace it with a torchaudio state dict") from None
    if isinstance(blob, dict) and "state_dict" in blob:
        return blob["state_dict"], blob.get("params"), blob.get("model_type")
    if not isinstance(blob, dict):
        raise ValueError(f"encoder weights {str(path)!r} hold a {type(blob).__name__}, not a state dict")
    return blob, None, None


@lru_cache(maxsize=16)
def _encoder_shape(path: str, mtime_ns: int) -> tuple[int, int]:
    state, _, _ = read_weights(Path(path))
    prefix = "encoder.transformer.layers."
    layers = {k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)}
    proj = state.get("encoder.feature_projection.projection.weight")
    if not layers or proj is None:
        raise ValueError(f"encoder weights {path!r} are not a wav2vec 2.0 / HuBERT / WavLM state dict "
                         f"(no encoder.transformer.layers.* or feature projection)")
    return len(layers), int(proj.shape[0])


def encoder_shape(encoder: str, weights: str | os.PathLike | None = None) -> tuple[int, int]:
    """(transformer layers, width) of the encoder whose weights would be used (the bundle's when
    none are found, so a spec can be built without them)."""
    path = find_weights(encoder, weights)
    if path is None:
        info = SSL_ENCODERS[encoder]
        return info["layers"], info["dim"]
    return _encoder_shape(str(path), path.stat().st_mtime_ns)


def feature_spec(features: str, *, frames: int | None = None, n_bins: int | None = None,
                 weights: str | os.PathLike | None = None, feature_set: str | None = None,
                 speaker_norm: bool = False) -> InputSpec:
    """The InputSpec of one voice representation (see the module docstring). ``frames`` sizes the
    2-D ones, ``n_bins`` the mel bands / MFCCs, ``feature_set`` overrides the openSMILE set,
    ``speaker_norm`` asks the data pipeline to z-score each speaker's features with that speaker's
    own statistics (unlabelled) before the train-split standardisation."""
    extras: dict = {"features": features}
    if speaker_norm:
        extras["speaker_norm"] = True
    common = dict(mean=(0.0,), std=(1.0,), sample_rate=SAMPLE_RATE)
    return voice_kind(features).spec(features, frames=frames or DEFAULT_FRAMES, n_bins=n_bins, weights=weights,
                                     feature_set=feature_set, extras=extras, common=common)


def spec_name(spec: InputSpec) -> str:
    """The representation name of a voice spec (inverse of ``feature_spec``)."""
    return kind_of(spec).spec_name(spec)


# ---- the kinds of representation -----------------------------------------------------------

Digest = Callable[[Path], str]  # a file's SHA-256 (the data layer's cached one)


class VoiceFeatureKind:
    """One kind of voice representation. ``word`` is the spec's ``extras["features"]``; ``names``
    the ``model.features`` values it serves (default: the word); ``layers``: one L x D matrix per
    file whose first axis is a stack of layers (the classic heads pick or average them)."""

    word: str = ""
    names: tuple[str, ...] = ()
    layers: bool = False

    def spec(self, name: str, *, frames: int, n_bins: int | None, weights, feature_set: str | None,
             extras: dict, common: dict) -> InputSpec:
        """The InputSpec a model reading ``name`` declares (``extras``/``common``: every voice spec's)."""
        raise NotImplementedError

    def spec_name(self, spec: InputSpec) -> str:
        return self.word

    def params(self, **options) -> dict:
        """Everything that determines the arrays: the cache key (``kind`` is the word; ``weights``,
        a path, stays out of the key), and ``max_seconds``, the length cap before computing."""
        raise NotImplementedError

    def request(self, spec: InputSpec, sample_rate: int, digest: Digest) -> tuple[dict, int | None, bool]:
        """(``params`` for this spec, frames per sample or None for one array per file, whether a
        channel axis is added)."""
        raise NotImplementedError

    def compute(self, wave: np.ndarray, params: dict) -> np.ndarray:
        """The representation of a decoded mono wave at ``params["sample_rate"]``: (bins, frames),
        (D,) or (L, D). ``FeatureError`` for audio it cannot describe."""
        raise NotImplementedError

    def silence(self, params: dict) -> np.ndarray | None:
        """The column of digital silence short inputs are padded with; None: the training mean."""
        return None

    def unavailable(self, name: str, weights=None) -> str | None:
        """Why ``name`` cannot run on this machine (weights not here), or None."""
        return None


KINDS: dict[str, VoiceFeatureKind] = {}  # word -> kind
FEATURE_NAMES: dict[str, VoiceFeatureKind] = {}  # model.features value -> kind
_plugins_loaded: set[str] = set()


def register_voice_kind(cls: type[VoiceFeatureKind]) -> type[VoiceFeatureKind]:
    """A class decorator: registers the kind under its word and each of its names."""
    kind = cls()
    names = kind.names or (kind.word,)
    if not kind.word:
        raise ValueError(f"voice feature kind {cls.__name__} names no word")
    clash = [n for n in names if n in FEATURE_NAMES] + ([kind.word] if kind.word in KINDS else [])
    if clash:
        raise ValueError(f"voice features {clash[0]!r} are already registered")
    KINDS[kind.word] = kind
    for name in names:
        FEATURE_NAMES[name] = kind
    return cls


def _load_plugins() -> None:
    for module in env_plugin_modules():
        if module not in _plugins_loaded:
            _plugins_loaded.add(module)
            importlib.import_module(module)


def voice_kind(name: str) -> VoiceFeatureKind:
    """The kind serving ``model.features`` value (or spec word) ``name``; unknown: ValueError."""
    if name not in FEATURE_NAMES and name not in KINDS:
        _load_plugins()
    found = FEATURE_NAMES.get(name) or KINDS.get(name)
    if found is None:
        raise ValueError(f"unknown voice features {name!r}; known: {', '.join(feature_names())}")
    return found


def kind_of(spec: InputSpec) -> VoiceFeatureKind:
    return voice_kind(spec.extras.get("features", "logmel"))


def feature_names() -> tuple[str, ...]:
    return tuple(FEATURE_NAMES)


@lru_cache(maxsize=8)
def _mel_transform(sample_rate: int, n_fft: int, hop_length: int, n_mels: int, fmin: float, fmax: float):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate, n_fft=n_fft, hop_length=hop_length, f_min=fmin, f_max=fmax, n_mels=n_mels, power=2.0,
        norm="slaney", mel_scale="slaney", center=True, pad_mode="reflect")


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, n_mels: int = 64, n_fft: int = N_FFT,
            hop_length: int = HOP, fmin: float = 20.0, fmax: float | None = None) -> np.ndarray:
    """(n_mels, frames) float32 log mel power; frames = 1 + len(wave) // hop_length (centred)."""
    import torch

    wave = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
    if len(wave) <= n_fft // 2:  # reflect padding needs more samples than half a window
        wave = torch.nn.functional.pad(wave, (0, n_fft // 2 + 1 - len(wave)))
    with torch.inference_mode():
        mel = _mel_transform(sample_rate, n_fft, hop_length, n_mels, fmin, fmax or sample_rate / 2)(wave)
    return torch.log(mel + LOG_FLOOR).numpy().astype(np.float32)


def mfcc(wave: np.ndarray | None = None, sample_rate: int = SAMPLE_RATE, n_mfcc: int = 40, n_mels: int = 64,
         log_mel_spec: np.ndarray | None = None, **mel_kwargs) -> np.ndarray:
    """(n_mfcc, frames): orthonormal DCT-II of the log-mel (torchaudio's MFCC with ``log_mels``)."""
    import torch
    import torchaudio

    spec = log_mel_spec if log_mel_spec is not None else log_mel(wave, sample_rate, n_mels, **mel_kwargs)
    dct = torchaudio.functional.create_dct(n_mfcc, spec.shape[0], norm="ortho")  # n_mels x n_mfcc
    return (torch.from_numpy(np.ascontiguousarray(spec)).T @ dct).T.numpy().astype(np.float32)


def silence_column(kind: str, n_bins: int, n_mels: int = 64, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The feature column of digital silence: what zero-padding the audio would produce."""
    spec = np.full((n_mels, 1), np.log(LOG_FLOOR), dtype=np.float32)
    return spec[:, 0] if kind == "logmel" else mfcc(log_mel_spec=spec, n_mfcc=n_bins)[:, 0]


def _spectral_params(word: str, n_bins: int, n_mels: int, sample_rate: int) -> dict:
    return {"kind": word, "sample_rate": sample_rate, "n_bins": n_bins, "n_mels": n_mels if word == "mfcc" else n_bins,
            "n_fft": N_FFT, "hop": HOP, "max_seconds": MAX_SECONDS, "v": 2}


@register_voice_kind
class LogMel(VoiceFeatureKind):
    """``1 x n_mels x frames`` log mel power (torchaudio, Slaney scale)."""

    word = "logmel"

    def spec(self, name, *, frames, n_bins, weights, feature_set, extras, common):
        n = n_bins or 64
        return InputSpec("voice", (1, n, frames), n_mels=n, extras=extras, **common)

    def params(self, n_bins: int = 64, n_mels: int = 64, sample_rate: int = SAMPLE_RATE, **_) -> dict:
        return _spectral_params(self.word, n_bins, n_mels, sample_rate)

    def request(self, spec, sample_rate, digest):
        n_bins, frames = spec.input_size[-2], spec.input_size[-1]
        return self.params(n_bins, n_bins, sample_rate), frames, True

    def compute(self, wave, params):
        return log_mel(wave, params["sample_rate"], params["n_mels"], params["n_fft"], params["hop"])

    def silence(self, params):
        return silence_column(self.word, params["n_bins"], params["n_mels"])


@register_voice_kind
class Mfcc(LogMel):
    """``n_mfcc x frames``: the orthonormal DCT-II of the log-mel."""

    word = "mfcc"

    def spec(self, name, *, frames, n_bins, weights, feature_set, extras, common):
        n = n_bins or 40
        return InputSpec("voice", (n, frames), extras={**extras, "n_mfcc": n}, **common)

    def request(self, spec, sample_rate, digest):
        n_bins, frames = spec.input_size[0], spec.input_size[-1]
        return self.params(n_bins, spec.n_mels or 64, sample_rate), frames, False

    def compute(self, wave, params):
        return mfcc(log_mel_spec=super().compute(wave, params), n_mfcc=params["n_bins"])


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
        raise FeatureError(f"openSMILE {feature_set} {level}: the audio is too short "
                           f"({len(wave) / sample_rate:.2f} s) to describe")
    return values[0] if level == "functionals" else np.ascontiguousarray(values.T)


@register_voice_kind
class OpenSmile(VoiceFeatureKind):
    """openSMILE functionals (one ``(D,)`` vector per utterance) or low-level descriptors
    (``D x frames``) of a feature set."""

    word = "opensmile"
    names = tuple(OPENSMILE)

    def spec(self, name, *, frames, n_bins, weights, feature_set, extras, common):
        default_set, level = OPENSMILE[name]
        fs = feature_set or default_set
        check_feature_set(fs)
        dim = opensmile_dim(fs, level)
        extras.update(features="opensmile", name=name, feature_set=fs, level=level)
        size = (dim,) if level == "functionals" else (dim, frames)
        return InputSpec("voice", size, extras=extras, **common)

    def spec_name(self, spec):
        return spec.extras.get("name") or next(k for k, v in OPENSMILE.items()
                                               if v == (spec.extras["feature_set"], spec.extras["level"]))

    def params(self, sample_rate: int = SAMPLE_RATE, feature_set: str | None = None, level: str = "functionals",
               **_) -> dict:
        import opensmile

        check_feature_set(feature_set)
        return {"kind": self.word, "sample_rate": sample_rate, "feature_set": feature_set, "level": level,
                "opensmile": opensmile.__version__,
                "max_seconds": OPENSMILE_MAX_SECONDS if level == "functionals" else MAX_SECONDS,
                "n_fft": N_FFT, "hop": HOP, "v": 1}

    def request(self, spec, sample_rate, digest):
        level = spec.extras.get("level", "functionals")
        params = self.params(sample_rate=sample_rate, feature_set=spec.extras.get("feature_set"), level=level)
        return params, (spec.input_size[-1] if level == "lld" else None), False

    def compute(self, wave, params):
        return opensmile_features(wave, params["sample_rate"], params["feature_set"], params["level"])


@lru_cache(maxsize=2)
def _encoder(encoder: str, path: str, mtime_ns: int):
    """The frozen torchaudio model for these weights, in eval mode, and whether the bundle
    layer-normalises the waveform first."""
    import torchaudio

    state, arch, model_type = read_weights(Path(path))
    bundle = getattr(torchaudio.pipelines, SSL_ENCODERS[encoder]["bundle"])
    arch, model_type = arch or bundle._params, model_type or bundle._model_type
    factory = torchaudio.models.wavlm_model if model_type == "WavLM" else torchaudio.models.wav2vec2_model
    model = factory(**arch)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"encoder weights {path!r} do not fit torchaudio's {bundle._path} architecture "
                         f"({str(exc).splitlines()[0][:100]}...); use the file torchaudio's "
                         f"{SSL_ENCODERS[encoder]['bundle']} bundle downloads") from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval(), bool(bundle._normalize_waveform)


def ssl_layer_means(wave: np.ndarray, params: dict) -> np.ndarray:
    """(L, D): each hidden layer's output averaged over time (layer 0: the transformer's input)."""
    import torch

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


@register_voice_kind
class SslEncoder(VoiceFeatureKind):
    """A frozen speech encoder's time-averaged hidden layers, ``(L + 1) x D`` per utterance."""

    word = "ssl"
    names = tuple(SSL_ENCODERS)
    layers = True

    def spec(self, name, *, frames, n_bins, weights, feature_set, extras, common):
        path = find_weights(name, weights)
        layers, dim = encoder_shape(name, weights)
        extras.update(features="ssl", encoder=name, weights=str(path) if path else None)
        return InputSpec("voice", (layers + 1, dim), extras=extras, **common)

    def spec_name(self, spec):
        return spec.extras["encoder"]

    def params(self, sample_rate: int = SAMPLE_RATE, encoder: str | None = None, weights=None,
               digest: Digest | None = None, **_) -> dict:
        path = find_weights(encoder, weights)
        if path is None:
            raise ValueError(missing_weights_message(encoder))
        return {"kind": self.word, "sample_rate": sample_rate, "encoder": encoder,
                "weights_sha256": digest(path), "weights": str(path),
                "chunk_seconds": SSL_CHUNK_SECONDS, "max_seconds": SSL_MAX_SECONDS, "v": 1}

    def request(self, spec, sample_rate, digest):
        return self.params(sample_rate=sample_rate, encoder=spec.extras.get("encoder"),
                           weights=spec.extras.get("weights"), digest=digest), None, False

    def compute(self, wave, params):
        return ssl_layer_means(wave, params)

    def unavailable(self, name, weights=None):
        try:
            path = find_weights(name, weights)
        except ValueError as exc:
            return str(exc)
        if path is None:
            return f"no local weights: {SSL_ENCODERS[name]['file']} not in the torch hub checkpoints, " \
                   f"${weights_env(name)} unset"
        return None
