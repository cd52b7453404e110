"""Still-image face models: the classic 48x48 FER CNN and any timm backbone."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from .base import FerModel
from .layers import SelfAttention2d
from .registry import register_model, register_prefix
from .spec import IMAGENET_MEAN, IMAGENET_STD, InputSpec


class FerCNN(FerModel):
    """conv32-pool-conv64-pool-dense128-dropout-dense on 48x48 grey faces (the FER2013 baseline).

    Capacity knobs (defaults = the baseline above): ``blocks`` conv-pool stages whose channels
    double from ``width``; ``convs`` 3x3 convs per stage (2 = the VGG-style FER nets)."""

    def __init__(self, num_classes: int, image_size: int = 48, in_chans: int = 1,
                 dropout: float = 0.5, hidden: int = 128, blocks: int = 2, width: int = 32, convs: int = 1):
        super().__init__()
        if not 1 <= blocks <= 5 or image_size // 2 ** blocks < 1:
            raise ValueError(f"blocks must be 1-5 and leave at least 1 pixel of a {image_size}px input, got {blocks}")
        if convs not in (1, 2, 3) or width < 1:
            raise ValueError(f"convs must be 1-3 and width positive, got convs={convs}, width={width}")
        self.input_spec = InputSpec("face", (in_chans, image_size, image_size),
                                    mean=(0.5,) * in_chans, std=(0.5,) * in_chans)
        layers: list[nn.Module] = []
        channels_in = in_chans
        for stage in range(blocks):
            channels = width * 2 ** stage
            for _ in range(convs):
                layers += [nn.Conv2d(channels_in, channels, 3, padding=1), nn.BatchNorm2d(channels),
                           nn.ReLU(inplace=True)]
                channels_in = channels
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        flat = channels_in * (image_size // 2 ** blocks) ** 2
        self.dense = nn.Sequential(nn.Flatten(), nn.Linear(flat, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, num_classes)
        self.num_features = hidden

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.features(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


class PretrainedWeightsError(RuntimeError):
    """Weights were asked for but cannot be had (offline, or a bad local file)."""


def _load_local_weights(module: nn.Module, path: str) -> None:
    file = Path(path).expanduser()
    if not file.is_file():
        raise PretrainedWeightsError(f"pretrained weights file {str(file)!r} does not exist.")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt or pickled-object files
        raise PretrainedWeightsError(f"cannot read weights file {str(file)!r}: {exc}") from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise PretrainedWeightsError(
            f"weights file {str(file)!r} has no tensor matching this backbone's layers."
        )
    module.load_state_dict(usable, strict=False)


LANDMARK_POINTS = 5  # MTCNN: left eye, right eye, nose, left and right mouth corner
LANDMARK_DIM = LANDMARK_POINTS * (LANDMARK_POINTS - 1) // 2  # 10 pairwise distances


def landmark_distances(points: torch.Tensor) -> torch.Tensor:
    """B x 5 x 2 MTCNN landmarks -> B x 10 pairwise distances divided by the inter-ocular distance,
    so the branch sees face geometry (mouth width, eye-mouth height), not face size or position."""
    i, j = torch.triu_indices(LANDMARK_POINTS, LANDMARK_POINTS, offset=1)
    dist = (points[:, i] - points[:, j]).norm(dim=-1)
    return dist / dist[:, :1].clamp(min=1e-6)  # pair (0, 1) is the two eyes


def dense_stack(in_dim: int, units: int, num_layers: int, dropout: float, batch_norm: bool) -> nn.Sequential:
    """``num_layers`` x (Linear -> [BatchNorm] -> ReLU), dropout between layers (the classifier's own
    dropout follows the last one); empty when ``num_layers`` is 0."""
    layers: list[nn.Module] = []
    for i in range(num_layers):
        layers += [nn.Dropout(dropout)] if i > 0 else []
        layers += [nn.Linear(in_dim, units)] + ([nn.BatchNorm1d(units)] if batch_norm else [])
        layers += [nn.ReLU(inplace=True)]
        in_dim = units
    return nn.Sequential(*layers)


class FaceTimm(FerModel):
    """A timm backbone with optional SAGAN self-attention on its last feature map, an optional
    landmark branch and an optional dense head.

    ``landmarks=True``: the input is ``{"image": B x C x S x S, "landmarks": B x 10}`` (see
    ``landmark_distances``); an MLP embedding of the distances is concatenated to the image
    features. ``num_layers`` > 0 adds that many dense layers of ``dense_units`` before the classifier.
    """

    def __init__(self, num_classes: int, backbone: str = "resnet18", pretrained: str = "none",
                 attention: str = "none", attn_heads: int = 1, dropout: float = 0.0,
                 image_size: int = 112, in_chans: int = 3, landmarks: bool = False,
                 landmark_units: int = 32, dense_units: int = 256, num_layers: int = 0,
                 batch_norm: bool = False):
        super().__init__()
        import timm

        validate_backbone(backbone)
        if attention not in ("none", "self"):
            raise ValueError(f"attention must be 'none' or 'self', got {attention!r}")
        pretrained = str(pretrained or "none")
        try:
            self.backbone = timm.create_model(
                backbone, pretrained=pretrained == "imagenet", num_classes=0, in_chans=in_chans
            )
        except Exception as exc:
            if pretrained != "imagenet":
                raise
            raise PretrainedWeightsError(
                f"cannot fetch ImageNet weights for {backbone!r} ({type(exc).__name__}); offline, "
                f"download them elsewhere and pass model.pretrained=/path/to/{backbone}.safetensors "
                f"(timm caches downloads under ~/.cache/huggingface/hub)."
            ) from None
        if pretrained not in ("none", "imagenet"):
            _load_local_weights(self.backbone, pretrained)
        cfg = self.backbone.pretrained_cfg
        self.input_spec = InputSpec(
            "face", (in_chans, image_size, image_size),
            mean=tuple(cfg.get("mean", IMAGENET_MEAN))[:in_chans] if in_chans == 3 else (0.5,) * in_chans,
            std=tuple(cfg.get("std", IMAGENET_STD))[:in_chans] if in_chans == 3 else (0.5,) * in_chans,
            extras={"landmarks": LANDMARK_DIM} if landmarks else {},
        )
        feat_channels = self.backbone.num_features
        self.attention = SelfAttention2d(feat_channels, attn_heads) if attention == "self" else None
        self.num_features = getattr(self.backbone, "head_hidden_size", None) or feat_channels
        self.landmark_mlp = nn.Sequential(
            nn.Linear(LANDMARK_DIM, landmark_units), nn.ReLU(inplace=True),
            nn.Linear(landmark_units, landmark_units), nn.ReLU(inplace=True),
        ) if landmarks else None
        if landmarks:
            self.num_features += landmark_units
        self.dense = dense_stack(self.num_features, dense_units, num_layers, dropout, batch_norm)
        if num_layers > 0:
            self.num_features = dense_units
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x) -> torch.Tensor:
        if self.landmark_mlp is not None:
            if not isinstance(x, dict):
                raise ValueError("landmarks=True expects {'image': ..., 'landmarks': B x 10} as input")
            x, points = x["image"], x["landmarks"]
        fmap = self.backbone.forward_features(x)
        if self.attention is not None:
            if fmap.ndim != 4:
                raise ValueError("attention=self needs a CNN backbone with a 2-D feature map")
            fmap = self.attention(fmap)
        features = self.backbone.forward_head(fmap, pre_logits=True)
        if self.landmark_mlp is not None:
            features = torch.cat([features, self.landmark_mlp(points)], dim=1)
        return self.dense(features)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))


def validate_backbone(name: str) -> None:
    import timm

    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ValueError(f"unknown timm backbone {name!r}.{hint}")


@register_model(modality="face")
def fer_cnn(num_classes: int, **kwargs) -> FerCNN:
    """Classic 48x48 FER CNN (conv32-pool-conv64-pool-dense128-dropout-dense)."""
    return FerCNN(num_classes, **kwargs)


@register_model(modality="face")
def face_timm(num_classes: int, **kwargs) -> FaceTimm:
    """Any timm backbone, optional self-attention on its last feature map."""
    return FaceTimm(num_classes, **kwargs)


face_timm.validate_backbone = validate_backbone
register_prefix("timm", "face_timm", "backbone")
