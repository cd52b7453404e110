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

A leaf module: imports torch and the spec only (never ``bench``; openSMILE only to size a feature
set that is not in the table below).
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from .spec import InputSpec

SAMPLE_RATE = 16000
DEFAULT_FRAMES = 128  # spectral/LLD frames per sample (10 ms hop): ~1.3 s, as the CNNs always had

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

FEATURES = ("logmel", "mfcc", *OPENSMILE, *SSL_ENCODERS)


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
    frames = frames or DEFAULT_FRAMES
    if features == "logmel":
        n = n_bins or 64
        return InputSpec("voice", (1, n, frames), n_mels=n, extras=extras, **common)
    if features == "mfcc":
        n = n_bins or 40
        return InputSpec("voice", (n, frames), extras={**extras, "n_mfcc": n}, **common)
    if features in OPENSMILE:
        default_set, level = OPENSMILE[features]
        fs = feature_set or default_set
        check_feature_set(fs)
        dim = opensmile_dim(fs, level)
        extras.update(features="opensmile", name=features, feature_set=fs, level=level)
        size = (dim,) if level == "functionals" else (dim, frames)
        return InputSpec("voice", size, extras=extras, **common)
    if features in SSL_ENCODERS:
        path = find_weights(features, weights)
        layers, dim = encoder_shape(features, weights)
        extras.update(features="ssl", encoder=features, weights=str(path) if path else None)
        return InputSpec("voice", (layers + 1, dim), extras=extras, **common)
    raise ValueError(f"unknown voice features {features!r}; known: {', '.join(FEATURES)}")


def spec_name(spec: InputSpec) -> str:
    """The representation name of a voice spec (inverse of ``feature_spec``)."""
    kind = spec.extras.get("features", "logmel")
    if kind == "opensmile":
        return spec.extras.get("name") or next(k for k, v in OPENSMILE.items()
                                               if v == (spec.extras["feature_set"], spec.extras["level"]))
    if kind == "ssl":
        return spec.extras["encoder"]
    return kind
