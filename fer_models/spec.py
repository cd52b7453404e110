"""Input metadata a model declares, so data pipelines can feed it without guessing.

Modelled on timm's PretrainedCfg: a frozen dataclass that travels with the model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """What one sample must look like when it reaches ``model.forward``.

    ``modality`` is one of ``face`` (a C x H x W image), ``video`` (T x C x H x W frames),
    ``voice`` (a spectrogram or MFCC matrix) or ``av`` (a dict of the above).
    """

    modality: str = "face"
    input_size: tuple[int, ...] = (3, 112, 112)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    frames: int | None = None
    sample_rate: int | None = None
    n_mels: int | None = None
    extras: dict = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.input_size[0]

    @property
    def image_size(self) -> int:
        return self.input_size[-1]

    def to_dict(self) -> dict:
        return asdict(self)
