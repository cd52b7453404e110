"""MIC: compressed-domain, identity-aware expression recognition.

Residual frames (what the codec stores between I-frames: mostly motion, little identity) go
through a small CNN and an LSTM to an expression code ``z_E``. The clip's I-frame goes through a
*frozen* identity encoder to ``z_I``. Two extra objectives shape ``z_E``:

- ``mi``: a MINE statistics network estimates I(z_E; z_I); the encoder is penalised by
  ``alpha * MI`` so that ``z_E`` carries as little identity as possible.
- ``l1``: a decoder rebuilds the apex frame from ``(z_I, z_E)``; ``beta * L1`` makes ``z_E`` keep
  the expression that identity alone cannot explain.

Total loss (bench/training/tasks.py sums ``aux_losses``): ``CE + alpha * MI + beta * L1``.

Input: ``{"residual": B x T x 3 x S x S, "iframe": B x 3 x S x S, "apex": B x 3 x S x S}``;
with ``input_frames="rgb"`` (the ablation) the sequence is read from ``"rgb"`` instead.

Identity encoder: facenet-pytorch ``InceptionResnetV1`` loaded from ``identity_weights=PATH``
(a state dict, e.g. VGGFace2 weights saved locally; the I-frame is resized to 160 x 160 for it).
Without a weights file, a timm backbone (``identity_backbone``) with random weights is used,
frozen: the identity code is then a *fixed random projection* of the I-frame, which still carries
identity cues (a random CNN is a reasonable hash of appearance) but is no face-recognition model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import FerModel
from .layers import MINE, per_frame
from .registry import register_model
from .spec import InputSpec

FACENET_SIZE = 160


class ResidualCNN(nn.Module):
    """Three conv blocks + global average pooling: residual frames are sparse, a small net suffices."""

    def __init__(self, in_chans: int = 3, width: int = 32):
        super().__init__()
        blocks, c = [], in_chans
        for out in (width // 2, width, width * 2):
            blocks += [nn.Conv2d(c, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c = out
        self.net = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.num_features = c

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FrozenIdentityEncoder(nn.Module):
    """I-frame -> z_I with no gradient and no BatchNorm updates, whatever the parent's mode."""

    def __init__(self, weights: str | None, backbone: str, image_size: int):
        super().__init__()
        if weights:
            from facenet_pytorch import InceptionResnetV1

            file = Path(weights).expanduser()
            if not file.is_file():
                raise FileNotFoundError(f"identity_weights file {str(file)!r} does not exist")
            self.net = InceptionResnetV1(pretrained=None, classify=False)
            state = torch.load(file, map_location="cpu", weights_only=True)
            # facenet's own checkpoints carry the classifier (logits.*) too; the embedding is enough
            state = {k: v for k, v in state.items() if not k.startswith("logits.")}
            self.net.load_state_dict(state, strict=False)
            self.resize = FACENET_SIZE
            self.dim = 512
        else:
            import timm

            self.net = timm.create_model(backbone, pretrained=False, num_classes=0)
            self.resize = None
            self.dim = getattr(self.net, "head_hidden_size", None) or self.net.num_features
        self.net.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True):  # stay in eval: frozen means frozen statistics too
        return super().train(False)

    @torch.no_grad()
    def forward(self, iframe: torch.Tensor) -> torch.Tensor:
        if self.resize and iframe.shape[-1] != self.resize:
            iframe = F.interpolate(iframe, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.net(iframe)


class ApexDecoder(nn.Module):
    """(z_I, z_E) -> a 4 x 4 map -> transposed convs doubling the size -> 3 x S x S."""

    def __init__(self, code_dim: int, image_size: int, width: int = 32):
        super().__init__()
        self.image_size = image_size
        self.width = width
        self.fc = nn.Linear(code_dim, width * 4 * 4)
        ups, size = [], 4
        while size < image_size:
            ups += [nn.ConvTranspose2d(width, width, 4, stride=2, padding=1), nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True)]
            size *= 2
        self.up = nn.Sequential(*ups, nn.Conv2d(width, 3, 3, padding=1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.up(self.fc(z).view(-1, self.width, 4, 4))
        if x.shape[-1] != self.image_size:  # sizes that are not 4 * 2^k
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return x


class MIC(FerModel):
    # features() is the expression code z_E: bench probes it for identity leakage every epoch
    identity_aware = True

    def __init__(self, num_classes: int, alpha: float = 0.1, beta: float = 1.0, input_frames: str = "residual",
                 code_dim: int = 64, hidden: int = 128, cnn_width: int = 32, mine_hidden: int = 128,
                 mine_ema: float | None = 0.01, identity_weights: str | None = None,
                 identity_backbone: str = "mobilenetv3_small_050", dropout: float = 0.0, frames: int = 8,
                 image_size: int = 48):
        super().__init__()
        if input_frames not in ("residual", "rgb"):
            raise ValueError(f"input_frames must be 'residual' or 'rgb', got {input_frames!r}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.sequence_key = input_frames
        self.frames_cnn = ResidualCNN(3, cnn_width)
        self.lstm = nn.LSTM(self.frames_cnn.num_features, hidden, batch_first=True)
        self.to_code = nn.Linear(hidden, code_dim)
        self.identity = FrozenIdentityEncoder(identity_weights, identity_backbone, image_size)
        self.mine = MINE(code_dim, self.identity.dim, mine_hidden, ema_rate=mine_ema)
        self.decoder = ApexDecoder(self.identity.dim + code_dim, image_size, cnn_width)
        self.input_spec = InputSpec("video", (3, image_size, image_size), frames=frames,
                                    extras={"streams": (input_frames, "iframe", "apex")})
        self.num_features = code_dim
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(code_dim, num_classes)
        self.last_mi_estimate = float("nan")  # the latest DV estimate, for logging only

    def forward_features(self, x: dict) -> torch.Tensor:
        _, (h_n, _) = self.lstm(per_frame(self.frames_cnn, x[self.sequence_key]))
        return self.to_code(h_n[-1])

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(features))

    def aux_losses(self, x: dict, z_e: torch.Tensor) -> dict[str, torch.Tensor]:
        z_i = self.identity(x["iframe"])
        perm = torch.randperm(z_e.shape[0], device=z_e.device)
        # One optimizer step trains both players of the MI game:
        # - T maximises the DV bound on *detached* codes: ``t_term`` has value 0 (so the reported
        #   loss stays CE + alpha*MI + beta*L1) but gradient -d(bound)/dT, reaching only T;
        # - the encoder minimises alpha * MI computed on the live z_E with T's parameters detached,
        #   so the penalty cannot be lowered by making T a worse estimator.
        surrogate, estimate = self.mine.training_objective(z_e.detach(), z_i, perm)
        t_term = surrogate.detach() - surrogate
        self.last_mi_estimate = float(estimate.detach())
        zero = z_e.new_zeros(())
        # the ablations (alpha = 0, beta = 0) skip their term entirely: no 0 * inf = nan surprises
        mi = self.alpha * self.mine.estimate(z_e, z_i, perm, frozen=True) if self.alpha else zero
        l1 = self.beta * F.l1_loss(self.decoder(torch.cat([z_i, z_e], dim=1)), x["apex"]) if self.beta else zero
        return {"mi": mi + t_term, "l1": l1}


@register_model(modality="mic")
def mic(num_classes: int, **kwargs) -> MIC:
    """Compressed-domain residual CNN-LSTM, frozen identity branch, MINE penalty, apex decoder."""
    return MIC(num_classes, **kwargs)


def identity_leakage(z_e_train, subject_ids_train, z_e_val, subject_ids_val, max_iter: int = 2000) -> float:
    """Accuracy of a linear probe predicting the subject from the expression code (lower is better).

    The probe (standardised features + sklearn ``LogisticRegression``) is fit on the first set and
    scored on the second, counting only validation samples of subjects the probe has seen: with
    subject-independent splits, pass two halves of the *same* subjects' samples (see
    ``split_within_subjects``). Chance level is 1 / number of subjects.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xt, xv = _numpy(z_e_train), _numpy(z_e_val)
    yt, yv = np.asarray(subject_ids_train), np.asarray(subject_ids_val)
    seen = np.isin(yv, yt)
    if not seen.any():
        raise ValueError("identity_leakage: no validation subject occurs in the training set; a probe "
                         "cannot name unseen subjects. Split each subject's samples instead "
                         "(split_within_subjects).")
    if len(np.unique(yt)) < 2:
        return 1.0  # one subject: trivially identified
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=max_iter))
    probe.fit(xt, yt)
    return float((probe.predict(xv[seen]) == yv[seen]).mean())


def split_within_subjects(subject_ids, fraction: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Index arrays (fit, score) holding ``fraction`` / the rest of every subject's samples."""
    subjects = np.asarray(subject_ids)
    rng = np.random.default_rng(seed)
    fit, score = [], []
    for s in np.unique(subjects):
        idx = rng.permutation(np.flatnonzero(subjects == s))
        cut = max(1, int(round(len(idx) * fraction))) if len(idx) > 1 else len(idx)
        fit.extend(idx[:cut])
        score.extend(idx[cut:])
    return np.sort(np.array(fit, dtype=int)), np.sort(np.array(score, dtype=int))


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
