"""Speech-emotion models on spectral features computed once by ``fer-bench data prepare``.

Inputs: ``voice_cnn1d`` reads MFCCs ``B x n_mfcc x frames`` (``extras["features"] = "mfcc"``);
the others read log-mel spectrograms ``B x 1 x n_mels x frames``. Features are standardised per
dataset, hence mean 0 / std 1 in the spec. ``frames`` is the fixed number of time steps a clip is
cropped or padded to (the default 128 is ~1.3 s at a 10 ms hop).

``voice_mlp`` and ``voice_ssl_head`` read any representation of ``voice_features`` (openSMILE
functionals or LLDs, MFCC/log-mel, frozen speech-encoder layers) chosen by ``features=``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .base import FerModel
from .face import validate_backbone
from .layers import RecurrentEncoder
from .registry import register_model, register_prefix
from .spec import InputSpec

SAMPLE_RATE = 16000


def logmel_spec(n_mels: int, frames: int) -> InputSpec:
    return InputSpec("voice", (1, n_mels, frames), mean=(0.0,), std=(1.0,), sample_rate=SAMPLE_RATE,
                     n_mels=n_mels, extras={"features": "logmel"})


class _Classifier(FerModel):
    """Dropout + linear head shared by the voice models."""

    def _init_head(self, num_features: int, num_classes: int, dropout: float) -> None:
        self.num_features = num_features
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_features, num_classes)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


def _conv_blocks(dim: int, in_chans: int, widths: tuple[int, ...], pool) -> nn.Sequential:
    conv, norm, maxpool = (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d) if dim == 1 else \
        (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d)
    layers, c = [], in_chans
    for w in widths:
        layers += [conv(c, w, 3, padding=1), norm(w), nn.ReLU(inplace=True), maxpool(pool)]
        c = w
    return nn.Sequential(*layers)


class VoiceCNN1d(_Classifier):
    """1-D convolutions over time with MFCC coefficients as channels; mean + max pooling over time."""

    def __init__(self, num_classes: int, n_mfcc: int = 40, frames: int = 128, width: int = 64,
                 num_blocks: int = 3, dropout: float = 0.0):
        super().__init__()
        widths = tuple(width * 2 ** min(i, 2) for i in range(num_blocks))
        self.input_spec = InputSpec("voice", (n_mfcc, frames), mean=(0.0,), std=(1.0,), sample_rate=SAMPLE_RATE,
                                    extras={"features": "mfcc", "n_mfcc": n_mfcc})
        self.blocks = _conv_blocks(1, n_mfcc, widths, 2)
        self._init_head(2 * widths[-1], num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(x)
        return torch.cat([h.mean(-1), h.amax(-1)], dim=1)


class VoiceCNN2d(_Classifier):
    """2-D conv blocks on the log-mel image, global average pooling."""

    def __init__(self, num_classes: int, n_mels: int = 64, frames: int = 128, width: int = 32,
                 num_blocks: int = 3, dropout: float = 0.0):
        super().__init__()
        widths = tuple(width * 2 ** i for i in range(num_blocks))
        self.input_spec = logmel_spec(n_mels, frames)
        self.blocks = nn.Sequential(_conv_blocks(2, 1, widths, 2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self._init_head(widths[-1], num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class VoiceCRNN(_Classifier):
    """Conv blocks pool frequency (and time by 2 per block), then a GRU/LSTM reads the time axis."""

    def __init__(self, num_classes: int, n_mels: int = 64, frames: int = 128, width: int = 32,
                 num_blocks: int = 2, rnn: str = "gru", hidden: int = 64, bidirectional: bool = True,
                 pool: str = "attention", dropout: float = 0.0):
        super().__init__()
        widths = tuple(width * 2 ** i for i in range(num_blocks))
        self.input_spec = logmel_spec(n_mels, frames)
        self.blocks = _conv_blocks(2, 1, widths, 2)
        self.freq_pool = nn.AdaptiveAvgPool2d((1, None))  # B x C x 1 x T': one token per time step
        self.temporal = RecurrentEncoder(widths[-1], hidden, rnn, bidirectional, 1, pool)
        self.token_dim = self.temporal.out_dim
        self._init_head(self.temporal.out_dim, num_classes, dropout)

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        return self.freq_pool(self.blocks(x)).squeeze(2).transpose(1, 2)  # B x T' x C

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.temporal(self._steps(x))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Per-time-step recurrent outputs, B x T' x token_dim."""
        return self.temporal.sequence(self._steps(x))[0]


class VoiceTimm(_Classifier):
    """A timm image backbone with one input channel on the log-mel image."""

    def __init__(self, num_classes: int, backbone: str = "resnet18", n_mels: int = 64, frames: int = 128,
                 dropout: float = 0.0):
        super().__init__()
        import timm

        validate_backbone(backbone)
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, in_chans=1)
        self.input_spec = logmel_spec(n_mels, frames)
        self._init_head(getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features,
                        num_classes, dropout)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)


class VoiceHead(_Classifier):
    """A small MLP on one fixed-size vector per utterance, SUPERB-style for speech encoders.

    The vector is: openSMILE functionals as they are; for ``bins x frames`` inputs (MFCC, log-mel,
    openSMILE LLDs) each bin's mean and std over time; for speech-encoder layers (``L x D``, each
    already averaged over time) a learned softmax-weighted sum of the layers (SUPERB's weighted
    sum), or the one layer ``layer`` names. ``hidden=0`` makes the head linear.
    """

    def __init__(self, num_classes: int, features: str = "egemaps", hidden: int = 256, num_layers: int = 1,
                 dropout: float = 0.0, layer: int | None = None, frames: int | None = None,
                 n_bins: int | None = None, weights: str | None = None, feature_set: str | None = None,
                 speaker_norm: bool = False):
        super().__init__()
        from .voice_features import feature_spec, kind_of

        self.input_spec = feature_spec(features, frames=frames, n_bins=n_bins, weights=weights,
                                       feature_set=feature_set, speaker_norm=speaker_norm)
        size = self.input_spec.input_size
        self.kind = "layers" if kind_of(self.input_spec).layers else ("frames" if len(size) >= 2 else "vector")
        self.layer = None
        if self.kind == "layers":
            if layer is not None:
                if not 0 <= int(layer) < size[0]:
                    raise ValueError(f"model.layer={layer} is out of range: {features} has layers 0..{size[0] - 1}")
                self.layer = int(layer)
            else:
                self.layer_logits = nn.Parameter(torch.zeros(size[0]))  # uniform weights at the start
            width = size[1]
        elif layer is not None:
            raise ValueError(f"model.layer applies to speech-encoder features only, not {features!r}")
        else:
            width = size[0] if self.kind == "vector" else 2 * size[-2]
        blocks, d = [], width
        for _ in range(num_layers if hidden else 0):
            blocks += [nn.Linear(d, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
            d = hidden
        self.mlp = nn.Sequential(*blocks)
        self._init_head(d, num_classes, dropout)

    def layer_weights(self) -> torch.Tensor | None:
        """The softmax weights of the encoder layers (None when one layer is fixed or no layers)."""
        return torch.softmax(self.layer_logits, 0) if hasattr(self, "layer_logits") else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "layers":
            x = x[:, self.layer] if self.layer is not None else torch.einsum("bld,l->bd", x, self.layer_weights())
        elif self.kind == "frames":
            x = x.flatten(1, -2)  # log-mel's channel dim folds into the bins
            x = torch.cat([x.mean(-1), x.std(-1)], dim=1)
        return self.mlp(x)


@register_model(modality="voice")
def voice_cnn1d(num_classes: int, **kwargs) -> VoiceCNN1d:
    """1-D CNN over MFCC frames (B x n_mfcc x frames)."""
    return VoiceCNN1d(num_classes, **kwargs)


@register_model(modality="voice")
def voice_cnn2d(num_classes: int, **kwargs) -> VoiceCNN2d:
    """2-D CNN on log-mel spectrograms (B x 1 x n_mels x frames)."""
    return VoiceCNN2d(num_classes, **kwargs)


@register_model(modality="voice")
def voice_crnn(num_classes: int, **kwargs) -> VoiceCRNN:
    """Conv blocks + GRU/LSTM over time on log-mel spectrograms."""
    return VoiceCRNN(num_classes, **kwargs)


@register_model(modality="voice")
def voice_timm(num_classes: int, **kwargs) -> VoiceTimm:
    """Any timm backbone with in_chans=1 on log-mel spectrograms; also ``voice_timm/<backbone>``."""
    return VoiceTimm(num_classes, **kwargs)


voice_timm.validate_backbone = validate_backbone
register_prefix("voice_timm", "voice_timm", "backbone")


@register_model(modality="voice")
def voice_mlp(num_classes: int, **kwargs) -> VoiceHead:
    """MLP on a voice representation (``features=``: egemaps, compare, *_lld, mfcc, ...)."""
    return VoiceHead(num_classes, **kwargs)


@register_model(modality="voice")
def voice_ssl_head(num_classes: int, features: str = "wavlm_base", **kwargs) -> VoiceHead:
    """SUPERB-style head: softmax-weighted sum of a frozen speech encoder's layers + MLP."""
    from .voice_features import SSL_ENCODERS

    if features not in SSL_ENCODERS:
        raise ValueError(f"voice_ssl_head reads a speech encoder ({', '.join(SSL_ENCODERS)}), not {features!r}")
    return VoiceHead(num_classes, features=features, **kwargs)
